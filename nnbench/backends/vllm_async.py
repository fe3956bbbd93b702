"""``vllm_async``: nnsight ``VLLM(mode="async")`` in process; traces awaited concurrently.

The engine binds to the event loop that first drives it, so the backend owns one loop on a
thread for the engine's whole life. Traces are built on that thread too (nnsight's interleaver
must not be used from several threads); callers on any loop await a bridged future.
"""

from __future__ import annotations

import asyncio
import threading

from nnbench.backends.base import BackendConfig
from nnbench.backends.vllm_engine import baseline_kwargs, load_vllm, shutdown_engine
from nnbench.cells.job import CellJob, CellOutput
from nnbench.cells.registry import CellEntry

RUN_TIMEOUT_S = 600.0


class VLLMAsyncBackend:
    concurrency = "concurrent"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.model = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vllm-async-loop", daemon=True)

    def open(self) -> None:
        self._thread.start()
        self.model = load_vllm(self.config, "async")

    async def _run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        async def one(prompt):
            traced = entry.fn(self.model, prompt, job, {})  # builds and submits on exit
            finished = await traced.tracer.backend  # saves arrive on the finished output
            return traced.decode(finished.saves)

        return CellOutput(tuple(await asyncio.gather(*(one(p) for p in job.prompts))))

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
        shutdown_engine(self.model)
        self.model = None
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
