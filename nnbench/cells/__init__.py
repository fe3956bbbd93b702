"""Cells: one module per methodology, imported by name so every cell registers on import."""

from nnbench.cells import (  # noqa: F401
    ablation,
    attention,
    attribution,
    generation_steering,
    logit_lens,
    patching,
    steering,
)
from nnbench.cells.registry import CELLS, CellKey, CellRegistry, cell
from nnbench.jobs import CellJob, CellOutput, CellParams, PromptOutput

__all__ = ["CELLS", "CellJob", "CellKey", "CellOutput", "CellParams", "CellRegistry", "PromptOutput", "cell"]
