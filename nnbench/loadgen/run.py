"""The load generator's pipeline on one screen:
scenario ① → arrivals ② → driver ③ → backend ④ → oracle ⑤ → recorder ⑥ → report ⑦."""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from nnbench import provenance
from nnbench.backends import BackendConfig
from nnbench.backends.engine import IN_PROCESS_TORCH
from nnbench.backends.pool import BackendPool
from nnbench.cells.job import CellOutput
from nnbench.cells.registry import CELLS, CellKey, CellRegistry
from nnbench.loadgen.checker import ResponseChecker
from nnbench.loadgen.knee import KneeSearch, meets_slo
from nnbench.loadgen.references import ReferenceBook
from nnbench.loadgen.scenario import Scenario
from nnbench.loadgen.steps import Step, drive_step, fixed_steps, step_requests
from nnbench.oracle import Failure, ReferenceStore
from nnbench.provision import cache_root
from nnbench.records import LoadStepRow, LoadSummary, Phases
from nnbench.report.loadgen import ResultFiles
from nnbench.report.progress import LoadProgress
from nnbench.results import LoadRecord, RunRecord, finishing
from nnbench.vocab import BackendName


async def run_scenario(scenario: Scenario, out_dir: Path, show_progress: bool = True,
                       registry: CellRegistry = CELLS, backend_override: Any = None,
                       pool: BackendPool | None = None) -> RunRecord:
    """Run every backend of ``scenario`` through its steps; results are rewritten after each step.

    Args:
        backend_override: a ready backend object to drive instead of opening ``scenario.backends``
            (tests plant a faulty one this way).
        pool: open backends to drive and leave open (``nnbench.suite`` shares its engines this
            way); by default each engine is opened for its backend's steps and closed after them.
    """
    files = ResultFiles(out_dir, scenario.name)                                              # ⑦
    with _responsive_loop():
        return await _run(scenario, files, show_progress, registry, backend_override, pool)


