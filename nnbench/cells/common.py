"""Small helpers shared by cell bodies: the seeded intervention values and prompt bookkeeping."""

from __future__ import annotations

import functools

import torch

from nnbench.jobs import CellParams
from nnbench.prompts import Prompt
from nnbench.vocab import Family


def steering_vector(hidden_size: int, params: CellParams, family: Family, model: str = "") -> torch.Tensor:
    """A seeded random direction of norm ``params.steering_norm(family, model)``, float32 on CPU.

    Made on the CPU from a private generator so every backend, device and process adds the same
    vector for the same seed.
    """
    generator = torch.Generator().manual_seed(params.seed)
    direction = torch.randn(hidden_size, generator=generator)
    return direction / direction.norm() * params.steering_norm(family, model)


def hidden_size(config) -> int:
    return int(config.hidden_size)


def first_token_id(tokenizer, text: str) -> int:
    return tokenizer(text, add_special_tokens=False).input_ids[0]


def answer_ids(tokenizer, prompts: tuple[Prompt, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of each pair's clean answer and its rival (the corrupt prompt's answer)."""
    answers = [first_token_id(tokenizer, p.answer) for p in prompts]
    wrongs = [first_token_id(tokenizer, p.wrong) for p in prompts]
    return torch.tensor(answers), torch.tensor(wrongs)


def patch_positions(tokenizer, prompts: tuple[Prompt, ...]) -> torch.Tensor:
    """For each clean/corrupt pair, the one token position where they differ, counted from the end.

    Counting from the end keeps the index right under left padding (HF) and without padding (vLLM).
    """
    positions = []
    for p in prompts:
        clean = tokenizer(p.text).input_ids
        corrupt = tokenizer(p.corrupt).input_ids
        if len(clean) != len(corrupt):
            raise ValueError(f"clean/corrupt pair tokenizes to different lengths: {p.text!r} / {p.corrupt!r}")
        differing = [i for i, (a, b) in enumerate(zip(clean, corrupt)) if a != b]
        if len(differing) != 1:
            raise ValueError(f"clean/corrupt pair must differ in exactly one token, differs at {differing}: {p.text!r}")
        positions.append(differing[0] - len(clean))
    return torch.tensor(positions)


def real_lengths(tokenizer, texts: list[str]) -> list[int]:
    """Token count of each prompt without padding."""
    return [len(ids) for ids in tokenizer(texts).input_ids]


@functools.cache
def family_tokenizer(family, model: str = ""):
    """The model's HF tokenizer (vLLM cells count token positions with the same one as HF);
    ``model``: as ``CellJob.model`` (empty: the family's default)."""
    from transformers import AutoTokenizer

    from nnbench.provision import ensure_model

    return AutoTokenizer.from_pretrained(ensure_model(family, model).path)


@functools.cache
def family_config(family, model: str = ""):
    """The model's HF config, read once (vLLM cells build traces on the hot path, and their
    client tree has no weights to read sizes from)."""
    from transformers import AutoConfig

    from nnbench.provision import ensure_model

    return AutoConfig.from_pretrained(ensure_model(family, model).path)


def family_hidden_size(family, model: str = "") -> int:
    return int(family_config(family, model).hidden_size)


def family_attention_shape(family, model: str = "") -> tuple[int, int, int]:
    """(query heads, key/value heads, head dim) from the model's HF config."""
    config = family_config(family, model)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads  # Gemma-3: 256, not 640 / 4
    return heads, kv_heads, int(head_dim)
