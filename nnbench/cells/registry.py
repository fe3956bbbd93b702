"""The cell registry: which function runs methodology × family × backend × workload.

A cell is a plain function ``(model, job) -> CellOutput`` that holds the whole nnsight trace (or
the whole hook set), readable top to bottom. One body may serve several keys (both families on HF
share module paths via ``families.Modules``); a body is never copied. A duplicate key raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from nnbench.vocab import BackendName, Family, Methodology, Variant, Workload

CellFn = Callable[[Any, Any], Any]


@dataclass(frozen=True, slots=True, order=True)
class CellKey:
    methodology: Methodology
    family: Family
    backend: BackendName
    workload: Workload
    variant: Variant = Variant.NONE
    """vLLM cells: PORTABLE (the HF code, naively ported) or AWARE (written for vLLM's layouts)"""

    def __str__(self) -> str:
        name = f"{self.methodology}/{self.family}/{self.backend}/{self.workload}"
        return f"{name}[{self.variant}]" if self.variant else name


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
        >>> @registry.cell("logit_lens", "llama", "vllm_sync", "interactive", variant="portable")
        ... def logit_lens_vllm_portable(model, prompts, job, trace_kwargs): ...
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
        variant: str = Variant.NONE,
    ) -> Callable[[CellFn], CellFn]:
        keys = [
            CellKey(Methodology(methodology), family, backend, workload, Variant(variant))
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

    def __iter__(self) -> Iterator[CellKey]:
        return iter(self.keys())

    def variants(self, methodology: str, family: str, backend: str, workload: str) -> tuple[Variant, ...]:
        """The variants registered for one methodology × family × backend × workload, in order."""
        base = (Methodology(methodology), Family(family), BackendName(backend), Workload(workload))
        return tuple(sorted(k.variant for k in self._cells if (k.methodology, k.family, k.backend, k.workload) == base))

    def default_variant(self, methodology: str, family: str, backend: str, workload: str) -> Variant:
        """The form a load test runs when its scenario names none: AWARE where there is a choice."""
        found = self.variants(methodology, family, backend, workload)
        return Variant.AWARE if Variant.AWARE in found else (found[0] if found else Variant.NONE)


CELLS = CellRegistry()
cell = CELLS.cell
