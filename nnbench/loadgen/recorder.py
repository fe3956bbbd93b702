"""Per (backend, step): HDR histograms of latency (from the intended send time), service time and
the generator's own dispatch lag; counts by state and error class; goodput; isolation failures.

Histogram memory is fixed by range × precision, whatever the number of requests. No sample is
dropped: a value past the range is clamped to the top and counted as an overflow.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from nnbench.records import IsolationFailure, IsolationPower, LatencySummary, LoadStepRow, Phases
from nnbench.vocab import BackendName, State

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class LatencyHistogram:
    """Microsecond HDR histogram, 3 significant digits, that never drops a value silently."""

    def __init__(self, highest_s: float) -> None:
        self.highest_us = max(int(highest_s * 1e6), 10)
        self.hist = HdrHistogram(1, self.highest_us, 3)
        self.overflows = 0

    def record(self, seconds: float) -> None:
        value = min(max(int(seconds * 1e6), 1), self.highest_us)
        if value == self.highest_us and seconds * 1e6 > self.highest_us:
            self.overflows += 1
        if not self.hist.record_value(value):  # past the last bucket despite the clamp: still count it
            self.overflows += 1
            self.hist.record_value(self.hist.get_max_value() or 1)

    @property
    def count(self) -> int:
        return self.hist.get_total_count()

    def percentiles_ms(self) -> dict[str, float | None]:
        if self.count == 0:
            return {f"p{p:g}": None for p in PERCENTILES}
        values = self.hist.get_percentile_to_value_dict(list(PERCENTILES))
        return {f"p{p:g}": values[p] / 1e3 for p in PERCENTILES}

    def summary(self) -> LatencySummary:
        empty = self.count == 0
        p = self.percentiles_ms()
        return LatencySummary(
            count=self.count,
            overflows=self.overflows,
            min_ms=None if empty else self.hist.get_min_value() / 1e3,
            mean_ms=None if empty else self.hist.get_mean_value() / 1e3,
            max_ms=None if empty else self.hist.get_max_value() / 1e3,
            p50_ms=p["p50"], p90_ms=p["p90"], p99_ms=p["p99"], p99_9_ms=p["p99.9"],
            encoded=self.hist.encode().decode() if not empty else None,
        )


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """One finished (or cut-off) request, as recorded."""

    id: int
    methodology: str
    intended_s: float
    """offset from the step start"""
    dispatched_s: float
    sent_s: float
    done_s: float
    state: State
    error_type: str | None
    note: str
    isolation_with: int | None
    overlap_pairs: int = 0
    """in-flight neighbours with a different intervention"""
    told_apart: int = 0
    """… of them whose references were far enough apart for a leak to show"""

    @property
    def latency_s(self) -> float:
        return self.done_s - self.intended_s

    @property
    def service_s(self) -> float:
        return self.done_s - self.sent_s

    @property
    def dispatch_lag_s(self) -> float:
        return self.dispatched_s - self.intended_s


@dataclass
class StepRecorder:
    backend: str
    step: str
    """e.g. ``poisson@4`` or ``users=8``"""
    offered: float
    """offered rate (requests/s) or user count"""
    warmup_s: float
    slo_latency_s: float
    highest_s: float
    latency: LatencyHistogram = field(init=False)
    service: LatencyHistogram = field(init=False)
    dispatch_lag: LatencyHistogram = field(init=False)
    error_latency: LatencyHistogram = field(init=False)
    states: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    isolation_failures: list[IsolationFailure] = field(default_factory=list)
    overlap_pairs: int = 0
    told_apart: int = 0
    warmup_requests: int = 0
    good: int = 0
    good_degraded: int = 0
    cut_off: int = 0
    first_intended_s: float | None = None
    last_done_s: float | None = None

    def __post_init__(self) -> None:
        self.latency = LatencyHistogram(self.highest_s)
        self.service = LatencyHistogram(self.highest_s)
        self.dispatch_lag = LatencyHistogram(self.highest_s)
        self.error_latency = LatencyHistogram(self.highest_s)

    def record(self, outcome: RequestOutcome) -> None:
        if outcome.intended_s < self.warmup_s:
            self.warmup_requests += 1
            return
        self.first_intended_s = min(outcome.intended_s, self.first_intended_s or outcome.intended_s)
        if outcome.error_type != "CutOff":  # the drain deadline is not a completion
            self.last_done_s = max(outcome.done_s, self.last_done_s or outcome.done_s)
        self.states[outcome.state] += 1
        self.overlap_pairs += outcome.overlap_pairs
        self.told_apart += outcome.told_apart
        self.dispatch_lag.record(outcome.dispatch_lag_s)
        if outcome.error_type == "CutOff":
            self.cut_off += 1
        if outcome.state == State.ERROR:
            self.errors[outcome.error_type or "unknown"] += 1
            self.error_latency.record(outcome.latency_s)
            return
        self.latency.record(outcome.latency_s)
        self.service.record(outcome.service_s)
        within_slo = outcome.latency_s <= self.slo_latency_s
        if within_slo and outcome.state == State.SUPPORTED:
            self.good += 1
        if within_slo and outcome.state == State.SUPPORTED_DEGRADED:
            self.good_degraded += 1
        if outcome.isolation_with is not None:
            self.isolation_failures.append(IsolationFailure(outcome.id, outcome.isolation_with, outcome.note))

    def window_s(self) -> float:
        if self.first_intended_s is None or self.last_done_s is None:
            return 0.0
        return max(self.last_done_s - self.first_intended_s, 1e-9)

    def row(self, concurrency: str, interrupted: bool, phases: Phases | None) -> LoadStepRow:
        """The step's result row, valid until the caller finds the generator fell behind
        (``steps.record_step``); ``concurrency`` and ``phases`` come from around the recorder."""
        window = self.window_s()
        completed = sum(self.states.values())
        return LoadStepRow(
            backend=BackendName(self.backend),
            step=self.step,
            offered=self.offered,
            requests=completed,
            warmup_requests=self.warmup_requests,
            window_s=window,
            throughput_rps=completed / window if window else 0.0,
            good_requests=self.good,
            goodput_rps=self.good / window if window else 0.0,
            goodput_degraded_rps=self.good_degraded / window if window else 0.0,
            states={s: self.states.get(s, 0) for s in State},
            errors=dict(self.errors),
            cut_off=self.cut_off,
            isolation_failures=tuple(self.isolation_failures),
            isolation_power=IsolationPower(self.overlap_pairs, self.told_apart,
                                           self.told_apart / self.overlap_pairs if self.overlap_pairs else None),
            latency=self.latency.summary(),
            service=self.service.summary(),
            dispatch_lag=self.dispatch_lag.summary(),
            error_latency=self.error_latency.summary(),
            concurrency=concurrency,
            interrupted=interrupted,
            phases_s=phases,
            valid=True,
            invalid_reason=None,
        )
