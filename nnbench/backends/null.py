"""``null``: waits a configured time and answers; measures the load generator itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput


class NullBackend(BackendDefaults):
    concurrency: Concurrency = "concurrent"

    def __init__(self, config: BackendConfig, latency_s: float = 0.0,
                 answer: Callable[[CellJob], CellOutput] | None = None) -> None:
        """
        Args:
            latency_s: how long every request takes.
            answer: the output to return for a job (e.g. its cached reference); empty by default.
        """
        self.config = config
        self.latency_s = latency_s
        self.answer = answer or (lambda job: CellOutput(()))

    def open(self) -> None:
        pass

    def run(self, job: CellJob, entry: CellEntry | None) -> CellOutput:
        return self.answer(job)

    def prepare(self, job: CellJob, entry: CellEntry | None) -> CellOutput:
        return self.answer(job)

    async def submit(self, prepared: CellOutput) -> CellOutput:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return prepared

    def run_baseline(self, job: CellJob) -> None:
        pass

    def close(self) -> None:
        pass
