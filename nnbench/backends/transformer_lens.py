"""``transformer_lens``: a peer system, TransformerLens 4's ``TransformerBridge`` over the same
local HF directory the ``hf`` backend loads (no Hub: the directory's own config and tokenizer).

TransformerLens 4 removed ``HookedTransformer``; the bridge wraps the transformers model itself
and names its hook points the TransformerLens way (``blocks.6.hook_resid_post``). Its cells are in
each methodology's module, written with ``nnbench.cells.lens``.
"""

from __future__ import annotations

import os
import threading

import torch

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency, in_worker_thread, torch_dtype
from nnbench.cells.lens import greedy_logits, text_input
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput
from nnbench.provision import ModelInfo, ensure_model


class TransformerLensBackend(BackendDefaults):
    concurrency: Concurrency = "serialised"

    def __init__(self, config: BackendConfig, model_info: ModelInfo | None = None) -> None:
        if config.tensor_parallel_size != 1:
            raise ValueError(f"tensor_parallel_size: transformer_lens runs on one device, got {config.tensor_parallel_size}")
        self.config = config
        self.model_info = model_info or ensure_model(config.family, config.model)
        self.model = None
        self._lock = threading.Lock()

    def open(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        from transformer_lens.model_bridge import TransformerBridge  # ImportError: refused with the install command

        # boot_transformers forces eager attention (hook_pattern needs the weights), as hf does.
        self.model = TransformerBridge.boot_transformers(
            str(self.model_info.path), device=self.config.device, dtype=torch_dtype(self.config.dtype))
        self.model.eval()

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        try:
            with torch.no_grad():
                return entry.fn(self.model, job)
        finally:
            self.model.reset_hooks()  # a cell that raised mid-forward leaves none behind

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        return await in_worker_thread(self._lock, self.run, *prepared)

    def run_baseline(self, job: CellJob) -> None:
        with torch.no_grad():
            if job.generates:
                greedy_logits(self.model, job, job.params.new_tokens)
            else:
                self.model(list(job.texts), **text_input(job))

    def close(self) -> None:
        self.model = None
