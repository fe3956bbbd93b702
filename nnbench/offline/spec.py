"""The sweep spec: which cells to run and how to time them (TOML or command-line flags)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nnbench.prompt_sets import pool
from nnbench.provision import ModelRule, with_model
from nnbench.validate import Device, Enums, ListOf, Maybe, Num, Rule, load_toml, read_table
from nnbench.vocab import DEFAULT_FAMILIES, DTYPES, BackendName, Family, Methodology, Workload

SWEEP: dict[str, Rule] = {
    "methodologies": Enums(Methodology), "families": Enums(Family), "backends": Enums(BackendName),
    "workloads": Enums(Workload), "dtypes": ListOf(DTYPES), "device": Device(),
    "batch_size": Num(integer=True, minimum=1), "new_tokens": Num(integer=True, minimum=1),
    "layer": Num(integer=True, minimum=0), "seed": Num(integer=True, minimum=0), "warmup": Num(integer=True, minimum=0),
    "trials": Num(integer=True, minimum=1), "tensor_parallel_size": Num(integer=True, minimum=1), "alpha": Maybe(Num()),
    "model": ModelRule(), "prompts": Maybe(Num(integer=True, minimum=1))}
"""the field table of a sweep spec ([sweep] of a suite, a sweep TOML, the CLI's flags)"""


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """Selects methodology × family × backend × workload × dtype and the timing protocol."""

    methodologies: tuple[Methodology, ...] = tuple(Methodology)
    families: tuple[Family, ...] = DEFAULT_FAMILIES
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
    prompts: int | None = None
    """the size of the templated prompt pool (``nnbench/prompt_sets.py``); None: the built-in 8
    facts and 4 IOI pairs. A batched cell takes ``batch_size`` prompts of it"""
    model: str = ""
    """a built-in model's name or a local HF directory (its family is the one swept); empty: each
    family's default model"""

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_mapping(cls, table: dict[str, Any], where: str = "") -> SweepSpec:
        """Build from a TOML table or CLI overrides, refusing any bad field with one line."""
        fields = read_table(table, where, SWEEP)
        if fields.get("model"):
            fields["families"] = with_model(fields.get("families", ()), fields["model"], "families" in fields,
                                            f"{where}." if where else "")
        spec = cls(**fields)
        if spec.prompts is not None:  # a pool too large for its templates is refused now, by name
            for family, methodology, workload in itertools.product(spec.families, spec.methodologies, spec.workloads):
                pool(methodology, workload, spec.prompts, family)
        return spec

    @classmethod
    def load(cls, path: str | Path) -> SweepSpec:
        table = load_toml(path)
        return cls.from_mapping(table.get("sweep", table), "sweep" if "sweep" in table else "")
