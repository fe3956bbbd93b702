"""The TransformerLens side: a ``TransformerBridge`` (TransformerLens 4) and its named hook points.

TransformerLens cells are written the way its users write them: ``run_with_hooks`` with
``(hook name, fn)`` pairs, ``run_with_cache`` to read. Every call hands the bridge texts with
``text_input(job)``, so it sees the token ids nnsight and the raw hooks give the model (the bridge
builds the attention mask, and on rotary models the positions, from its own left padding). This module
imports no TransformerLens: the bridge arrives as the cell's ``model``.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from nnbench.cells.common import family_tokenizer


def text_input(job) -> dict[str, Any]:
    """How a cell hands ``job``'s texts to the bridge so it sees the HF tokenizer's own ids: left
    padding, and a BOS only where that tokenizer adds one itself (Gemma-3 does; SmolLM2, Qwen2.5 and
    GPT-2 do not). The bridge's defaults differ both ways: right padding, which puts padding under
    ``logits[:, -1]`` on the shorter prompts, and a BOS it prepends to every model (TV 0.32-1.00
    from HF on SmolLM2's four built-in facts under the same steering edit, measured 2026-12-03);
    ``prepend_bos=False`` alone strips Gemma's own BOS."""
    return {"padding_side": "left", "prepend_bos": _tokenizer_adds_bos(job.family, job.model)}


@functools.cache
def _tokenizer_adds_bos(family: str, model: str) -> bool:
    """Once per model, not on every trace: the cells' timed path stays the bridge's alone."""
    tokenizer = family_tokenizer(family, model)
    return tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]


def resid_post(layer: int) -> str:
    """The residual stream after block ``layer``: what HF's decoder layer returns."""
    return f"blocks.{layer}.hook_resid_post"


def mlp_out(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def attention_pattern(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def logits_with_hooks(model, job, texts: tuple[str, ...], *hooks: tuple[str, Any]) -> torch.Tensor:
    """``[B, S, V]`` logits of one forward pass over ``texts`` (``job``'s or its corrupt ones) with
    ``hooks`` installed (removed afterwards)."""
    return model.run_with_hooks(list(texts), fwd_hooks=list(hooks), **text_input(job))


def greedy_logits(model, job, steps: int) -> torch.Tensor:
    """``[B, steps, V]`` logits of exactly ``steps`` greedy tokens, through the bridge's ``generate``.

    Without its KV cache: with ``use_past_kv_cache=True`` (the default) TransformerLens 4.3.0 gave
    wrong logits from the second step on (SmolLM2, one prompt: top-1 29, 29 where HF and the same
    bridge without the cache give 30, 198; TV 0.78 and 0.93; measured 2026-12-03, docs/findings.md).
    """
    out = model.generate(list(job.texts), max_new_tokens=steps, stop_at_eos=False, do_sample=False, output_logits=True,
                         return_type="tokens", verbose=False, use_past_kv_cache=False, **text_input(job))
    return torch.stack(out.logits, dim=1)
