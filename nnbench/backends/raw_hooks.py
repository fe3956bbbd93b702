"""``raw_hooks``: the same cells with plain forward hooks on a bare transformers model.

The zero-framework reference: a raw-hooks cell must agree with its nnsight twin, and its timing is
the denominator of nnsight's overhead.
"""

from __future__ import annotations

import torch

from nnbench.backends.in_process import InProcessBackend, bare_transformers
from nnbench.cells.hooks import RawModel, greedy_generate
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput


class RawHooksBackend(InProcessBackend):
    model: RawModel

    def open(self) -> None:
        module, tokenizer = bare_transformers(self.config, self.model_info)
        self.model = RawModel(module, tokenizer, torch.device(self.config.device))

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        try:
            with torch.no_grad():
                return entry.fn(self.model, job)
        finally:
            self.model.module.zero_grad(set_to_none=True)

    def run_baseline(self, job: CellJob) -> None:
        batch = self.model.encode(job.texts)
        with torch.no_grad():
            if job.generates:
                greedy_generate(self.model, batch, job.params.new_tokens)
            else:
                self.model.module(**batch)
