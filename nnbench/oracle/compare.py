"""Compare a cell's outputs with a reference, prompt by prompt.

Every aggregate propagates NaN: ``max([0.1, nan])`` in Python is 0.1 when the NaN is not first,
which once read an HF control's NaN scores as "relative error 0" and called a cell SUPPORTED.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from nnbench.jobs import CellOutput, PromptOutput
from nnbench.oracle.metrics import all_finite, relative_error, top1_agreement, total_variation
from nnbench.oracle.thresholds import TIE_MARGIN, Tolerance


def worst(values: Iterable[float], empty: float = 0.0) -> float:
    """The largest value, NaN if any value is NaN."""
    values = list(values)
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values, default=empty)


def least(values: Iterable[float], empty: float = 1.0) -> float:
    """The smallest value, NaN if any value is NaN."""
    values = list(values)
    if any(math.isnan(v) for v in values):
        return math.nan
    return min(values, default=empty)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Worst-case figures over every prompt (and every row) of one cell run."""

    top1: float
    """lowest per-prompt top-1 agreement"""
    top1_near: float
    """the same, counting near-ties (``TIE_MARGIN``) as agreement"""
    mean_tv: float
    max_tv: float
    max_rel_err: float
    finite: bool
    problem: str | None = None
    """a structural mismatch (missing key, wrong shape, wrong prompt count), if any"""
    diverged_at_step: int | None = None
    """generation: the first decoding step whose token differs; later steps are not compared"""
    prompt_tv: tuple[float, ...] = ()
    """each prompt's largest row TV, in prompt order"""

    def within(self, tol: Tolerance) -> bool:
        # every bound is a plain >= or <= test: a comparison with NaN is False, so NaN never passes
        return (
            self.problem is None
            and self.finite
            and (self.top1_near if tol.tie_margin else self.top1) >= tol.min_top1
            and self.max_tv <= tol.max_tv
            and self.max_rel_err <= tol.max_rel_err
        )

    def as_dict(self) -> dict:
        return asdict(self)


def finite_output(output: CellOutput) -> bool:
    return all(all_finite(t) for p in output.per_prompt for t in (*p.dists.values(), *p.values.values()))


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


def _broken(problem: str, finite: bool) -> Comparison:
    return Comparison(0.0, 0.0, 1.0, 1.0, math.inf, finite, problem)


def compare(output: CellOutput, reference: CellOutput) -> Comparison:
    """Top-1 agreement and TV on every distribution, relative error on every value, per prompt."""
    if len(output.per_prompt) != len(reference.per_prompt):
        return _broken(f"{len(output.per_prompt)} prompts != {len(reference.per_prompt)}", True)
    top1, top1_near, prompt_tv, rows_tv, rel_errs, diverged = [], [], [], [], [], []
    finite = finite_output(output)
    for out, ref in zip(output.per_prompt, reference.per_prompt):
        problem = _structural_problem(out, ref)
        if problem is not None:
            return _broken(problem, finite)
        exact = near = rows = 0.0
        tvs = []
        for name in ref.dists:
            got, want, step = _aligned(out, ref, name)
            if step is not None:
                diverged.append(step)
            exact += top1_agreement(got, want) * len(want)
            near += top1_agreement(got, want, TIE_MARGIN) * len(want)
            rows += len(want)
            tvs.extend(float(t) for t in total_variation(got, want).flatten())
        top1.append(exact / rows if rows else 1.0)
        top1_near.append(near / rows if rows else 1.0)
        prompt_tv.append(worst(tvs))
        rows_tv.extend(tvs)
        rel_errs.extend(relative_error(out.values[k], ref.values[k]) for k in ref.values)
    return Comparison(
        top1=least(top1),
        top1_near=least(top1_near),
        mean_tv=sum(rows_tv) / len(rows_tv) if rows_tv else 0.0,  # a NaN row makes the sum NaN
        max_tv=worst(rows_tv),
        max_rel_err=worst(rel_errs),
        finite=finite,
        diverged_at_step=min(diverged) if diverged else None,
        prompt_tv=tuple(prompt_tv),
    )
