"""``raw_hooks``: the same cells with plain forward hooks on a bare transformers model.

The zero-framework reference: a raw-hooks cell must agree with its nnsight twin, and its timing is
the denominator of nnsight's overhead.
"""

from __future__ import annotations

import os
import threading

import torch

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency, in_worker_thread, torch_dtype
from nnbench.cells.hooks import RawModel, greedy_generate
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput
from nnbench.provision import ModelInfo, ensure_model


class RawHooksBackend(BackendDefaults):
    concurrency: Concurrency = "serialised"

    def __init__(self, config: BackendConfig, model_info: ModelInfo | None = None) -> None:
        if config.tensor_parallel_size != 1:
            raise ValueError(f"tensor_parallel_size: raw_hooks runs on one device, got {config.tensor_parallel_size}")
        self.config = config
        self.model_info = model_info or ensure_model(config.family, config.model)
        self.model: RawModel | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress display is the one that counts
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = str(self.model_info.path)
        module = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype(self.config.dtype), attn_implementation="eager"
        ).to(self.config.device)
        module.eval()
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if tokenizer.pad_token is None:  # as nnsight does: pad with EOS, on the left
            tokenizer.pad_token = tokenizer.eos_token
        self.model = RawModel(module, tokenizer, torch.device(self.config.device))

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        try:
            with torch.no_grad():
                return entry.fn(self.model, job)
        finally:
            self.model.module.zero_grad(set_to_none=True)

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        return await in_worker_thread(self._lock, self.run, *prepared)

    def run_baseline(self, job: CellJob) -> None:
        batch = self.model.encode(job.texts)
        with torch.no_grad():
            if job.generates:
                greedy_generate(self.model, batch, job.params.new_tokens)
            else:
                self.model.module(**batch)

    def close(self) -> None:
        self.model = None
