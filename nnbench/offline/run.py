"""The offline sweep: grid → cell → oracle → timing → RunRecord, one cell at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from nnbench import provenance
from nnbench.backends import BackendConfig
from nnbench.backends.engine import Engine
from nnbench.backends.pool import BackendPool
from nnbench.cells.registry import CELLS, CellRegistry
from nnbench.evidence import EvidenceBook, attempt
from nnbench.jobs import CellParams
from nnbench.offline.grid import CellRun, excluded, expand
from nnbench.offline.spec import SweepSpec
from nnbench.offline.timing import Timing, measure
from nnbench.oracle import Evidence, Failure, NoiseFloor, ReferenceStore, Verdict, judge
from nnbench.provision import cache_root, ensure_model
from nnbench.records import CellRow, FloorRow, ParamsRow, SweepSummary, verdict_fields
from nnbench.results import RunRecord, finishing, write_record
from nnbench.verdict import sweep_verdict
from nnbench.vocab import BackendName, Workload

T = TypeVar("T")


@dataclass
class SweepContext:
    spec: SweepSpec
    pool: BackendPool
    store: ReferenceStore
    registry: CellRegistry
    engine_settings: Engine | None = None
    """vLLM engine settings; by default the defaults on the spec's device and tensor parallelism"""
    references: CellRegistry = CELLS
    """where the HF reference cells come from (tests judge planted cells against the shipped ones)"""
    measured: dict = field(default_factory=dict)
    engine: Engine = field(init=False)
    book: EvidenceBook = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        engine = self.engine_settings or Engine(device=spec.device, tensor_parallel_size=spec.tensor_parallel_size)
        if (engine.device, engine.tensor_parallel_size) != (spec.device, spec.tensor_parallel_size):
            raise ValueError(f"engine: device {engine.device!r}, tp {engine.tensor_parallel_size} differs "
                             f"from the sweep's {spec.device!r}, tp {spec.tensor_parallel_size}")
        self.engine = engine
        self.book = EvidenceBook(self.pool, self.store, spec.device, engine.backend_config, self.references,
                                 CellParams(new_tokens=spec.new_tokens))

    def once(self, key: tuple, fn: Callable[[], T]) -> T | Failure:
        """Measure a baseline once per backend and job (a cell's variants share it)."""
        if key not in self.measured:
            self.measured[key] = attempt(fn)
        return self.measured[key]

    def backend_config(self, backend: BackendName, run: CellRun, dtype: str) -> BackendConfig:
        return self.engine.backend_config(backend, run.key.family, dtype, run.job.model)


def run_cell(run: CellRun, ctx: SweepContext) -> CellRow:
    """One row of the map: the cell's state, the oracle's figures and its warm timing."""
    config = ctx.backend_config(run.key.backend, run, run.dtype)
    open_s = ctx.pool.open_seconds.get
    if run.key not in ctx.registry:
        missing = Failure("NotImplementedError", f"no cell registered for {run.key}")
        return _row(run, ctx, judge(missing, Evidence(ctx.book.reference(run.job))), None, None, None, open_s(config))
    entry = ctx.registry.get(run.key)
    backend = attempt(lambda: ctx.pool.get(config))
    output = backend if isinstance(backend, Failure) else attempt(lambda: backend.run(run.job, entry))
    if isinstance(backend, Failure) or isinstance(output, Failure):
        return _row(run, ctx, judge(output, Evidence(ctx.book.reference(run.job))), None, None, None, open_s(config))
    verdict = judge(output, ctx.book.evidence(run.job, config))
    spec = ctx.spec
    timing = attempt(lambda: measure(lambda: backend.run(run.job, entry), spec.warmup, spec.trials, spec.device))
    baseline = ctx.once(("baseline", backend.config, run.job), lambda: measure(
        lambda: backend.run_baseline(run.job), spec.warmup, spec.trials, spec.device))
    plain = ctx.once(("plain", backend.config, run.job), lambda: measure(  # vLLM's generate, no nnsight
        lambda: backend.run_plain(run.job), spec.warmup, spec.trials, spec.device)) if backend.plain_engine else None
    return _row(run, ctx, verdict, timing, baseline, plain, open_s(config))


