"""Where things live in each family's HF module tree, as data.

The same dotted paths resolve on an nnsight ``LanguageModel`` (its envoys mirror the module tree)
and on the bare ``transformers`` module that the raw-hooks backend drives, so one cell body reads
``mods.layers[i]`` for both families instead of being copied per family.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any

from nnbench.vocab import Family


@dataclass(frozen=True, slots=True)
class Layout:
    """Dotted module paths of one family in the HF implementation."""

    layers: str
    final_norm: str
    unembed: str
    attention: str
    """attribute of a decoder layer holding self-attention"""
    mlp: str
    """attribute of a decoder layer holding the MLP"""


HF_LAYOUTS: dict[Family, Layout] = {
    Family.GPT2: Layout("transformer.h", "transformer.ln_f", "lm_head", "attn", "mlp"),
    Family.LLAMA: Layout("model.layers", "model.norm", "lm_head", "self_attn", "mlp"),
    # transformers 5: Qwen2's and Gemma-3's trees have Llama's paths (Gemma-3 adds sandwich norms
    # inside each layer and scales its embeddings in embed_tokens; the layer's output is still the
    # residual stream, a plain [batch, seq, hidden] tensor as on Llama)
    Family.QWEN2: Layout("model.layers", "model.norm", "lm_head", "self_attn", "mlp"),
    Family.GEMMA3: Layout("model.layers", "model.norm", "lm_head", "self_attn", "mlp"),
}


ARCHITECTURES: dict[str, Family] = {
    "GPT2LMHeadModel": Family.GPT2,
    "LlamaForCausalLM": Family.LLAMA,
    "Qwen2ForCausalLM": Family.QWEN2,
    "Gemma3ForCausalLM": Family.GEMMA3,
}
"""``config.architectures[0]`` of a model directory → the family whose cells run on it"""

RESIDUAL_PAIR: tuple[Family, ...] = (Family.LLAMA, Family.QWEN2, Family.GEMMA3)
"""Families whose vLLM decoder layer returns ``(mlp_out, residual)`` flat over tokens, the next
layer summing the two (vLLM 0.26 ``models/llama.py``, ``qwen2.py``, ``gemma3.py``; Gemma-3's
mlp_out is already through its post-feed-forward norm): one vLLM cell body serves them all.
GPT-2's layer returns the residual stream itself."""


def resolve(root: Any, dotted: str) -> Any:
    """``resolve(model, "model.norm")`` is ``model.model.norm``."""
    return reduce(getattr, dotted.split("."), root)


@dataclass(frozen=True, slots=True)
class Modules:
    """The modules a cell touches, bound to one model root (an nnsight model or a torch module).

    Examples:
        >>> mods = Modules.of(model, Family.LLAMA)
        >>> mods.layers[6], mods.final_norm, mods.unembed, mods.attention(6)
    """

    root: Any
    layout: Layout

    @classmethod
    def of(cls, root: Any, family: Family) -> Modules:
        return cls(root, HF_LAYOUTS[Family(family)])

    @property
    def layers(self) -> Any:
        return resolve(self.root, self.layout.layers)

    @property
    def final_norm(self) -> Any:
        return resolve(self.root, self.layout.final_norm)

    @property
    def unembed(self) -> Any:
        return resolve(self.root, self.layout.unembed)

    def attention(self, layer: int) -> Any:
        return getattr(self.layers[layer], self.layout.attention)

    def mlp(self, layer: int) -> Any:
        return getattr(self.layers[layer], self.layout.mlp)
