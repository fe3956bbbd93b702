"""The one place that loops over methodology × family × backend × workload × dtype."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from nnbench.cells.registry import CELLS, CellKey, CellRegistry
from nnbench.jobs import CellJob, CellParams
from nnbench.offline.spec import SweepSpec
from nnbench.prompt_sets import pool
from nnbench.prompts import Prompt
from nnbench.records import Excluded
from nnbench.validate import SpecError
from nnbench.vocab import Methodology, Variant, Workload

EXCLUDED: dict[tuple[Methodology, Workload], str] = {
    (Methodology.ATTRIBUTION_PATCHING, Workload.GENERATION):
        "gradients do not flow through generate(), which runs under torch.no_grad on HF",
    (Methodology.GENERATION_STEERING, Workload.GENERATION):
        "generation_steering is itself a generation workload: see its interactive and batched cells",
}
"""Combinations that have no meaning, with the reason printed under the map."""



@dataclass(frozen=True, slots=True)
class CellRun:
    key: CellKey
    job: CellJob
    dtype: str

    def __str__(self) -> str:
        return f"{self.key} [{self.dtype}]"


def prompts_for(methodology: Methodology, workload: Workload, batch_size: int,
                prompts: int | None = None, family: str | None = None) -> tuple[Prompt, ...]:
    """The first of the cell's pool (``prompt_sets.pool``, screened for ``family``), or the first
    ``batch_size`` if batched."""
    drawn = pool(methodology, workload, prompts, family)
    count = batch_size if workload == Workload.BATCHED else 1
    if count > len(drawn):
        what = f"{len(drawn)} prompts of the pool" if prompts else f"{len(drawn)} built-in prompts"
        raise SpecError(f"batch_size: {count} is more than the {what} for {methodology} (set prompts = N for more)")
    return drawn[:count]


def expand(spec: SweepSpec, registry: CellRegistry = CELLS) -> list[CellRun]:
    """Every cell of the spec; one run per registered variant (portable, aware), and one run with
    no variant where nothing is registered, so a missing cell shows up as an ERROR row."""
    params = CellParams(layer=spec.layer, alpha=spec.alpha, seed=spec.seed, new_tokens=spec.new_tokens)
    runs = []
    # family-major, so the sweep can close one family's engines before opening the next's
    for family, methodology, backend, workload, dtype in itertools.product(
        spec.families, spec.methodologies, spec.backends, spec.workloads, spec.dtypes
    ):
        if (methodology, workload) in EXCLUDED:
            continue
        job = CellJob(methodology, family, workload, prompts_for(methodology, workload, spec.batch_size, spec.prompts, family),
                      params, spec.model)
        for variant in registry.variants(methodology, family, backend, workload) or (Variant.NONE,):
            runs.append(CellRun(CellKey(methodology, family, backend, workload, variant), job, dtype))
    return runs


def excluded(spec: SweepSpec) -> list[Excluded]:
    return [
        Excluded(Methodology(m), Workload(w), reason)
        for (m, w), reason in EXCLUDED.items()
        if m in spec.methodologies and w in spec.workloads
    ]
