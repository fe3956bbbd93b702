"""Score every response with the oracle, and look for one request seeing another's intervention.

Runs in a worker thread (never on the event loop), after the response's timestamps are taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nnbench.cells.job import CellJob, CellOutput
from nnbench.oracle import Failure, Outcome, compare, judge
from nnbench.oracle.thresholds import MATCHED
from nnbench.vocab import State

DISTINCT_TV = MATCHED.max_tv / 5
"""two requests' references must be at least this far apart (TV) before a response that sits
closer to the other one counts as a leak: bf16 noise alone moved a response 0.005 from its own
reference and 0.003 from a near-identical neighbour's on the GPU (a false alarm, 2026-11-23)"""


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
    _distinct: dict[tuple[CellJob, CellJob], bool] = field(default_factory=dict)
    """whether two jobs' references are far enough apart to tell a leak (a few dozen jobs per run)"""

    def distinguishable(self, job: CellJob, other: CellJob) -> bool:
        if (job, other) not in self._distinct:
            theirs, ours = self.reference_of(other), self.reference_of(job)
            apart = None if isinstance(theirs, Failure) else compare(theirs, ours)
            self._distinct[(job, other)] = apart is not None and apart.problem is None and apart.max_tv >= DISTINCT_TV
        return self._distinct[(job, other)]

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
        if 1.5 * own <= DISTINCT_TV:
            # No leak can be told apart: a neighbour counts only if its reference is >= DISTINCT_TV
            # from ours and the response is < own/2 from its, but TV is a metric, so
            # TV(ours, theirs) <= own + own/2. Most bf16 responses end here (own ~ 0.01).
            return Check(verdict.state, verdict.note)
        first_of_each_job = {other_job: other_id for other_id, other_job in reversed(list(overlapping))}
        for other_job, other_id in first_of_each_job.items():  # requests of one job share one reference
            if other_job == job:
                continue  # an identical trace is indistinguishable, and harmless
            if not self.distinguishable(job, other_job):
                continue  # the two references are too alike to tell which one a response carries
            versus_theirs = compare(output, self.reference_of(other_job))
            if versus_theirs.problem is None and versus_theirs.max_tv < own / 2:
                return Check(State.SILENTLY_WRONG, f"isolation: matches request {other_id}'s reference "
                             f"(TV {versus_theirs.max_tv:.2e}) better than its own (TV {own:.2e})", other_id)
        return Check(verdict.state, verdict.note)


def _extra_names(output: CellOutput, reference: CellOutput) -> list[str]:
    names = set()
    for got, want in zip(output.per_prompt, reference.per_prompt):
        names |= (set(got.dists) - set(want.dists)) | (set(got.values) - set(want.values))
    return sorted(names)
