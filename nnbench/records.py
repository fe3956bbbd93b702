"""The rows of a result file, schema v2: one frozen type per record kind, typed values inside.

Every field is written, every field is read back: ``nnbench.schema.decode`` refuses a row with an
unknown or missing field by name. Figures that can be NaN or infinite (a broken run's TV, an
effect ratio over a zero-sized reference effect) are ``float | None``: JSON writes them as null.

Nothing here imports torch or an engine: reports, ``compare`` and the v1 reader load in a moment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from nnbench.machine import MachineLoad
from nnbench.vocab import BackendName, Family, Methodology, State, Variant, Workload

Kind = Literal["sweep", "micro", "loadgen", "suite", "tenants"]


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# ---- values inside rows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    type: str
    """the exception's class (nnsight's dynamic wrappers unwrapped to the original)"""
    message: str


@dataclass(frozen=True, slots=True)
class Figures:
    """The oracle's comparison of one run with another (``nnbench.oracle.Comparison``)."""

    top1: float | None
    top1_near: float | None
    mean_tv: float | None
    max_tv: float | None
    max_rel_err: float | None
    finite: bool
    problem: str | None
    diverged_at_step: int | None
    prompt_tv: tuple[float | None, ...]

    @classmethod
    def of(cls, c: Any) -> Figures:
        return cls(_num(c.top1), _num(c.top1_near), _num(c.mean_tv), _num(c.max_tv), _num(c.max_rel_err),
                   c.finite, c.problem, c.diverged_at_step, tuple(_num(t) for t in c.prompt_tv))


@dataclass(frozen=True, slots=True)
class PromptEffectRow:
    size: float | None
    margin: float | None
    certifies: bool
    resolved: bool
    cosine: float | None
    ratio: float | None


@dataclass(frozen=True, slots=True)
class EffectRow:
    """Per prompt, the cell's effect against the reference's (``nnbench.oracle.effect``)."""

    prompts: tuple[PromptEffectRow, ...]
    certifying: int
    resolved: int
    min_margin: float | None

    @classmethod
    def of(cls, e: Any) -> EffectRow:
        prompts = tuple(PromptEffectRow(_num(p.size), _num(p.margin), p.certifies, p.resolved, _num(p.cosine),
                                        _num(p.ratio)) for p in e.prompts)
        return cls(prompts, e.certifying, sum(p.resolved for p in prompts),
                   _num(min((p.margin for p in e.prompts), default=math.nan)))


def verdict_fields(verdict: Any) -> dict[str, Any]:
    """The fields every judged row (cell or probe) takes from the oracle's ``Verdict``."""
    return {
        "state": verdict.state,
        "note": verdict.note,
        "error": None if verdict.error is None else ErrorInfo(verdict.error.type, verdict.error.message),
        "versus_reference": Figures.of(verdict.versus_reference) if verdict.versus_reference else None,
        "versus_precision": Figures.of(verdict.versus_precision) if verdict.versus_precision else None,
        "effect": EffectRow.of(verdict.effect) if verdict.effect else None,
    }


@dataclass(frozen=True, slots=True)
class FloorRow:
    """A measured noise floor (``nnbench.oracle.NoiseFloor``) and what it lets DEGRADED through."""

    family: Family
    backend: BackendName
    dtype: str
    device: str
    versus_fp32: float | None
    versus_matched: float | None
    hf_rerun: float | None
    runs: int
    reference_dtype: str
    tv: float | None
    degraded_max_tv: float | None

    @classmethod
    def of(cls, f: Any) -> FloorRow:
        return cls(Family(f.family), BackendName(f.backend), f.dtype, f.device, _num(f.versus_fp32),
                   _num(f.versus_matched), _num(f.hf_rerun), f.runs, f.reference_dtype, _num(f.tv),
                   _num(f.tolerance().max_tv))


@dataclass(frozen=True, slots=True)
class FloorFailure:
    """A floor that could not be measured (its unintervened runs failed)."""

    family: Family
    backend: BackendName
    dtype: str
    error: str


@dataclass(frozen=True, slots=True)
class TimingRow:
    median_s: float
    std_s: float
    trials: int
    peak_memory_bytes: int | None
    device_used_bytes: int | None


@dataclass(frozen=True, slots=True)
class ParamsRow:
    layer: int
    alpha: float | None
    seed: int
    new_tokens: int


