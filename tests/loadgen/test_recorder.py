from dataclasses import replace

from hdrh.histogram import HdrHistogram

from nnbench.loadgen.recorder import LatencyHistogram, RequestOutcome, StepRecorder
from nnbench.vocab import State


def _outcome(i, intended, sent, done, state=State.SUPPORTED, error=None):
    return RequestOutcome(i, "steering", intended, intended, sent, done, state, error, "", None)


def test_no_sample_is_dropped_past_the_range():
    hist = LatencyHistogram(highest_s=1.0)
    for seconds in (0.0, 0.5, 5.0, 50.0):
        hist.record(seconds)
    assert hist.count == 4 and hist.overflows == 2
    assert hist.summary().max_ms >= 999.0


def test_histograms_merge_and_round_trip():
    a, b = LatencyHistogram(10.0), LatencyHistogram(10.0)
    for ms in range(1, 101):
        a.record(ms / 1e3)
        b.record((ms + 100) / 1e3)
    merged = HdrHistogram.decode(a.summary().encoded)
    merged.add(HdrHistogram.decode(b.summary().encoded))
    assert merged.get_total_count() == 200
    assert abs(merged.get_value_at_percentile(50) / 1e3 - 100) < 1
    assert abs(merged.get_value_at_percentile(99) / 1e3 - 198) < 1


def test_warmup_is_excluded_and_goodput_needs_state_and_slo():
    rec = StepRecorder("hf", "poisson@1", 1.0, warmup_s=1.0, slo_latency_s=0.5, highest_s=10)
    rec.record(_outcome(0, 0.5, 0.5, 0.6))                                     # warm-up
    rec.record(_outcome(1, 1.0, 1.0, 1.2))                                     # good
    rec.record(_outcome(2, 2.0, 2.5, 2.9))                                     # latency 0.9 > SLO
    rec.record(_outcome(3, 3.0, 3.0, 3.1, State.SILENTLY_WRONG))               # fast but wrong
    rec.record(_outcome(4, 4.0, 4.0, 5.0, State.ERROR, "TimeoutError"))
    s = rec.row("serialised", interrupted=False, phases=None)
    assert s.warmup_requests == 1 and s.requests == 4
    assert s.goodput_rps == 1 / (5.0 - 1.0)
    assert s.errors == {"TimeoutError": 1} and s.latency.count == 3
    assert s.service.max_ms < 500 < s.latency.max_ms


def test_knee_search_grows_then_bisects():
    from nnbench.loadgen.knee import knee_rates, meets_slo
    from nnbench.loadgen.scenario import Knee
    from nnbench.records import IsolationFailure

    search, tried = knee_rates(Knee(enabled=True, start_rate=1, growth=2, refine_steps=2)), []
    rate = next(search)
    try:
        while True:
            tried.append(rate)
            rate = search.send(rate <= 5)
    except StopIteration as done:
        knee = done.value
    assert tried == [1, 2, 4, 8, 6, 5] and knee == 5
    empty = StepRecorder("hf", "poisson@1", 1.0, 0.0, 1.0, 10.0).row("serialised", False, None)
    good = replace(empty, requests=10, good_requests=9)
    assert meets_slo(good, 0.9) and not meets_slo(replace(good, good_requests=8), 0.9)
    assert not meets_slo(replace(good, isolation_failures=(IsolationFailure(1, 2, "leak"),)), 0.9)
