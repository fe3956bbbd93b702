"""The async sender: open loop on intended times, or closed-loop users; bounded everywhere.

Open loop: the dispatcher sleeps until ``t0 + offset`` on the loop's monotonic clock, then spawns
the request; it never awaits a request, the in-flight cap or a check. A request waits for the cap
inside its own task, so that wait is charged to its latency (measured from the intended time).
Every await has a deadline: each request its timeout, the whole step its drain. Requests still in
flight at the drain deadline are cancelled and recorded as cut off, never dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nnbench.loadgen.requests import LoadRequest
from nnbench.oracle import Failure, Outcome

SPIN_S = 0.0015
"""the last stretch before a send is spun (sleep(0)) instead of slept: loop timers are ~1 ms coarse"""

Completion = Callable[[LoadRequest, Outcome, float, float, float, list[int]], None]
"""(request, outcome, dispatched, sent, done, ids of requests in flight during its life)"""


MAX_OVERLAP = 64
"""isolation candidates kept per request: the nearest in send order on each side"""


@dataclass
class InFlight:
    """Which requests overlapped which: the candidates for an isolation failure.

    Bounded per request (``MAX_OVERLAP``), so a backlog of thousands in flight costs no more than
    a few; off entirely when responses are not checked.
    """

    enabled: bool = True
    current: dict[int, None] = field(default_factory=dict)
    """ids in flight, in send order"""
    order: list[int] = field(default_factory=list)

    def sent(self, request_id: int) -> tuple[tuple[int, ...], int]:
        if not self.enabled:
            return (), 0
        snapshot = tuple(self.current)[-MAX_OVERLAP:]
        self.current[request_id] = None
        self.order.append(request_id)
        return snapshot, len(self.order)

    def done(self, request_id: int, snapshot: tuple[int, ...], mark: int) -> list[int]:
        if not self.enabled:
            return []
        self.current.pop(request_id, None)
        later = self.order[mark:mark + MAX_OVERLAP]
        return sorted(set(snapshot).union(later) - {request_id})


class Driver:
    def __init__(self, submit: Callable[[Any], Any], payload: Callable[[LoadRequest], Any], max_in_flight: int,
                 timeout_s: float, on_complete: Completion, track_overlap: bool = True) -> None:
        """
        Args:
            submit: the backend's ``submit``; awaited under the request's timeout.
            payload: the prepared payload of a request (built before the clock started).
            track_overlap: note which requests were in flight together (isolation checks need it).
        """
        self.submit = submit
        self.payload = payload
        self.cap = asyncio.Semaphore(max_in_flight)
        self.timeout_s = timeout_s
        self.on_complete = on_complete
        self.in_flight = InFlight(enabled=track_overlap)
        self.t0 = 0.0
        self.sent_count = 0
        self.done_count = 0

    def now(self) -> float:
        """Seconds since the step started, on one monotonic high-resolution clock.

        Not ``loop.time()``: uvloop's is libuv's cached millisecond clock, which quantised every
        dispatch lag to 0.5 ms ± 0.5 ms when we used it.
        """
        return time.perf_counter() - self.t0

    async def _one(self, request: LoadRequest, intended: float, progress: dict) -> None:
        dispatched = self.now()
        progress[request.id] = (intended, dispatched, None, None)
        async with self.cap:
            sent = self.now()
            snapshot, mark = self.in_flight.sent(request.id)
            progress[request.id] = (intended, dispatched, sent, (snapshot, mark))
            self.sent_count += 1
            try:
                async with asyncio.timeout(self.timeout_s):
                    outcome: Outcome = await self.submit(self.payload(request))
            except TimeoutError:
                outcome = Failure("TimeoutError", f"no response within {self.timeout_s:g} s")
            except Exception as exc:  # noqa: BLE001 - a failed request is an outcome, not a crash
                outcome = Failure.from_exception(exc)
            done = self.now()
        overlapping = self.in_flight.done(request.id, snapshot, mark)
        del progress[request.id]
        self.done_count += 1
        self.on_complete(request, outcome, dispatched, sent, done, overlapping)

    async def _sleep_until(self, target: float) -> None:
        while (remaining := target - self.now()) > 0:
            await asyncio.sleep(remaining - SPIN_S if remaining > SPIN_S else 0)

    async def _drain(self, tasks: set[asyncio.Task], progress: dict, drain_s: float) -> None:
        """Wait for the stragglers until the deadline; record the rest as cut off."""
        pending = {t for t in tasks if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=drain_s)
        cut_at = self.now()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for request_id, (_intended, dispatched, sent, marks) in list(progress.items()):
            request = self._requests[request_id]
            overlapping = self.in_flight.done(request_id, *marks) if marks else []
            self.on_complete(request, Failure("CutOff", f"still in flight at the drain deadline ({drain_s:g} s)"),
                             dispatched, sent if sent is not None else cut_at, cut_at, overlapping)
        progress.clear()

    async def open_loop(self, requests: list[LoadRequest], drain_s: float, stop: asyncio.Event | None = None) -> None:
        """Send each request at its intended offset; then drain."""
        self._requests = {r.id: r for r in requests}
        self.t0 = time.perf_counter()
        tasks: set[asyncio.Task] = set()
        progress: dict[int, tuple] = {}
        try:
            for request in requests:
                await self._sleep_until(request.offset_s)
                if stop is not None and stop.is_set():
                    break
                task = asyncio.create_task(self._one(request, request.offset_s, progress))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            await asyncio.shield(self._drain(tasks, progress, drain_s))

    async def closed_loop(self, users: int, requests: Iterator[LoadRequest], duration_s: float,
                          max_requests: int | None, think_time_s: float, drain_s: float) -> None:
        """``users`` users, each sending its next request when its last returns (plus think time).

        A user's intended send time is the moment it decides to send; nothing is sent at or after
        ``duration_s`` or past ``max_requests`` in all.
        """
        self._requests = {}
        self.t0 = time.perf_counter()
        progress: dict[int, tuple] = {}
        budget = [max_requests if max_requests is not None else float("inf")]

        async def user() -> None:
            intended = self.now()
            while intended < duration_s and budget[0] > 0:
                budget[0] -= 1
                base = next(requests)
                request = LoadRequest(base.id, intended, base.job)
                self._requests[request.id] = request
                await self._one(request, intended, progress)
                if think_time_s:
                    await asyncio.sleep(think_time_s)
                intended = self.now()

        tasks = {asyncio.create_task(user()) for _ in range(users)}
        try:
            await asyncio.wait(tasks, timeout=duration_s + self.timeout_s)
        finally:
            await asyncio.shield(self._drain(tasks, progress, drain_s))
