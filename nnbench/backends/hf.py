"""``hf``: nnsight ``TransformersModel`` (text generation) over the local HF directory — the per-family reference."""

from __future__ import annotations

import os
import threading

import torch

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency, in_worker_thread, torch_dtype
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput
from nnbench.provision import ModelInfo, ensure_model


class HFBackend(BackendDefaults):
    concurrency: Concurrency = "serialised"

    def __init__(self, config: BackendConfig, model_info: ModelInfo | None = None) -> None:
        if config.tensor_parallel_size != 1:
            raise ValueError(f"tensor_parallel_size: the hf backend runs on one device, got {config.tensor_parallel_size}")
        self.config = config
        self.model_info = model_info or ensure_model(config.family, config.model)
        self.model = None
        self._lock = threading.Lock()

    def open(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress display is the one that counts
        from nnsight import TransformersModel

        self.model = TransformersModel(
            str(self.model_info.path),
            task="text-generation",  # given, so nnsight never asks the Hub which task this is
            dispatch=True,
            device_map=self.config.device,
            dtype=torch_dtype(self.config.dtype),
            attn_implementation="eager",  # attention-pattern cells need the weights
        )

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        try:
            with torch.no_grad():  # cells that need gradients open enable_grad themselves
                return entry.fn(self.model, job)
        finally:
            self.model._module.zero_grad(set_to_none=True)

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        return await in_worker_thread(self._lock, self.run, *prepared)

    def run_baseline(self, job: CellJob) -> None:
        texts = job.texts
        steps = job.params.new_tokens
        with torch.no_grad():
            if job.generates:
                with self.model.generate(texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False):
                    pass
            else:
                with self.model.trace(texts):
                    self.model.lm_head.output.save()

    def close(self) -> None:
        self.model = None
