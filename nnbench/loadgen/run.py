"""The load generator's pipeline on one screen: ``run_scenario``, whose lines are the stages."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from nnbench import provenance
from nnbench.backends import BackendConfig
from nnbench.backends.engine import IN_PROCESS_TORCH
from nnbench.backends.pool import BackendPool
from nnbench.cells.registry import CELLS, CellKey, CellRegistry
from nnbench.jobs import CellJob, CellOutput
from nnbench.loadgen.checker import ResponseChecker
from nnbench.loadgen.files import ResultFiles
from nnbench.loadgen.references import ReferenceBook
from nnbench.loadgen.requests import LoadRequest
from nnbench.loadgen.scenario import Scenario
from nnbench.loadgen.steps import StepPlan, check, drive, record_step, step_requests
from nnbench.oracle import Failure, Outcome, ReferenceStore
from nnbench.progress import LoadProgress
from nnbench.provision import cache_root
from nnbench.records import LoadSummary, Phases
from nnbench.results import LoadRecord, RunRecord, finishing
from nnbench.verdict import load_verdict
from nnbench.vocab import BackendName


async def run_scenario(scenario: Scenario, out_dir: Path, show_progress: bool = True,
                       registry: CellRegistry = CELLS, backend_override: Any = None,
                       pool: BackendPool | None = None, on_folder: Callable[[Path], None] | None = None) -> LoadRecord:
    """Run every backend of ``scenario`` through its steps; the files are rewritten after each step.

    Args:
        backend_override: a ready backend object to drive instead of opening ``scenario.backends``
            (tests plant a faulty one this way).
        on_folder: told the run folder as soon as it exists (the CLI prints it at the start).
        pool: open backends to drive and leave open (``nnbench.suite`` shares its engines this
            way); by default each engine is opened for its backend's steps and closed after them.
    """
    files = ResultFiles(out_dir, scenario.name)
    if on_folder:
        on_folder(files.dir)
    record: LoadRecord = RunRecord("loadgen", scenario.as_dict(), provenance.collect(
        scenario.engine.device, scenario.seed, scenario.as_dict()), summary=LoadSummary({}))
    with _responsive_loop(), nullcontext(pool) if pool else BackendPool() as engines, \
            ThreadPoolExecutor(2, thread_name_prefix="oracle") as check_pool, LoadProgress(show_progress) as progress, \
            finishing(record, save=lambda: files.write_all(record), verdict=load_verdict):
        references = ReferenceBook(scenario, engines, ReferenceStore(cache_root() / "references"), registry)
        checker = ResponseChecker(references.evidence) if scenario.check else None
        for name in scenario.backends:
            async with _backend(name, scenario, engines, references, backend_override, pool is None) as backend:
                references.use(backend.config)
                payloads: dict[CellJob, Any] = {}  # each job built once per backend, whichever steps send it
                steps = StepPlan(scenario)
                for step in steps:
                    label = f"{name} {step.label}"
                    started = time.perf_counter()
                    requests = step_requests(scenario, step)
                    if scenario.check:
                        await _prefetch(references, requests, progress, label)
                    references_s = time.perf_counter() - started
                    prepare_payloads(backend, name, requests, registry, payloads)
                    payloads_s = time.perf_counter() - started - references_s
                    driven = await drive(scenario, step, label, submitter(backend), partial(_payload, payloads),
                                         requests, progress, track_overlap=checker is not None)
                    await settle(backend, name, scenario.limits.timeout_s)
                    outcomes = await check(driven, checker, check_pool, scenario.limits.timeout_s)
                    checks_s = time.perf_counter() - started - references_s - payloads_s - driven.seconds
                    phases = Phases(references_s, payloads_s, driven.seconds, checks_s)
                    row, recorder = record_step(scenario, step, name, backend.concurrency, outcomes, phases,
                                                driven.interrupted, driven.machine)
                    record.rows.append(row)
                    record.floors = references.floor_rows()
                    files.save_step(record, recorder, outcomes)
                    if driven.interrupted:
                        raise asyncio.CancelledError  # what this step measured is written, marked interrupted
                    steps.finished(row)
                if scenario.knee.enabled:
                    record.summary = LoadSummary((record.summary.knee_rps if record.summary else {})
                                                 | {BackendName(name): steps.knee})
    return record


async def settle(backend: Any, name: str, timeout_s: float) -> None:
    """Cut-off requests off the model before the oracle and the next step's references use it
    (in process they share one model, and a thread cannot be cancelled mid-forward)."""
    still = await backend.quiesce(timeout_s)
    if still:
        raise RuntimeError(f"{still} cut-off request(s) still running on the {name} model {timeout_s:g} s after "
                           "the drain deadline: its references cannot be computed beside them")


@contextmanager
def _responsive_loop(interval_s: float = 0.0002) -> Iterator[None]:
    """In-process backends run their forward passes in worker threads of this process. With the
    default 5 ms GIL switch interval, a busy worker delays the event loop's wake-ups (dispatch lag
    p99 of 140 ms measured at 8 req/s on 2 cores); 0.2 ms brought it to 4 ms. Restored afterwards."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@asynccontextmanager
