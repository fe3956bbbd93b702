"""Did the intervention happen, in the right direction and size?

A write cell's effect is its output minus its own backend's unintervened run of the same prompts
(same precision, same process); the reference effect is HF intervened minus HF unintervened at
fp32. Both are read on the first decoding step's rows (the prompt's forward pass, where the two
runs share a prefix; later steps are judged by output comparison). Per prompt:

* ``size``: TV(reference, reference control), how far the HF intervention moves this prompt;
* ``cosine``: between the two probability shifts (a sign flip gives < 0, a wrong layer or a lost
  edit far less than 1);
* ``ratio``: TV(cell, control) / size (a lost edit gives ~0, a doubled one > 1).

Rounding moves the cell and its control alike before the edit, so the shift survives bf16 where
the output alone (TV up to 0.14 from fp32) does not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from nnbench.jobs import CellOutput, PromptOutput
from nnbench.oracle.metrics import total_variation
from nnbench.oracle.thresholds import EFFECT, STRICT, EffectTolerance


@dataclass(frozen=True, slots=True)
class PromptEffect:
    size: float
    """TV(reference, reference control) on the first step"""
    margin: float
    """size / the tolerance in force (STRICT at fp32, the floor's tolerance below): how many
    tolerances a lost edit on this prompt would land from the reference"""
    certifies: bool
    """size >= EFFECT.min_margin x STRICT: the prompt can tell a lost edit from a correct one"""
    resolved: bool
    """certifies, and size >= EFFECT.min_resolution x the tolerance in force: direction and size
    are checked"""
    cosine: float
    ratio: float

    def holds(self, tol: EffectTolerance = EFFECT) -> bool:
        return self.cosine >= tol.min_cosine and tol.min_ratio <= self.ratio <= tol.max_ratio


@dataclass(frozen=True, slots=True)
class Effect:
    prompts: tuple[PromptEffect, ...]

    @property
    def certifying(self) -> int:
        return sum(p.certifies for p in self.prompts)

    @property
    def failing(self) -> list[int]:
        """prompts (indices) whose effect was checked and is wrong"""
        return [i for i, p in enumerate(self.prompts) if p.resolved and not p.holds()]

    def as_dict(self) -> dict:
        return {"prompts": [asdict(p) for p in self.prompts], "certifying": self.certifying,
                "resolved": sum(p.resolved for p in self.prompts),
                "min_margin": min((p.margin for p in self.prompts), default=math.nan)}


def _first_step(prompt: PromptOutput, name: str) -> torch.Tensor:
    rows = prompt.dists[name]
    return rows[: len(rows) // prompt.steps] if prompt.steps > 1 and len(rows) % prompt.steps == 0 else rows


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    scale = a.norm() * b.norm()
    return float(a @ b / scale) if scale > 0 else 0.0


def measure(output: CellOutput, control: CellOutput, reference: CellOutput, reference_control: CellOutput,
            dist: str, tolerance: float) -> Effect:
    """Per prompt, the cell's effect against the reference's. ``dist`` names the cell's
    distribution that carries the effect (controls always carry ``next_token``)."""
    prompts = []
    for out, ctl, ref, ref_ctl in zip(output.per_prompt, control.per_prompt, reference.per_prompt,
                                      reference_control.per_prompt):
        o, c = _first_step(out, dist), _first_step(ctl, "next_token")
        r, r0 = _first_step(ref, dist), _first_step(ref_ctl, "next_token")
        size = float(total_variation(r, r0).max())
        moved = float(total_variation(o, c).max())
        prompts.append(PromptEffect(
            size=size,
            margin=size / tolerance,
            certifies=size >= EFFECT.min_margin * STRICT.max_tv,
            resolved=size >= EFFECT.min_margin * STRICT.max_tv and size >= EFFECT.min_resolution * tolerance,
            cosine=_cosine(o.double() - c.double(), r.double() - r0.double()),
            ratio=moved / size if size > 0 else math.inf,
        ))
    return Effect(tuple(prompts))