@dataclass(frozen=True, slots=True)
class Excluded:
    """A methodology × workload pair that is not a cell, and why."""

    methodology: Methodology
    workload: Workload
    reason: str


# ---- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CellRow:
    """One cell of the map (``kind = "sweep"``)."""

    methodology: Methodology
    family: Family
    backend: BackendName
    workload: Workload
    variant: Variant
    dtype: str
    device: str
    tensor_parallel_size: int
    model: str
    model_hash: str
    synthetic: bool
    params: ParamsRow
    prompts: int
    state: State
    note: str
    error: ErrorInfo | None
    versus_reference: Figures | None
    versus_precision: Figures | None
    """against HF at the cell's own precision (below fp32 only)"""
    effect: EffectRow | None
    floor: FloorRow | None
    relies_on: tuple[str, ...]
    """the primitive probes this cell's intervention is built from"""
    timing: TimingRow | None
    timing_error: str | None
    baseline: TimingRow | None
    """the same prompts with no intervention"""
    plain_engine: TimingRow | None
    """the engine with no nnsight at all (vLLM only)"""
    overhead: float | None
    prompts_per_s: float | None
    backend_open_s: float | None

    @property
    def name(self) -> str:
        name = f"{self.methodology}/{self.family}/{self.backend}/{self.workload}"
        return f"{name} [{self.variant}]" if self.variant else name

    @property
    def key(self) -> tuple[str, ...]:
        """Which cell at which precision: a later sweep's row with the same key replaces this one."""
        return (self.methodology, self.family, self.backend, self.workload, self.variant, self.dtype)


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """One primitive probe on one backend (``kind = "micro"``)."""

    primitive: str
    level: int
    module_kind: str
    module_path: str
    family: Family
    backend: BackendName
    dtype: str
    label: str
    """``primitive:module_kind``, the name a cell's ``relies_on`` uses"""
    state: State
    note: str
    error: ErrorInfo | None
    versus_reference: Figures | None
    versus_precision: Figures | None
    effect: EffectRow | None


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """One HDR histogram (µs, 3 significant digits), its percentiles in ms and its encoding."""

    count: int
    overflows: int
    min_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    p99_9_ms: float | None = field(metadata={"key": "p99.9_ms"})
    encoded: str | None


@dataclass(frozen=True, slots=True)
class IsolationFailure:
    request: int
    other: int
    """the in-flight neighbour whose intervention the response carried"""
    note: str


@dataclass(frozen=True, slots=True)
class IsolationPower:
    """Of the overlapping request pairs with different interventions, those a leak would show in."""

    pairs: int
    told_apart: int
    share: float | None


@dataclass(frozen=True, slots=True)
class Phases:
    """Where a load step's wall time went."""

    references_s: float
    """before the clock: the oracle's evidence"""
    payloads_s: float
    """before the clock: each distinct request built once"""
    drive_s: float
    """sending, and draining what was in flight"""
    checks_s: float
    """after the clock: every response judged"""


@dataclass(frozen=True, slots=True)
class LoadStepRow:
    """One step (a rate or a user count) of one backend (``kind = "loadgen"``)."""

    backend: BackendName
    step: str
    """``poisson@4``, ``users=8``: a label for people; the trace's seed does not depend on it"""
    offered: float
    """offered rate (requests/s) or user count"""
    requests: int
    warmup_requests: int
    window_s: float
    throughput_rps: float
    good_requests: int
    goodput_rps: float
    goodput_degraded_rps: float
    states: dict[State, int]
    errors: dict[str, int]
    cut_off: int
    isolation_failures: tuple[IsolationFailure, ...]
    isolation_power: IsolationPower | None
    """None in v1 records written before the leak detector counted its pairs"""
    latency: LatencySummary
    service: LatencySummary
    dispatch_lag: LatencySummary
    error_latency: LatencySummary
    concurrency: str
    interrupted: bool
    phases_s: Phases | None
    valid: bool
    invalid_reason: str | None
    machine: MachineLoad | None = None
    """how busy the machine was during the step apart from this run (``nnbench.machine``); None in
    records written before 2026-12-03 19:00"""


@dataclass(frozen=True, slots=True)
class PartRow:
    """One part of a suite: which ran, for how long, and where it wrote (``kind = "suite"``)."""

    part: Literal["sweep", "micro", "load"]
    family: Family
    name: str
    path: str | None
    seconds: float
    status: str
    error: str | None


