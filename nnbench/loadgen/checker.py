"""Score every response with the oracle, and look for one request seeing another's intervention.

Runs in a worker thread (never on the event loop), after the response's timestamps are taken.

Isolation: a response that sits closer to an in-flight neighbour's reference than to its own is
blamed on the *nearest* such neighbour. Two references count as distinguishable only when they
are ``DISTINCT_MULTIPLE`` tolerances apart, where the tolerance is the one in force for the run's
precision (STRICT at fp32, the measured floor's below): at fp32 two steering seeds on one prompt
(references TV 0.026 apart) are told apart, at bf16 on a GPU (floor ~0.03) they may not be, and
each step reports how many overlapping pairs could be told apart (the detector's power).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nnbench.jobs import CellJob, CellOutput
from nnbench.oracle import Evidence, Failure, NoiseFloor, compare, judge
from nnbench.oracle.thresholds import STRICT
from nnbench.vocab import State

DISTINCT_MULTIPLE = 3.0
"""a leak is only counted between references at least this many tolerances apart: a response may
sit one tolerance from its own reference, and must then be under half its own distance from the
other's, which the triangle inequality allows only when the references are > 1.5 tolerances apart;
3 leaves the noise of the other side room too (bf16 noise alone once put a response 0.005 from its
own reference and 0.003 from a near-identical neighbour's on the GPU, 2026-11-23)"""


@dataclass(frozen=True, slots=True)
class Check:
    state: State
    note: str = ""
    isolation_with: int | None = None
    """id of the in-flight request whose reference this response matched better than its own"""
    pairs: int = 0
    """in-flight neighbours carrying a different intervention"""
    told_apart: int = 0
    """… whose reference is far enough from this one's for a leak between them to show"""


@dataclass
class ResponseChecker:
    """Holds the evidence of every distinct job of the run (computed before the clock starts)."""

    evidence_of: Callable[[CellJob], Evidence]
    _distinct: dict[tuple[CellJob, CellJob], bool] = field(default_factory=dict)
    """whether two jobs' references are far enough apart to tell a leak (a few dozen jobs per run)"""

    def distinct_tv(self, job: CellJob) -> float:
        """How far apart two references must be for a leak between them to show: a multiple of
        what a correct response may differ by (STRICT at fp32, the measured floor's below)."""
        floor = self.evidence_of(job).floor
        tolerance = floor.tolerance().max_tv if isinstance(floor, NoiseFloor) else STRICT.max_tv
        return DISTINCT_MULTIPLE * tolerance

    def distinguishable(self, job: CellJob, other: CellJob) -> bool:
        if (job, other) not in self._distinct:
            theirs, ours = self.evidence_of(other).reference, self.evidence_of(job).reference
            apart = None if isinstance(theirs, Failure) or isinstance(ours, Failure) else compare(theirs, ours)
            self._distinct[(job, other)] = apart is not None and apart.problem is None and apart.max_tv >= self.distinct_tv(job)
        return self._distinct[(job, other)]

    def check(self, job: CellJob, output, overlapping: Iterable[tuple[int, CellJob]]) -> Check:
        evidence = self.evidence_of(job)
        reference = evidence.reference
        verdict = judge(output, evidence)
        neighbours: dict[CellJob, int] = {}
        for other_id, other_job in overlapping:  # requests of one job share one reference
            if other_job != job:  # an identical trace is indistinguishable, and harmless
                neighbours.setdefault(other_job, other_id)
        apart = [other for other in neighbours if self.distinguishable(job, other)]
        power = {"pairs": len(neighbours), "told_apart": len(apart)}
        if isinstance(output, Failure) or isinstance(reference, Failure) or verdict.state == State.SUPPORTED:
            return Check(verdict.state, verdict.note, **power)
        extra = _extra_names(output, reference)
        if extra:
            return Check(State.SILENTLY_WRONG, f"isolation: response carries saves it did not ask for: {extra}", -1,
                         **power)
        own = compare(output, reference).max_tv
        if not 1.5 * own > self.distinct_tv(job):
            # No leak can be told apart: a neighbour counts only if its reference is >= distinct_tv
            # from ours and the response is < own/2 from its, but TV is a metric, so
            # TV(ours, theirs) <= own + own/2. Most bf16 responses end here.
            return Check(verdict.state, verdict.note, **power)
        nearest = None
        for other_job in apart:
            theirs = self.evidence_of(other_job).reference
            if isinstance(theirs, Failure):  # no reference: that neighbour cannot be blamed
                continue
            versus_theirs = compare(output, theirs)
            if versus_theirs.problem is None and (nearest is None or versus_theirs.max_tv < nearest[0]):
                nearest = (versus_theirs.max_tv, neighbours[other_job])
        if nearest is not None and nearest[0] < own / 2:
            return Check(State.SILENTLY_WRONG, f"isolation: matches request {nearest[1]}'s reference "
                         f"(TV {nearest[0]:.2e}) better than its own (TV {own:.2e})", nearest[1], **power)
        return Check(verdict.state, verdict.note, **power)


def _extra_names(output: CellOutput, reference: CellOutput) -> list[str]:
    names = set()
    for got, want in zip(output.per_prompt, reference.per_prompt):
        names |= (set(got.dists) - set(want.dists)) | (set(got.values) - set(want.values))
    return sorted(names)
