"""``vllm_async``: nnsight ``VLLM(mode="async")`` in process; traces awaited concurrently.

The engine binds to the event loop that first drives it, so the backend owns one loop on a
thread for the engine's whole life and builds the engine inside it. Traces are built on that
thread too (nnsight's interleaver must not be used from several threads); callers on any loop
await a bridged future. A batch is one one-prompt trace per prompt, all in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency
from nnbench.backends.vllm_engine import baseline_kwargs, load_vllm, shutdown_engine
from nnbench.cells.registry import CellEntry
from nnbench.cells.vllm_trace import Build, Saves, VllmTrace, arun_chain
from nnbench.jobs import CellJob, CellOutput, PromptOutput

RUN_TIMEOUT_S = 600.0
CLOSE_TIMEOUT_S = 30.0


class VLLMAsyncBackend(BackendDefaults):
    concurrency: Concurrency = "concurrent"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.model = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vllm-async-loop", daemon=True)

    def open(self) -> None:
        self._thread.start()

        async def load():  # built inside the loop that will drive it, as nnsight-serve's engine is
            return load_vllm(self.config, "async")

        self.model = asyncio.run_coroutine_threadsafe(load(), self.loop).result(RUN_TIMEOUT_S)

    async def _run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        async def execute(build: Build) -> tuple[VllmTrace, Saves]:
            traced = build({})  # builds and submits on exit
            finished = await traced.tracer.backend  # saves arrive on the finished output
            return traced, finished.saves

        async def one(prompt) -> tuple[PromptOutput, ...]:  # async traces take one invoke
            return await arun_chain(lambda trace_kwargs: entry.fn(self.model, (prompt,), job, trace_kwargs), execute)

        per_prompt = await asyncio.gather(*(one(p) for p in job.prompts))
        return CellOutput(tuple(out for outs in per_prompt for out in outs))

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        return asyncio.run_coroutine_threadsafe(self._run(job, entry), self.loop).result(RUN_TIMEOUT_S)

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._run(*prepared), self.loop))

    def run_baseline(self, job: CellJob) -> None:
        async def empty(text):
            with self.model.trace(text, **baseline_kwargs(job)) as tracer:
                pass
            await tracer.backend

        async def all_prompts():
            await asyncio.gather(*(empty(t) for t in job.texts))

        asyncio.run_coroutine_threadsafe(all_prompts(), self.loop).result(RUN_TIMEOUT_S)

    def close(self) -> None:
        """Shut the engine down, then let the tasks it leaves (vLLM's output handler and socket
        reader, cancelled from this thread) finish on their own loop before it stops: stopping
        first leaves them pending, and Python reports each as destroyed at exit."""
        shutdown_engine(self.model)
        self.model = None
        if self._thread.is_alive():
            with contextlib.suppress(Exception):  # closing must not fail the run
                asyncio.run_coroutine_threadsafe(_cancel_pending(), self.loop).result(CLOSE_TIMEOUT_S)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


async def _cancel_pending() -> None:
    """Cancel every other task on the running loop and wait (bounded) for them to finish."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S / 2)