# ---- summaries and provenance -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepSummary:
    cells: int
    states: dict[State, int]

    @classmethod
    def of(cls, rows: list[CellRow]) -> SweepSummary:
        counts = {state: 0 for state in State}
        for row in rows:
            counts[row.state] += 1
        return cls(len(rows), counts)


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    probes: int


@dataclass(frozen=True, slots=True)
class LoadSummary:
    knee_rps: dict[BackendName, float | None]
    """per backend, the highest rate meeting the SLO (knee search only)"""


@dataclass(frozen=True, slots=True)
class EngineOpen:
    backend: BackendName
    family: Family
    dtype: str
    open_s: float


@dataclass(frozen=True, slots=True)
class SuiteSummary:
    wall_s: float
    engines: tuple[EngineOpen, ...]
    failed_parts: int


@dataclass(frozen=True, slots=True)
class TenantRow:
    """One attack against one backend (``nnbench.loadgen.tenants``): what the canaries saw."""

    attack: str
    backend: BackendName
    applies: bool
    note: str
    """what happened, in one line (or why the attack does not apply to this backend)"""
    detected: bool = False
    """the canaries saw it: a response wrong or failed that was right alone, an isolation failure, or p99 x latency_alarm"""
    canaries: int = 0
    canaries_wrong: int = 0
    """SILENTLY_WRONG beside (or after) the attacker"""
    canaries_error: int = 0
    isolation_failures: int = 0
    wrong_alone: tuple[int, int] | None = None
    """(SILENTLY_WRONG, ERROR) of the same canary trace sent alone: the backend's own baseline. Only
    a canary that was right alone and wrong or failed with the attacker counts toward detection.
    None: not recorded (runs before 2026-12-03 18:00, which counted every wrong canary)"""
    caused: tuple[int, int] | None = None
    """what the attacker did: canaries wrong with it that were right alone, and canaries failed with it
    that did not fail alone"""
    wrong_examples: tuple[str, ...] = ()
    """up to three wrong or failed canaries, alone and with: 'phase #id methodology: the oracle's note'"""
    p50_ms: tuple[float | None, float | None] = (None, None)
    """(without, with) the attacker"""
    p99_ms: tuple[float | None, float | None] = (None, None)
    goodput_rps: tuple[float | None, float | None] = (None, None)
    """correct responses within the SLO per second (SUPPORTED and SUPPORTED_DEGRADED)"""
    latency_factor: float | None = None
    """canary p99 with the attacker / without"""
    attacker_requests: int = 0
    attacker_errors: int = 0
    survived: bool | None = None
    """the model still answered a canary correctly after the attack (before any restore)"""
    restore_s: float | None = None
    clean_after_restore: bool | None = None
    capabilities: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TenantsSummary:
    attacks: int
    detected: int


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where the numbers came from."""

    date: str
    versions: dict[str, str | None]
    python: str
    platform: str
    device: str
    device_name: str
    cpu_count: int | None
    git_commit: str | None
    seed: int
    spec_hash: str


Row = TypeVar("Row", CellRow, ProbeRow, LoadStepRow, PartRow, TenantRow)
Summary = TypeVar("Summary", SweepSummary, ProbeSummary, LoadSummary, SuiteSummary, TenantsSummary)


KIND_ROWS: dict[str, tuple[type, type]] = {
    "sweep": (CellRow, SweepSummary),
    "micro": (ProbeRow, ProbeSummary),
    "loadgen": (LoadStepRow, LoadSummary),
    "suite": (PartRow, SuiteSummary),
    "tenants": (TenantRow, TenantsSummary),
}
"""each record kind's row and summary types"""

__all__ = ["KIND_ROWS", "CellRow", "EffectRow", "EngineOpen", "ErrorInfo", "Excluded", "Figures", "FloorFailure",
           "FloorRow", "IsolationFailure", "IsolationPower", "Kind", "LatencySummary",
           "LoadStepRow", "LoadSummary", "ParamsRow", "PartRow", "Phases", "ProbeRow", "ProbeSummary",
           "PromptEffectRow", "Provenance", "Row", "SuiteSummary", "Summary", "SweepSummary", "TenantRow", "TenantsSummary", "TimingRow",
           "verdict_fields"]
