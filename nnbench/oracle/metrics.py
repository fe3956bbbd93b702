"""Pure tensor metrics the oracle is built from."""

from __future__ import annotations

import torch


def top1_agreement(p: torch.Tensor, q: torch.Tensor, tie_margin: float = 0.0) -> float:
    """Share of rows of ``[rows, classes]`` distributions whose argmax agrees with reference ``q``'s.

    With ``tie_margin``, a row also agrees when ``q`` gives ``p``'s top token a probability within
    the margin of its own maximum (a near-tie).
    """
    top_p = p.argmax(-1, keepdim=True)
    agree = q.gather(-1, top_p).squeeze(-1) >= q.max(-1).values - tie_margin
    return agree.float().mean().item()


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
