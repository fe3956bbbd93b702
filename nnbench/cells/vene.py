"""The pyvene side: an ``IntervenableModel`` built per cell over the bare transformers model.

pyvene cells are written the way its users write them: an ``IntervenableConfig`` naming the layer,
the component (``block_output``, ``mlp_output``) and the intervention type, and the model called on
a tokenized batch (``IntervenableModel(config, model)(base, sources, unit_locations=...)``). The
batch is the tokenizer's left-padded output and nothing more, as pyvene's own examples pass it: no
position ids, so a padded row's positions start at its padding (harmless with rotary positions,
wrong with GPT-2's learned ones; the oracle says which). This module imports no pyvene: the backend
hands it in as ``model.pv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class VeneModel:
    """A loaded HF causal LM, its tokenizer (left padding) and the imported pyvene module."""

    module: torch.nn.Module
    tokenizer: Any
    device: torch.device
    pv: Any

    def batch(self, texts: tuple[str, ...]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def intervenable(self, layer: int, component: str, intervention_type: Any) -> Any:
        config = self.pv.IntervenableConfig([{"layer": layer, "component": component, "intervention_type": intervention_type}])
        return self.pv.IntervenableModel(config, self.module)
