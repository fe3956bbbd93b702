"""The cell registry: which function runs methodology × family × backend × workload.

A cell is a plain function ``(model, job) -> CellOutput`` that holds the whole nnsight trace (or
the whole hook set), readable top to bottom. One body may serve several keys (both families on HF
share module paths via ``families.Modules``); a body is never copied. A duplicate key raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nnbench.vocab import BackendName, Family, Methodology, Workload

CellFn = Callable[[Any, Any], Any]


@dataclass(frozen=True, slots=True, order=True)
class CellKey:
    methodology: Methodology
    family: Family
    backend: BackendName
    workload: Workload

    def __str__(self) -> str:
        return f"{self.methodology}/{self.family}/{self.backend}/{self.workload}"


@dataclass(frozen=True, slots=True)
class CellEntry:
    fn: CellFn
    relies_on: tuple[str, ...]
    """primitive probes (``nnbench micro``) this cell's correctness rests on"""


def _many(value: Any, enum: type) -> tuple:
    if isinstance(value, str):
        return (enum(value),)
    return tuple(enum(v) for v in value)


class CellRegistry:
    """A mapping CellKey → cell function; tests build their own instance.

    Examples:
        >>> registry = CellRegistry()
        >>> @registry.cell("steering", ("gpt2", "llama"), "hf", ("interactive", "batched"))
        ... def steering_hf(model, job): ...
    """

    def __init__(self) -> None:
        self._cells: dict[CellKey, CellEntry] = {}

    def cell(
        self,
        methodology: str,
        families: str | Iterable[str],
        backends: str | Iterable[str],
        workloads: str | Iterable[str],
        relies_on: Iterable[str] = (),
    ) -> Callable[[CellFn], CellFn]:
        keys = [
            CellKey(Methodology(methodology), family, backend, workload)
            for family in _many(families, Family)
            for backend in _many(backends, BackendName)
            for workload in _many(workloads, Workload)
        ]

        def register(fn: CellFn) -> CellFn:
            for key in keys:
                if key in self._cells:
                    raise ValueError(f"cell {key} registered twice ({self._cells[key].fn.__name__}, {fn.__name__})")
                self._cells[key] = CellEntry(fn, tuple(relies_on))
            return fn

        return register

    def get(self, key: CellKey) -> CellEntry:
        try:
            return self._cells[key]
        except KeyError:
            raise KeyError(f"no cell registered for {key}") from None

    def __contains__(self, key: CellKey) -> bool:
        return key in self._cells

    def keys(self) -> list[CellKey]:
        return sorted(self._cells)


CELLS = CellRegistry()
cell = CELLS.cell
