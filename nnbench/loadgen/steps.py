"""The stages of one load step, each a function from frozen values to frozen values:
steps → requests → (references, payloads: see run.py) → drive → checks → step record."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

from nnbench.jobs import CellJob
from nnbench.loadgen.arrivals import schedule
from nnbench.loadgen.checker import Check, ResponseChecker
from nnbench.loadgen.driver import Driver
from nnbench.loadgen.knee import knee_rates, meets_slo
from nnbench.loadgen.recorder import RequestOutcome, StepRecorder
from nnbench.loadgen.requests import LoadRequest, plan
from nnbench.loadgen.scenario import Scenario
from nnbench.machine import LoadMeter, MachineLoad
from nnbench.oracle import Failure, Outcome
from nnbench.progress import LoadProgress
from nnbench.records import LoadStepRow, Phases
from nnbench.vocab import State

CLOSED_LOOP_POOL = 256
"""distinct prepared requests a closed-loop step cycles through"""


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    """position among the backend's steps; with the rate or user count, it seeds the trace"""
    label: str
    """for people (``poisson@4``, ``users=8``); renaming it changes no number"""
    offered: float
    rate: float | None = None
    users: int | None = None


class StepPlan:
    """The steps of one backend: the scenario's fixed rates or users, or the knee search's rates,
    each chosen once the step before it is ``finished``."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.knee: float | None = None
        """the knee search's result, once it has ended"""
        self._met = False

    def __iter__(self) -> Iterator[Step]:
        s = self.scenario
        if not s.knee.enabled:
            if s.closed_loop:
                yield from (Step(i, f"users={u}", float(u), users=u) for i, u in enumerate(s.arrivals.users))
            else:
                yield from (Step(i, str(s.process(r)), r, rate=r) for i, r in enumerate(s.arrivals.rates))
            return
        search = knee_rates(s.knee)
        try:
            rate = next(search)
            for index in itertools.count():
                yield Step(index, str(s.process(rate)), rate, rate=rate)
                rate = search.send(self._met)
        except StopIteration as done:
            self.knee = done.value

    def finished(self, row: LoadStepRow) -> None:
        self._met = meets_slo(row, self.scenario.slo.min_goodput_fraction)


def step_requests(scenario: Scenario, step: Step) -> list[LoadRequest]:
    """The step's requests; the same scenario seed and step give the same trace for every backend."""
    load = step.rate if step.rate is not None else step.users
    rng = random.Random(f"{scenario.seed}/{step.index}/{load!r}")
    if step.rate is not None:
        offsets = schedule(scenario.process(step.rate), rng, scenario.stop.duration_s, scenario.stop.max_requests)
    else:
        offsets = [0.0] * min(scenario.stop.max_requests or CLOSED_LOOP_POOL, CLOSED_LOOP_POOL)
    return plan(scenario, offsets, rng)


@dataclass(frozen=True, slots=True)
class Completed:
    """A request with its final timestamps, not yet judged."""

    request: LoadRequest
    outcome: Outcome
    dispatched: float
    sent: float
    done: float
    overlapping: tuple[int, ...]
    """requests in flight at the same time (for the leak check)"""


@dataclass(frozen=True, slots=True)
class Driven:
    completed: tuple[Completed, ...]
    jobs: dict[int, CellJob]
    """every request id sent (closed loop numbers its cycle on), with its job"""
    seconds: float
    interrupted: bool
    """Ctrl-C (or a cancel) arrived mid-step: what had completed is kept"""
    machine: MachineLoad | None = None
    """how busy the machine was while the step ran, apart from this run"""


