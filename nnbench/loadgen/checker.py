"""Score every response with the oracle, and look for one request seeing another's intervention.

Runs in a worker thread (never on the event loop), after the response's timestamps are taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nnbench.cells.job import CellJob, CellOutput
from nnbench.oracle import Failure, Outcome, compare, judge
from nnbench.oracle.thresholds import MATCHED

DISTINCT_TV = MATCHED.max_tv / 5
"""two requests' references must be at least this far apart (TV) before a response that sits
closer to the other one counts as a leak: bf16 noise alone moved a response 0.005 from its own
reference and 0.003 from a near-identical neighbour's on the GPU (a false alarm, 2026-11-23)"""
from nnbench.vocab import State


@dataclass(frozen=True, slots=True)
class Check:
    state: State
    note: str = ""
    isolation_with: int | None = None
    """id of the in-flight request whose reference this response matched better than its own"""


@dataclass
class ResponseChecker:
    """Holds the references of every distinct job of the run (computed before the clock starts)."""

    reference_of: Callable[[CellJob], Outcome]
    matched_of: Callable[[CellJob], Outcome] | None = None
    """the HF reference at the backend's own precision; None when that is the reference's"""

    def check(self, job: CellJob, output: Outcome, overlapping: Iterable[tuple[int, CellJob]]) -> Check:
        reference = self.reference_of(job)
        matched = (lambda: self.matched_of(job)) if self.matched_of else None
        verdict = judge(output, reference, matched)
        if isinstance(output, Failure) or isinstance(reference, Failure) or verdict.state == State.SUPPORTED:
            return Check(verdict.state, verdict.note)
        extra = _extra_names(output, reference)
        if extra:
            return Check(State.SILENTLY_WRONG, f"isolation: response carries saves it did not ask for: {extra}", -1)
        own = verdict.versus_reference.max_tv if verdict.versus_reference else 1.0
        for other_id, other_job in overlapping:
            if other_job == job:
                continue  # an identical trace is indistinguishable, and harmless
            theirs = self.reference_of(other_job)
            if isinstance(theirs, Failure):
                continue
            apart = compare(theirs, reference)
            if apart.problem is not None or apart.max_tv < DISTINCT_TV:
                continue  # the two references are too alike to tell which one a response carries
            versus_theirs = compare(output, theirs)
            if versus_theirs.problem is None and versus_theirs.max_tv < own / 2:
                return Check(State.SILENTLY_WRONG, f"isolation: matches request {other_id}'s reference "
                             f"(TV {versus_theirs.max_tv:.2e}) better than its own (TV {own:.2e})", other_id)
        return Check(verdict.state, verdict.note)


def _extra_names(output: CellOutput, reference: CellOutput) -> list[str]:
    names = set()
    for got, want in zip(output.per_prompt, reference.per_prompt):
        names |= (set(got.dists) - set(want.dists)) | (set(got.values) - set(want.values))
    return sorted(names)