@contextmanager
def _responsive_loop(interval_s: float = 0.0002):
    """In-process backends run their forward passes in worker threads of this process. With the
    default 5 ms GIL switch interval, a busy worker delays the event loop's wake-ups (dispatch lag
    p99 of 140 ms measured at 8 req/s on 2 cores); 0.2 ms brought it to 4 ms. Restored afterwards."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


async def _run(scenario: Scenario, files: ResultFiles, show_progress: bool, registry: CellRegistry,
               backend_override: Any, shared: BackendPool | None) -> RunRecord:
    record: LoadRecord = RunRecord("loadgen", scenario.as_dict(), provenance.collect(
        scenario.engine.device, scenario.seed, scenario.as_dict()), summary=LoadSummary({}))
    with nullcontext(shared) if shared else BackendPool() as pool, \
            ThreadPoolExecutor(2, thread_name_prefix="oracle") as check_pool, LoadProgress(show_progress) as progress:
        references = ReferenceBook(scenario, pool, ReferenceStore(cache_root() / "references"), registry)
        checker = ResponseChecker(references.evidence) if scenario.check else None
        with finishing(record, save=lambda: files.write_all(record)):                        # ⑦
            for name in scenario.backends:
                backend = backend_override or open_load_backend(name, scenario, pool, references)  # ④
                references.use(backend.config)
                steps = KneeSearch(scenario.knee) if scenario.knee.enabled else None
                try:
                    await _drive_backend(scenario, name, backend, steps, references, checker, check_pool,
                                         progress, registry, record, files)
                finally:
                    if hasattr(backend, "aclose"):  # an HTTP session belongs to this event loop
                        await backend.aclose()
                    if shared is None and backend_override is None and name not in IN_PROCESS_TORCH:
                        pool.release(backend.config)  # the next backend's engine needs the GPU memory
    return record


async def _drive_backend(scenario: Scenario, name: str, backend: Any, steps: KneeSearch | None,
                         references: ReferenceBook, checker: ResponseChecker | None, check_pool, progress,
                         registry: CellRegistry, record: RunRecord, files: ResultFiles) -> None:
    """Every step of one backend: arrivals ② → payloads → driver ③ (oracle ⑤, recorder ⑥) → files ⑦."""
    prepared: dict = {}  # a job's payload is built once per backend, whichever steps send it
    for step in _steps(scenario, steps):
        phases = {"references_s": 0.0}
        started = time.perf_counter()
        requests = step_requests(scenario, step)                                 # ②
        if scenario.check:
            progress.message(f"references for {step.label}: computing or reading from cache")
            # ⑤ before the clock, in a thread: a serve backend's own unintervened runs make their own event loop
            await asyncio.to_thread(references.prefetch, [r.job for r in requests])
            phases["references_s"] = time.perf_counter() - started
        payloads = prepare_payloads(backend, name, requests, registry, prepared)
        phases["payloads_s"] = time.perf_counter() - started - phases["references_s"]
        partial: list = []
        try:
            recorder, outcomes = await drive_step(scenario, step, name, _submitter(backend), payloads,
                                                  requests, checker, check_pool, progress, partial, phases)  # ③ ⑤ ⑥
        except (asyncio.CancelledError, KeyboardInterrupt):
            if partial:  # interrupted mid-step: keep what this step measured, marked as such
                _append_step(record, files, backend, scenario, *partial[0], interrupted=True, phases=phases)
            raise
        record.floors = references.floor_rows()
        row = _append_step(record, files, backend, scenario, recorder, outcomes, phases=phases)
        if steps is not None:
            steps.report(step.offered, meets_slo(row, scenario.slo.min_goodput_fraction))
    if steps is not None:
        knees = record.summary.knee_rps if record.summary else {}
        record.summary = LoadSummary(knees | {BackendName(name): steps.knee_rate})


def _append_step(record: RunRecord, files: ResultFiles, backend: Any, scenario: Scenario, recorder, outcomes,
                 interrupted: bool = False, phases: dict | None = None) -> LoadStepRow:
    p = phases or {}
    timed = Phases(p.get("references_s", 0.0), p.get("payloads_s", 0.0), p.get("drive_s", 0.0), p.get("checks_s", 0.0))
    row = recorder.row(getattr(backend, "concurrency", "?"), interrupted, timed)
    row = _with_validity(row, scenario)
    record.rows.append(row)
    files.save_step(record, recorder, outcomes)                                              # ⑦
    return row


def _steps(scenario: Scenario, search: KneeSearch | None):
    if search is None:
        yield from fixed_steps(scenario)
        return
    while (rate := search.next_rate()) is not None:
        yield Step(str(scenario.process(rate)), rate, rate=rate)


def open_load_backend(name: BackendName, scenario: Scenario, pool: BackendPool, references: ReferenceBook):
    engine = scenario.engine
    if name == BackendName.NULL:
        from nnbench.backends.null import NullBackend

        def answer(job):  # the right answer at once (or an empty one when checks are off)
            ref = references.reference(job) if scenario.check else None
            return ref if ref is not None and not isinstance(ref, Failure) else CellOutput(())

        return NullBackend(BackendConfig(name, scenario.family), engine.null_latency_ms / 1e3, answer)
    return pool.get(engine.backend_config(name, scenario.family))


def prepare_payloads(backend, name: str, requests, registry: CellRegistry, prepared: dict | None = None) -> dict:
    """Each distinct job's payload, built before the clock starts (or taken from ``prepared``, the
    payloads earlier steps built on this backend); a job without a cell here gets its ERROR."""
    payloads = {} if prepared is None else prepared
    for job in dict.fromkeys(r.job for r in requests):
        if job in payloads:
            continue
        variant = registry.default_variant(job.methodology, job.family, name, job.workload)  # AWARE on vLLM
        key = CellKey(job.methodology, job.family, name, job.workload, variant)
        if name != BackendName.NULL and key not in registry:
            payloads[job] = Failure("NotImplementedError", f"no cell registered for {key}")
            continue
        entry = registry.get(key) if key in registry else None
        try:
            payloads[job] = backend.prepare(job, entry)
        except Exception as exc:  # noqa: BLE001 - a request that cannot be built is an ERROR outcome
            payloads[job] = Failure.from_exception(exc)
    return payloads


def _submitter(backend):
    async def submit(payload):
        if isinstance(payload, Failure):
            return payload
        output = await backend.submit(payload)
        return output if output is not None else Failure("EmptyResponse", "the backend returned nothing")

    return submit


def _with_validity(row: LoadStepRow, scenario: Scenario) -> LoadStepRow:
    lag = row.dispatch_lag.p99_ms
    if lag is not None and lag > scenario.max_send_lag_p99_ms:
        return replace(row, valid=False, invalid_reason=f"generator fell behind: dispatch lag p99 {lag:.2f} ms "
                                                        f"> {scenario.max_send_lag_p99_ms:g} ms")
    return row
