"""Find the highest rate at which goodput still meets the SLO: grow geometrically until a step
fails, then bisect between the last good and the first bad rate."""

from __future__ import annotations

from nnbench.loadgen.scenario import Knee
from nnbench.records import LoadStepRow


class KneeSearch:
    """Feed it each finished step; it proposes the next rate, or None when done.

    Examples:
        >>> search = KneeSearch(Knee(enabled=True, start_rate=1, growth=2, refine_steps=1))
        >>> search.next_rate()
        1.0
        >>> search.report(1.0, met=True); search.next_rate()
        2.0
    """

    def __init__(self, knee: Knee) -> None:
        self.knee = knee
        self.good: float | None = None
        self.bad: float | None = None
        self.refined = 0
        self._next: float | None = knee.start_rate

    def next_rate(self) -> float | None:
        return self._next

    def report(self, rate: float, met: bool) -> None:
        if met:
            self.good = max(rate, self.good or rate)
        else:
            self.bad = min(rate, self.bad or rate)
        if self.bad is None:
            grown = rate * self.knee.growth
            self._next = grown if grown <= self.knee.max_rate else None
        elif self.good is None:
            self._next = None  # even the starting rate fails the SLO
        elif self.refined < self.knee.refine_steps:
            self.refined += 1
            self._next = (self.good + self.bad) / 2
        else:
            self._next = None

    @property
    def knee_rate(self) -> float | None:
        return self.good


def meets_slo(step: LoadStepRow, min_goodput_fraction: float) -> bool:
    """A step meets the SLO if enough of its responses were good (correct and within the latency
    SLO) and none leaked. Counted per response, not as goodput over offered rate: a short Poisson
    step's achieved arrival rate alone can miss the offered one by 20%."""
    return (step.requests > 0 and not step.isolation_failures
            and step.good_requests >= min_goodput_fraction * step.requests)
