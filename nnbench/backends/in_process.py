"""What every backend holding one PyTorch model in this process shares (hf, raw_hooks,
transformer_lens, pyvene): one device, one forward pass at a time, the model loaded offline.

Each backend adds only what differs: how ``open`` loads its model and how ``run`` calls a cell.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency, in_worker_thread, torch_dtype
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput
from nnbench.provision import ModelInfo, ensure_model


class InProcessBackend(BackendDefaults):
    """``submit`` serialises on a lock in a worker thread, so the event loop never blocks on a
    forward pass and two requests never share the model at once."""

    concurrency: Concurrency = "serialised"

    def __init__(self, config: BackendConfig, model_info: ModelInfo | None = None) -> None:
        if config.tensor_parallel_size != 1:
            raise ValueError(f"tensor_parallel_size: {config.name} runs on one device, got {config.tensor_parallel_size}")
        self.config = config
        self.model_info = model_info or ensure_model(config.family, config.model)
        self.model: Any = None
        self._lock = threading.Lock()

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        return await in_worker_thread(self._lock, self.run, *prepared)

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        raise NotImplementedError

    def close(self) -> None:
        self.model = None


def offline_transformers() -> None:
    """No Hub (a local directory is all there is) and no transformers progress bars: our own
    progress display is the one that counts."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def bare_transformers(config: BackendConfig, model_info: ModelInfo) -> tuple[Any, Any]:
    """The local directory as a bare transformers causal LM (eager attention, eval mode, on the
    config's device and dtype) and its tokenizer, padding on the left with EOS as nnsight does."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline_transformers()
    path = str(model_info.path)
    module = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype(config.dtype), attn_implementation="eager").to(config.device)
    module.eval()
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return module, tokenizer