async def drive(scenario: Scenario, step: Step, label: str, submit: Callable[[Any], Awaitable[Outcome]],
                payload_of: Callable[[LoadRequest], Any], requests: list[LoadRequest], progress: LoadProgress,
                track_overlap: bool) -> Driven:
    """Send the step's requests (open or closed loop) and wait for them; on interruption, return
    what completed, marked as such (the caller writes it, then re-raises)."""
    jobs = {r.id: r.job for r in requests}
    completed: list[Completed] = []
    errors = 0

    def on_complete(request: LoadRequest, outcome: Outcome, dispatched: float, sent: float, done: float,
                    overlapping: list[int]) -> None:
        """Timestamps are final here; the oracle runs after the step (see ``check``)."""
        nonlocal errors
        errors += isinstance(outcome, Failure)
        completed.append(Completed(request, outcome, dispatched, sent, done, tuple(overlapping)))

    driver = Driver(submit, payload_of, scenario.limits.max_in_flight, scenario.limits.timeout_s, on_complete,
                    track_overlap=track_overlap)
    progress.start(label, len(requests) if step.rate is not None else scenario.stop.max_requests)

    async def show() -> None:
        while True:
            progress.update(driver.done_count, driver.sent_count - driver.done_count, errors)
            await asyncio.sleep(0.25)

    shower = asyncio.create_task(show())
    meter = LoadMeter().start()
    started = time.perf_counter()
    interrupted = False
    gc.collect()
    gc.freeze()  # what exists now (models, payloads, references) is never scanned again mid-step
    try:
        if step.users is None:
            await driver.open_loop(requests, scenario.stop.drain_s)
        else:
            await driver.closed_loop(step.users, _numbered(requests, jobs), scenario.stop.duration_s,
                                     scenario.stop.max_requests, scenario.arrivals.think_time_s, scenario.stop.drain_s)
    except (asyncio.CancelledError, KeyboardInterrupt):
        interrupted = True
    finally:
        gc.unfreeze()
        shower.cancel()
        progress.update(driver.done_count, driver.sent_count - driver.done_count, errors)
    return Driven(tuple(completed), jobs, time.perf_counter() - started, interrupted, meter.stop())


def _numbered(requests: list[LoadRequest], jobs: dict[int, CellJob]) -> Iterator[LoadRequest]:
    """A closed loop's endless cycle through the step's requests, each send with its own id."""
    ids = itertools.count(len(requests))
    for request in itertools.cycle(requests):
        numbered = LoadRequest(next(ids), 0.0, request.job)
        jobs[numbered.id] = numbered.job
        yield numbered


async def check(driven: Driven, checker: ResponseChecker | None, pool: Executor,
                timeout_s: float) -> tuple[RequestOutcome, ...]:
    """Score every completed request once the step's clock has stopped: the oracle never competes
    with an in-process engine for the CPU (and the GIL) while latencies are being measured. A
    check that has not finished by the deadline is recorded as an ERROR, never dropped."""
    if checker is None:
        return tuple(_outcome(c, Check(State.ERROR, str(c.outcome)) if isinstance(c.outcome, Failure)
                              else Check(State.NO_REFERENCE, "checks disabled")) for c in driven.completed)
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(pool, checker.check, c.request.job, c.outcome,
                                    [(i, driven.jobs[i]) for i in c.overlapping if i in driven.jobs])
               for c in driven.completed]
    if futures:
        await asyncio.wait(futures, timeout=timeout_s)
    return tuple(_outcome(c, _result(f) if f.done() else Check(State.ERROR, f"check not finished within {timeout_s:g} s"))
                 for c, f in zip(driven.completed, futures, strict=True))


def _outcome(c: Completed, check: Check) -> RequestOutcome:
    return RequestOutcome(c.request.id, str(c.request.job.methodology), c.request.offset_s, c.dispatched, c.sent,
                          c.done, check.state, c.outcome.type if isinstance(c.outcome, Failure) else None,
                          check.note, check.isolation_with, check.pairs, check.told_apart)


def _result(future: asyncio.Future) -> Check:
    exc = future.exception()
    if exc is not None:  # a bug in the checker must not lose the request
        return Check(State.ERROR, f"checker failed: {type(exc).__name__}: {exc}")
    return future.result()


def record_step(scenario: Scenario, step: Step, backend: str, concurrency: str, outcomes: tuple[RequestOutcome, ...],
                phases: Phases, interrupted: bool, machine: MachineLoad | None = None) -> tuple[LoadStepRow, StepRecorder]:
    """The step's row (and its histograms, for the .hgrm file); a step whose generator fell
    behind its own schedule is marked invalid."""
    recorder = StepRecorder(backend, step.label, step.offered, scenario.stop.warmup_s, scenario.slo.latency_ms / 1e3,
                            highest_s=2 * (scenario.limits.timeout_s + scenario.stop.drain_s))
    for outcome in sorted(outcomes, key=lambda o: o.id):
        recorder.record(outcome)
    row = replace(recorder.row(concurrency, interrupted, phases), machine=machine)
    lag = row.dispatch_lag.p99_ms
    if lag is not None and lag > scenario.max_send_lag_p99_ms:
        row = replace(row, valid=False, invalid_reason=f"generator fell behind: dispatch lag p99 {lag:.2f} ms "
                                                        f"> {scenario.max_send_lag_p99_ms:g} ms")
    return row, recorder
