"""``pyvene``: a peer system, pyvene's ``IntervenableModel`` over the bare transformers model the
``raw_hooks`` backend loads (the same local HF directory, eager attention). Its cells are in each
methodology's module, written with ``nnbench.cells.vene``.
"""

from __future__ import annotations

import torch

from nnbench.backends.in_process import InProcessBackend, bare_transformers
from nnbench.cells.registry import CellEntry
from nnbench.cells.vene import VeneModel
from nnbench.jobs import CellJob, CellOutput


class PyveneBackend(InProcessBackend):
    model: VeneModel

    def open(self) -> None:
        import pyvene  # ImportError: refused with the install command
        from pyvene.models.intervenable_modelcard import type_to_module_mapping

        module, tokenizer = bare_transformers(self.config, self.model_info)
        if type(module) not in type_to_module_mapping:  # every cell of this model would fail inside pyvene
            raise RuntimeError(f"pyvene 0.1.8 cannot intervene on {type(module).__name__}: its model card "
                               f"(type_to_module_mapping) has no entry for it (Gemma-3's is missing; Gemma and Gemma-2 are there)")
        self.model = VeneModel(module, tokenizer, torch.device(self.config.device), pyvene)

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        with torch.no_grad():
            return entry.fn(self.model, job)

    def run_baseline(self, job: CellJob) -> None:
        from nnbench.cells.control import control_pyvene  # the same unintervened run as the control

        with torch.no_grad():
            control_pyvene(self.model, job)
