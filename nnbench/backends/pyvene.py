"""``pyvene``: a peer system, pyvene's ``IntervenableModel`` over the bare transformers model the
``raw_hooks`` backend loads (the same local HF directory, eager attention). Its cells are in each
methodology's module, written with ``nnbench.cells.vene``.
"""

from __future__ import annotations

import os
import threading

import torch

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency, in_worker_thread, torch_dtype
from nnbench.cells.registry import CellEntry
from nnbench.cells.vene import VeneModel
from nnbench.jobs import CellJob, CellOutput
from nnbench.provision import ModelInfo, ensure_model


class PyveneBackend(BackendDefaults):
    concurrency: Concurrency = "serialised"

    def __init__(self, config: BackendConfig, model_info: ModelInfo | None = None) -> None:
        if config.tensor_parallel_size != 1:
            raise ValueError(f"tensor_parallel_size: pyvene runs on one device, got {config.tensor_parallel_size}")
        self.config = config
        self.model_info = model_info or ensure_model(config.family, config.model)
        self.model: VeneModel | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import pyvene  # ImportError: refused with the install command
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = str(self.model_info.path)
        module = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype(self.config.dtype), attn_implementation="eager").to(self.config.device)
        module.eval()
        from pyvene.models.intervenable_modelcard import type_to_module_mapping

        if type(module) not in type_to_module_mapping:  # every cell of this model would fail inside pyvene
            raise RuntimeError(f"pyvene 0.1.8 cannot intervene on {type(module).__name__}: its model card "
                               f"(type_to_module_mapping) has no entry for it (Gemma-3's is missing; Gemma and Gemma-2 are there)")
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = VeneModel(module, tokenizer, torch.device(self.config.device), pyvene)

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        with torch.no_grad():
            return entry.fn(self.model, job)

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        return await in_worker_thread(self._lock, self.run, *prepared)

    def run_baseline(self, job: CellJob) -> None:
        from nnbench.cells.control import control_pyvene  # the same unintervened run as the control

        with torch.no_grad():
            control_pyvene(self.model, job)

    def close(self) -> None:
        self.model = None
