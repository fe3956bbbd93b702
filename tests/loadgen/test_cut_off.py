"""Cut-off requests never share the model with what comes after the step (issue 18): a request
cancelled while it waits for the model is never run, and ``quiesce`` returns only once the one
already in its forward pass has finished. Driven by events, not by the clock."""

from __future__ import annotations

import asyncio
import threading

from nnbench.backends import BackendConfig
from nnbench.backends.in_process import InProcessBackend
from nnbench.provision import ensure_model


class Gated(InProcessBackend):
    """An in-process backend whose forward pass waits for the test to release it."""

    def __init__(self) -> None:
        super().__init__(BackendConfig("hf", "llama"), ensure_model("llama"))
        self.started, self.release, self.ran = threading.Event(), threading.Event(), []

    def run(self, job, entry):
        self.ran.append(job)
        self.started.set()
        self.release.wait(60)
        return job


async def test_a_cut_off_request_waiting_for_the_model_never_runs_and_quiesce_waits_for_the_running_one():
    backend = Gated()
    first = asyncio.create_task(backend.submit(("first", None)))
    await asyncio.to_thread(backend.started.wait, 60)  # the readiness signal: the first is in its forward
    queued = [asyncio.create_task(backend.submit((f"queued-{i}", None))) for i in range(3)]
    await asyncio.sleep(0)  # let them reach their threads (they wait on the model's lock)
    for task in (first, *queued):
        task.cancel()  # the drain deadline: all four cut off
    assert await backend.quiesce(0.0) >= 1  # the first is still in its forward pass
    backend.release.set()
    assert await backend.quiesce(60.0) == 0
    assert backend.ran == ["first"]  # the queued ones never touched the model

