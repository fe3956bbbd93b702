"""The sweep spec: which cells to run and how to time them (TOML or command-line flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from nnbench.validate import SpecError, check_keys, choice, enum_list, load_toml, number
from nnbench.vocab import DTYPES, BackendName, Family, Methodology, Workload, is_device


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """Selects methodology × family × backend × workload × dtype and the timing protocol."""

    methodologies: tuple[Methodology, ...] = tuple(Methodology)
    families: tuple[Family, ...] = tuple(Family)
    backends: tuple[BackendName, ...] = (BackendName.HF, BackendName.RAW_HOOKS)
    workloads: tuple[Workload, ...] = tuple(Workload)
    dtypes: tuple[str, ...] = ("float32",)
    device: str = "cpu"
    batch_size: int = 4
    """prompts per batched cell"""
    new_tokens: int = 4
    """greedy tokens per generation cell"""
    layer: int = 6
    alpha: float | None = None
    """steering norm; None: the family's calibrated norm (``cells.job.STEERING_NORM``)"""
    seed: int = 0
    warmup: int = 1
    """untimed runs before the timed trials"""
    trials: int = 3
    tensor_parallel_size: int = 1
    """vLLM backends only"""

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_mapping(cls, table: dict[str, Any], where: str = "") -> SweepSpec:
        """Build from a TOML table or CLI overrides, refusing any bad field with one line."""
        names = [f.name for f in fields(cls)]
        check_keys(table, names, where)
        kw: dict[str, Any] = {}
        p = f"{where}." if where else ""
        enums = {"methodologies": Methodology, "families": Family, "backends": BackendName, "workloads": Workload}
        for name, enum in enums.items():
            if name in table:
                kw[name] = enum_list(table[name], enum, p + name)
        if "dtypes" in table:
            values = [table["dtypes"]] if isinstance(table["dtypes"], str) else table["dtypes"]
            if not isinstance(values, list) or not values:
                raise SpecError(f"{p}dtypes: must be a non-empty list of {', '.join(DTYPES)}")
            kw["dtypes"] = tuple(choice(v, DTYPES, p + "dtypes") for v in values)
        if "device" in table:
            device = table["device"]
            if not is_device(device):
                raise SpecError(f"{p}device: must be 'cpu' or 'cuda[:N]', got {device!r}")
            kw["device"] = device
        for name, minimum in (("batch_size", 1), ("new_tokens", 1), ("layer", 0), ("seed", 0),
                              ("warmup", 0), ("trials", 1), ("tensor_parallel_size", 1)):
            if name in table:
                kw[name] = number(table[name], p + name, integer=True, minimum=minimum)
        if table.get("alpha") is not None:  # absent or None (a record's spec): the family's norm
            kw["alpha"] = float(number(table["alpha"], p + "alpha"))
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> SweepSpec:
        table = load_toml(path)
        return cls.from_mapping(table.get("sweep", table), "sweep" if "sweep" in table else "")
