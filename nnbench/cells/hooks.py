"""The zero-framework side: a bare ``transformers`` model plus ``register_forward_hook``.

Raw-hooks cells are the twins of the nnsight HF cells. They must agree with them (that catches
bugs in our own cell code), and their timing is the baseline for nnsight's overhead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class RawModel:
    """A loaded HF causal LM with its tokenizer, tokenizing the way nnsight does (left padding)."""

    module: torch.nn.Module
    tokenizer: Any
    device: torch.device

    @property
    def config(self) -> Any:
        return self.module.config

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(texts, return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(self, texts: list[str]) -> Any:
        """One forward pass; left-padded rows keep their true positions (as nnsight supplies them)."""
        batch = self.encode(texts)
        mask = batch["attention_mask"].long()
        batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        return self.module(**batch)


Hook = Callable[[torch.nn.Module, tuple, Any], Any]


@contextmanager
def forward_hooks(*pairs: tuple[torch.nn.Module, Hook]) -> Iterator[None]:
    """Install ``(module, hook)`` forward hooks for the block; always remove them afterwards."""
    handles = [module.register_forward_hook(hook) for module, hook in pairs]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def greedy_generate(model: RawModel, batch: dict[str, torch.Tensor], new_tokens: int) -> torch.Tensor:
    """Greedy-decode exactly ``new_tokens`` tokens; returns the per-step logits ``[B, steps, V]``."""
    out = model.module.generate(
        **batch,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=model.tokenizer.pad_token_id,
    )
    return torch.stack(out.logits, dim=1)
