"""``hf``: nnsight ``TransformersModel`` (text generation) over the local HF directory — the per-family reference."""

from __future__ import annotations

import torch

from nnbench.backends.base import torch_dtype
from nnbench.backends.in_process import InProcessBackend, offline_transformers
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput


class HFBackend(InProcessBackend):
    def open(self) -> None:
        offline_transformers()
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
