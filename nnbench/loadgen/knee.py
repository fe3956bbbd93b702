"""Find the highest rate at which goodput still meets the SLO: grow geometrically until a step
fails, then bisect between the last good and the first bad rate."""

from __future__ import annotations

from collections.abc import Generator

from nnbench.loadgen.scenario import Knee
from nnbench.records import LoadStepRow


def knee_rates(knee: Knee) -> Generator[float, bool, float | None]:
    """Yields the next rate to try and is sent whether that step met the SLO; returns the knee
    (the highest good rate, None if even the first failed).

    Examples:
        >>> search = knee_rates(Knee(enabled=True, start_rate=1, growth=2, refine_steps=1))
        >>> next(search), search.send(True), search.send(True), search.send(False)
        (1.0, 2.0, 4.0, 3.0)
    """
    good: float | None = None
    bad: float | None = None
    refined = 0
    rate = float(knee.start_rate)
    while True:
        met = yield rate
        if met:
            good = max(rate, good or rate)
        else:
            bad = min(rate, bad or rate)
        if bad is None:
            rate = rate * knee.growth
            if rate > knee.max_rate:
                return good
        elif good is None or refined >= knee.refine_steps:
            return good
        else:
            refined += 1
            rate = (good + bad) / 2


def meets_slo(step: LoadStepRow, min_goodput_fraction: float) -> bool:
    """A step meets the SLO if enough of its responses were good (correct and within the latency
    SLO) and none leaked. Counted per response, not as goodput over offered rate: a short Poisson
    step's achieved arrival rate alone can miss the offered one by 20%."""
    return (step.requests > 0 and not step.isolation_failures
            and step.good_requests >= min_goodput_fraction * step.requests)
