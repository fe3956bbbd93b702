"""Drive one load step against one backend: arrivals → driver → checks → recorder."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from nnbench.cells.job import CellJob
from nnbench.loadgen.arrivals import schedule
from nnbench.loadgen.checker import Check, ResponseChecker
from nnbench.loadgen.driver import Driver
from nnbench.loadgen.recorder import RequestOutcome, StepRecorder
from nnbench.loadgen.requests import LoadRequest, plan
from nnbench.loadgen.scenario import Scenario
from nnbench.oracle import Failure, Outcome
from nnbench.report.progress import LoadProgress
from nnbench.vocab import State

CLOSED_LOOP_POOL = 256
"""distinct prepared requests a closed-loop step cycles through"""


@dataclass(frozen=True, slots=True)
class Step:
    label: str
    offered: float
    rate: float | None = None
    users: int | None = None


def fixed_steps(scenario: Scenario) -> list[Step]:
    if scenario.closed_loop:
        return [Step(f"users={u}", float(u), users=u) for u in scenario.arrivals.users]
    return [Step(str(scenario.process(r)), r, rate=r) for r in scenario.arrivals.rates]


def step_requests(scenario: Scenario, step: Step) -> list[LoadRequest]:
    """The step's requests; the same scenario seed and step give the same trace for every backend."""
    rng = random.Random(f"{scenario.seed}/{step.label}")
    if step.rate is not None:
        offsets = schedule(scenario.process(step.rate), rng, scenario.stop.duration_s, scenario.stop.max_requests)
    else:
        offsets = [0.0] * min(scenario.stop.max_requests or CLOSED_LOOP_POOL, CLOSED_LOOP_POOL)
    return plan(scenario, offsets, rng)


async def drive_step(
    scenario: Scenario,
    step: Step,
    backend_name: str,
    submit: Any,
    payloads: dict[CellJob, Any],
    requests: list[LoadRequest],
    checker: ResponseChecker | None,
    check_pool: Executor,
    progress: LoadProgress,
    partial: list | None = None,
    phases: dict | None = None,
) -> tuple[StepRecorder, list[RequestOutcome]]:
    """Drive one step; ``partial`` receives (recorder, outcomes) before the first request, so a
    caller interrupted mid-step can still write what was measured; ``phases`` receives how long
    the requests (``drive_s``, drain included) and the checks after them (``checks_s``) took."""
    phases = {} if phases is None else phases
    recorder = StepRecorder(backend_name, step.label, step.offered, scenario.stop.warmup_s,
                            scenario.slo.latency_ms / 1e3, highest_s=2 * (scenario.limits.timeout_s + scenario.stop.drain_s))
    jobs_by_id = {r.id: r.job for r in requests}
    outcomes: list[RequestOutcome] = []
    if partial is not None:
        partial.append((recorder, outcomes))
    completed: list[tuple] = []
    errors = [0]

    def finish(request: LoadRequest, outcome: Outcome, dispatched: float, sent: float, done: float, check: Check) -> None:
        result = RequestOutcome(request.id, str(request.job.methodology), request.offset_s, dispatched, sent, done,
                                check.state, outcome.type if isinstance(outcome, Failure) else None, check.note,
                                check.isolation_with, check.pairs, check.told_apart)
        recorder.record(result)
        outcomes.append(result)

    def on_complete(request: LoadRequest, outcome: Outcome, dispatched: float, sent: float, done: float,
                    overlapping: list[int]) -> None:
        """Timestamps are final here; the oracle runs after the step (see ``_check_all``)."""
        errors[0] += isinstance(outcome, Failure)
        completed.append((request, outcome, dispatched, sent, done, overlapping))

    driver = Driver(submit, lambda r: payloads[r.job], scenario.limits.max_in_flight, scenario.limits.timeout_s,
                    on_complete, track_overlap=checker is not None)
    progress.start(f"{backend_name} {step.label}", len(requests) if step.rate is not None else scenario.stop.max_requests)

    async def show() -> None:
        while True:
            progress.update(driver.done_count, driver.sent_count - driver.done_count, errors[0])
            await asyncio.sleep(0.25)

    shower = asyncio.create_task(show())
    started = time.perf_counter()
    gc.collect()
    gc.freeze()  # what exists now (models, payloads, references) is never scanned again mid-step
    try:
        if step.rate is not None:
            await driver.open_loop(requests, scenario.stop.drain_s)
        else:
            ids = itertools.count(len(requests))
            cycle = (LoadRequest(next(ids), 0.0, r.job) for r in itertools.cycle(requests))

            def numbered():
                for request in cycle:
                    jobs_by_id[request.id] = request.job
                    yield request

            await driver.closed_loop(step.users, numbered(), scenario.stop.duration_s, scenario.stop.max_requests,
                                     scenario.arrivals.think_time_s, scenario.stop.drain_s)
    finally:
        gc.unfreeze()
        shower.cancel()
        progress.update(driver.done_count, driver.sent_count - driver.done_count, errors[0])
        phases["drive_s"] = time.perf_counter() - started
        await _check_all(completed, checker, check_pool, jobs_by_id, finish, scenario.limits.timeout_s)
        phases["checks_s"] = time.perf_counter() - started - phases["drive_s"]
    return recorder, outcomes


async def _check_all(completed: list[tuple], checker: ResponseChecker | None, check_pool: Executor,
                     jobs_by_id: dict, finish, timeout_s: float) -> None:
    """Score every completed request once the step's clock has stopped: the oracle never competes
    with an in-process engine for the CPU (and the GIL) while latencies are being measured. A
    check that has not finished by the deadline is recorded as an ERROR, never dropped."""
    if checker is None:
        for request, outcome, *times, _ in completed:
            state = State.ERROR if isinstance(outcome, Failure) else State.NO_REFERENCE
            finish(request, outcome, *times, Check(state, str(outcome) if state == State.ERROR else "checks disabled"))
        return
    loop = asyncio.get_running_loop()
    futures = []
    for request, outcome, *_, overlapping in completed:
        others = [(i, jobs_by_id[i]) for i in overlapping if i in jobs_by_id]
        futures.append(loop.run_in_executor(check_pool, checker.check, request.job, outcome, others))
    if futures:
        await asyncio.wait(futures, timeout=timeout_s)
    for (request, outcome, *times, _), future in zip(completed, futures, strict=True):
        check = _result(future) if future.done() else Check(State.ERROR, f"check not finished within {timeout_s:g} s")
        finish(request, outcome, *times, check)


def _result(future: asyncio.Future) -> Check:
    exc = future.exception()
    if exc is not None:  # a bug in the checker must not lose the request
        return Check(State.ERROR, f"checker failed: {type(exc).__name__}: {exc}")
    return future.result()
