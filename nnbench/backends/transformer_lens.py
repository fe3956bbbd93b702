"""``transformer_lens``: a peer system, TransformerLens 4's ``TransformerBridge`` over the same
local HF directory the ``hf`` backend loads (no Hub: the directory's own config and tokenizer).

TransformerLens 4 removed ``HookedTransformer``; the bridge wraps the transformers model itself
and names its hook points the TransformerLens way (``blocks.6.hook_resid_post``). Its cells are in
each methodology's module, written with ``nnbench.cells.lens``.
"""

from __future__ import annotations

import torch

from nnbench.backends.base import torch_dtype
from nnbench.backends.in_process import InProcessBackend, offline_transformers
from nnbench.cells.registry import CellEntry
from nnbench.jobs import CellJob, CellOutput


class TransformerLensBackend(InProcessBackend):
    def open(self) -> None:
        offline_transformers()
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

    def run_baseline(self, job: CellJob) -> None:
        from nnbench.cells.control import control_tl  # the same unintervened run as the control

        with torch.no_grad():
            control_tl(self.model, job)
