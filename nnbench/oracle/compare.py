"""Compare a cell's outputs with a reference, prompt by prompt."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nnbench.cells.job import CellOutput, PromptOutput
from nnbench.oracle.metrics import all_finite, relative_error, top1_agreement, total_variation
from nnbench.oracle.thresholds import Tolerance


@dataclass(frozen=True, slots=True)
class Comparison:
    """Worst-case figures over every prompt (and every row) of one cell run."""

    top1: float
    """lowest per-prompt top-1 agreement"""
    mean_tv: float
    max_tv: float
    max_rel_err: float
    finite: bool
    problem: str | None = None
    """a structural mismatch (missing key, wrong shape, wrong prompt count), if any"""

    def within(self, tol: Tolerance) -> bool:
        return (
            self.problem is None
            and self.finite
            and self.top1 >= tol.min_top1
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


def compare(output: CellOutput, reference: CellOutput) -> Comparison:
    """Top-1 agreement and TV on every distribution, relative error on every value, per prompt."""
    if len(output.per_prompt) != len(reference.per_prompt):
        return Comparison(0.0, 1.0, 1.0, float("inf"), True, f"{len(output.per_prompt)} prompts != {len(reference.per_prompt)}")
    top1, tvs, rel_errs, finite = [], [], [0.0], True
    for out, ref in zip(output.per_prompt, reference.per_prompt):
        finite = finite and all(all_finite(t) for t in (*out.dists.values(), *out.values.values()))
        problem = _structural_problem(out, ref)
        if problem is not None:
            return Comparison(0.0, 1.0, 1.0, float("inf"), finite, problem)
        rows_agree = [top1_agreement(out.dists[k], ref.dists[k]) * len(ref.dists[k]) for k in ref.dists]
        rows = sum(len(ref.dists[k]) for k in ref.dists)
        top1.append(sum(rows_agree) / rows if rows else 1.0)
        tvs.extend(total_variation(out.dists[k], ref.dists[k]) for k in ref.dists)
        rel_errs.extend(relative_error(out.values[k], ref.values[k]) for k in ref.values)
    all_tv = [float(t) for tv in tvs for t in tv.flatten()] or [0.0]
    return Comparison(
        top1=min(top1),
        mean_tv=sum(all_tv) / len(all_tv),
        max_tv=max(all_tv),
        max_rel_err=max(rel_errs),
        finite=finite,
    )
