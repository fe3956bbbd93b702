"""Compare a cell's outputs with a reference, prompt by prompt."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from nnbench.cells.job import CellOutput, PromptOutput
from nnbench.oracle.metrics import all_finite, relative_error, top1_agreement, total_variation
from nnbench.oracle.thresholds import MATCHED, Tolerance


@dataclass(frozen=True, slots=True)
class Comparison:
    """Worst-case figures over every prompt (and every row) of one cell run."""

    top1: float
    """lowest per-prompt top-1 agreement"""
    top1_near: float
    """the same, counting near-ties (``MATCHED.tie_margin``) as agreement"""
    mean_tv: float
    max_tv: float
    max_rel_err: float
    finite: bool
    problem: str | None = None
    """a structural mismatch (missing key, wrong shape, wrong prompt count), if any"""
    diverged_at_step: int | None = None
    """generation: the first decoding step whose token differs; later steps are not compared"""

    def within(self, tol: Tolerance) -> bool:
        return (
            self.problem is None
            and self.finite
            and (self.top1_near if tol.tie_margin else self.top1) >= tol.min_top1
            and self.max_tv <= tol.max_tv
            and self.max_rel_err <= tol.max_rel_err
        )

    def as_dict(self) -> dict:
        return asdict(self)


def _structural_problem(out: PromptOutput, ref: PromptOutput) -> str | None:
    for kind, got, want in (("dist", out.dists, ref.dists), ("value", out.values, ref.values)):
        if set(got) != set(want):
            return f"{kind} keys {sorted(got)} != reference {sorted(want)}"
        for name in want:
            if got[name].shape != want[name].shape:
                return f"{kind} {name!r} shape {tuple(got[name].shape)} != reference {tuple(want[name].shape)}"
    return None


def _aligned(out: PromptOutput, ref: PromptOutput, name: str) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """Rows of dist ``name`` up to and including the first step whose greedy token differs."""
    got, want = out.dists[name], ref.dists[name]
    steps = ref.steps
    if steps <= 1 or len(want) % steps:
        return got, want, None
    per_step = len(want) // steps
    tokens_got = got[per_step - 1 :: per_step].argmax(-1)
    tokens_want = want[per_step - 1 :: per_step].argmax(-1)
    differs = (tokens_got != tokens_want).nonzero()
    if len(differs) == 0:
        return got, want, None
    keep = (int(differs[0]) + 1) * per_step
    return got[:keep], want[:keep], int(differs[0])


def compare(output: CellOutput, reference: CellOutput) -> Comparison:
    """Top-1 agreement and TV on every distribution, relative error on every value, per prompt."""
    if len(output.per_prompt) != len(reference.per_prompt):
        problem = f"{len(output.per_prompt)} prompts != {len(reference.per_prompt)}"
        return Comparison(0.0, 0.0, 1.0, 1.0, float("inf"), True, problem)
    top1, top1_near, tvs, rel_errs, finite, diverged = [], [], [], [0.0], True, []
    for out, ref in zip(output.per_prompt, reference.per_prompt):
        finite = finite and all(all_finite(t) for t in (*out.dists.values(), *out.values.values()))
        problem = _structural_problem(out, ref)
        if problem is not None:
            return Comparison(0.0, 0.0, 1.0, 1.0, float("inf"), finite, problem)
        exact = near = rows = 0.0
        for name in ref.dists:
            got, want, step = _aligned(out, ref, name)
            if step is not None:
                diverged.append(step)
            exact += top1_agreement(got, want) * len(want)
            near += top1_agreement(got, want, MATCHED.tie_margin) * len(want)
            rows += len(want)
            tvs.append(total_variation(got, want))
        top1.append(exact / rows if rows else 1.0)
        top1_near.append(near / rows if rows else 1.0)
        rel_errs.extend(relative_error(out.values[k], ref.values[k]) for k in ref.values)
    all_tv = [float(t) for tv in tvs for t in tv.flatten()] or [0.0]
    return Comparison(
        top1=min(top1),
        top1_near=min(top1_near),
        mean_tv=sum(all_tv) / len(all_tv),
        max_tv=max(all_tv),
        max_rel_err=max(rel_errs),
        finite=finite,
        diverged_at_step=min(diverged) if diverged else None,
    )