async def _backend(name: BackendName, scenario: Scenario, pool: BackendPool, references: ReferenceBook,
                   override: Any, owned: bool) -> AsyncIterator[Any]:
    """The backend ``name`` for its steps; afterwards its HTTP session (bound to this event loop)
    is closed, and an engine this run opened is released: the next backend needs the GPU memory."""
    backend = override or open_load_backend(name, scenario, pool, references)
    try:
        yield backend
    finally:
        await backend.aclose()
        if owned and override is None and name not in IN_PROCESS_TORCH:
            pool.release(backend.config)


async def _prefetch(references: ReferenceBook, requests: list[LoadRequest], progress: LoadProgress, label: str) -> None:
    """Every distinct job's evidence, before the clock, in a thread: a serve backend's own
    unintervened runs make their own event loop."""
    progress.message(f"references for {label}: computing or reading from cache")
    await asyncio.to_thread(references.prefetch, [r.job for r in requests])


def open_load_backend(name: BackendName, scenario: Scenario, pool: BackendPool, references: ReferenceBook) -> Any:
    engine = scenario.engine
    if name == BackendName.NULL:
        from nnbench.backends.null import NullBackend

        def answer(job: CellJob) -> CellOutput:  # the right answer at once (or an empty one when checks are off)
            ref = references.reference(job) if scenario.check else None
            return ref if ref is not None and not isinstance(ref, Failure) else CellOutput(())

        return NullBackend(BackendConfig(name, scenario.family, model=scenario.model), engine.null_latency_ms / 1e3, answer)
    return pool.get(engine.backend_config(name, scenario.family, model=scenario.model))


def prepare_payloads(backend: Any, name: BackendName, requests: list[LoadRequest], registry: CellRegistry,
                     prepared: dict[CellJob, Any]) -> dict[CellJob, Any]:
    """Each distinct job's payload, built before the clock starts, into ``prepared`` (which holds
    the payloads earlier steps built on this backend); a job without a cell here gets its ERROR."""
    for job in dict.fromkeys(r.job for r in requests):
        if job in prepared:
            continue
        variant = registry.default_variant(job.methodology, job.family, name, job.workload)  # AWARE on vLLM
        key = CellKey(job.methodology, job.family, name, job.workload, variant)
        if name != BackendName.NULL and key not in registry:
            prepared[job] = Failure("NotImplementedError", f"no cell registered for {key}")
            continue
        entry = registry.get(key) if key in registry else None
        try:
            prepared[job] = backend.prepare(job, entry)
        except Exception as exc:  # noqa: BLE001 - a request that cannot be built is an ERROR outcome
            prepared[job] = Failure.from_exception(exc)
    return prepared


def _payload(payloads: dict[CellJob, Any], request: LoadRequest) -> Any:
    return payloads[request.job]


def submitter(backend: Any) -> Callable[[Any], Awaitable[Outcome]]:
    async def submit(payload: Any) -> Outcome:
        if isinstance(payload, Failure):
            return payload
        output = await backend.submit(payload)
        return output if output is not None else Failure("EmptyResponse", "the backend returned nothing")

    return submit
