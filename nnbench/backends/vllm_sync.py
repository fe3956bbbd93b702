"""``vllm_sync``: nnsight ``VLLM(mode="sync")`` in process; one trace at a time."""

from __future__ import annotations

import threading

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency, in_worker_thread
from nnbench.backends.vllm_engine import baseline_kwargs, load_vllm, run_sync, shutdown_engine
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput


class VLLMSyncBackend(BackendDefaults):
    concurrency: Concurrency = "serialised"
    plain_engine = True

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.model = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self.model = load_vllm(self.config, "sync")

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        return run_sync(self.model, job, entry)

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        return await in_worker_thread(self._lock, self.run, *prepared)

    def run_baseline(self, job: CellJob) -> None:
        """An empty nnsight trace per prompt (the overhead's denominator)."""
        for text in job.texts:
            with self.model.trace(text, **baseline_kwargs(job)):
                pass

    def run_plain(self, job: CellJob) -> None:
        """Plain vLLM ``generate`` with no nnsight request: the engine's own speed."""
        from vllm import SamplingParams

        self.model.vllm_entrypoint.generate(job.texts, SamplingParams(**baseline_kwargs(job)), use_tqdm=False)

    def close(self) -> None:
        shutdown_engine(self.model)
        self.model = None