def _row(run: CellRun, ctx: SweepContext, verdict: Verdict, timing: Timing | Failure | None,
         baseline: Timing | Failure | None, plain: Timing | Failure | None, open_s: float | None) -> CellRow:
    info = ensure_model(run.key.family, run.job.model)
    t = timing if isinstance(timing, Timing) else None
    b = baseline if isinstance(baseline, Timing) else None
    n_prompts = len(run.job.prompts)
    params = run.job.params
    return CellRow(
        methodology=run.key.methodology, family=run.key.family, backend=run.key.backend,
        workload=run.key.workload, variant=run.key.variant, dtype=run.dtype, device=ctx.spec.device,
        tensor_parallel_size=ctx.backend_config(run.key.backend, run, run.dtype).tensor_parallel_size,
        model=info.name, model_hash=info.content_hash, synthetic=info.synthetic,
        params=ParamsRow(params.layer, params.alpha, params.seed, params.new_tokens),
        prompts=n_prompts,
        **verdict_fields(verdict),
        floor=FloorRow.of(verdict.floor) if isinstance(verdict.floor, NoiseFloor) else None,
        relies_on=tuple(ctx.registry.get(run.key).relies_on) if run.key in ctx.registry else (),
        timing=t.row() if t else None,
        timing_error=str(timing) if isinstance(timing, Failure) else None,
        baseline=b.row() if b else None,
        plain_engine=plain.row() if isinstance(plain, Timing) else None,
        overhead=t.median_s / b.median_s if t and b and b.median_s > 0 else None,
        prompts_per_s=n_prompts / t.median_s if t and run.key.workload == Workload.BATCHED and t.median_s > 0 else None,
        backend_open_s=open_s,
    )


def run_sweep(
    spec: SweepSpec,
    out: Path | None = None,
    registry: CellRegistry = CELLS,
    store: ReferenceStore | None = None,
    on_progress: Callable[[int, int, CellRun], None] | None = None,
    pool: BackendPool | None = None,
    engine: Engine | None = None,
    references: CellRegistry = CELLS,
) -> RunRecord:
    """Run every cell of ``spec``; write the record to ``out`` after every row if given.

    Args:
        pool: open backends to reuse (tests and ``nnbench.suite`` share one); by default the sweep
            opens and closes its own.
        engine: vLLM engine settings (the suite's); by default the defaults on ``spec.device``.
        references: the registry whose HF cells make the references (by default the shipped one).
    """
    owned = pool is None
    ctx = SweepContext(spec, pool or BackendPool(), store or ReferenceStore(cache_root() / "references"),
                       registry, engine, references)  # refuses an engine that contradicts the spec, before any output
    runs = expand(spec, registry)
    record = RunRecord("sweep", spec.as_dict(), provenance.collect(spec.device, spec.seed, spec.as_dict()),
                       excluded=excluded(spec))
    save = (lambda: write_record(record, out)) if out else (lambda: None)
    save()
    try:
        with finishing(record, save, sweep_verdict):
            try:
                for index, run in enumerate(runs):
                    if index and run.key.family != runs[index - 1].key.family:
                        ctx.pool.close_family(runs[index - 1].key.family)
                    if index == 0 or run.key.family != runs[index - 1].key.family:
                        _start_early(ctx, run.key.family)
                    if on_progress:
                        on_progress(index, len(runs), run)
                    record.rows.append(run_cell(run, ctx))
                    record.floors = ctx.book.floor_rows()
                    save()
            finally:
                record.summary = summarise(record.rows)
    finally:
        if owned:
            ctx.pool.close()
    return record


def _start_early(ctx: SweepContext, family: str) -> None:
    """Launch the family's server processes now (nnsight-serve spends ~45 s importing before it
    touches the GPU), so they boot while the first cells run; in-process engines open on first use."""
    for backend in ctx.spec.backends:
        for dtype in ctx.spec.dtypes:
            ctx.pool.prestart(ctx.engine.backend_config(backend, family, dtype, ctx.spec.model))


def summarise(rows: list[CellRow]) -> SweepSummary:
    return SweepSummary.of(rows)
