"""What every backend holding one PyTorch model in this process shares (hf, raw_hooks,
transformer_lens, pyvene): one device, one forward pass at a time, the model loaded offline.

Each backend adds only what differs: how ``open`` loads its model and how ``run`` calls a cell.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency, torch_dtype
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput
from nnbench.provision import ModelInfo, ensure_model


class CutOffBeforeStart(RuntimeError):
    """A request cancelled (cut off at the drain deadline) while it waited for the model: never run."""


class InProcessBackend(BackendDefaults):
    """``submit`` serialises on a lock in a worker thread, so the event loop never blocks on a
    forward pass and two requests never share the model at once.

    A cancelled request cannot stop its thread: one already in its forward pass finishes, one still
    waiting for the lock is skipped, and ``quiesce`` waits for the former. Without it, on a first,
    overloaded run, cut-off requests kept running while the next step built its references on
    another thread with the same model, and nnsight failed them ("parent cannot be on a different
    thread"): correct responses recorded NO_REFERENCE."""

    concurrency: Concurrency = "serialised"

    def __init__(self, config: BackendConfig, model_info: ModelInfo | None = None) -> None:
        if config.tensor_parallel_size != 1:
            raise ValueError(f"tensor_parallel_size: {config.name} runs on one device, got {config.tensor_parallel_size}")
        self.config = config
        self.model_info = model_info or ensure_model(config.family, config.model)
        self.model: Any = None
        self._lock = threading.Lock()
        self._running = 0
        self._settled = threading.Condition()

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        cancelled = threading.Event()

        def locked() -> CellOutput:
            with self._settled:
                self._running += 1
            try:
                with self._lock:
                    if cancelled.is_set():
                        raise CutOffBeforeStart("cut off before it reached the model")
                    return self.run(*prepared)
            finally:
                with self._settled:
                    self._running -= 1
                    self._settled.notify_all()

        try:
            return await asyncio.to_thread(locked)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def quiesce(self, timeout_s: float) -> int:
        def wait() -> int:
            deadline = time.monotonic() + timeout_s
            with self._settled:
                while self._running and (left := deadline - time.monotonic()) > 0:
                    self._settled.wait(left)
                return self._running

        return await asyncio.to_thread(wait)

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
