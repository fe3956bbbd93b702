"""Pure tensor metrics the oracle is built from."""

from __future__ import annotations

import torch


def top1_agreement(p: torch.Tensor, q: torch.Tensor) -> float:
    """Share of rows of ``[rows, classes]`` distributions whose argmax agrees."""
    return (p.argmax(-1) == q.argmax(-1)).float().mean().item()


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-row total-variation distance, ½·Σ|p − q|, in [0, 1]."""
    return 0.5 * (p.double() - q.double()).abs().sum(-1)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (‖a − b‖ when b is zero)."""
    diff = (a.double() - b.double()).norm().item()
    scale = b.double().norm().item()
    return diff / scale if scale > 0 else diff


def all_finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())
