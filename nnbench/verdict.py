"""One run status computed from what was judged, not from "it did not crash".

A run that finished but judged nothing is ``failed``, with the reason: every checked response or
cell NO_REFERENCE or ERROR, or every load step invalid. Seen on a 2-core machine before this: a
``layer = 99`` scenario gave 110 of 110 NO_REFERENCE under "valid: yes", ``micro --device tpu`` 272
of 272, a first default run all three steps invalid — each reported success and exited 0.
``finishing(record, verdict=...)`` calls one of these after the run's block returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from nnbench.results import LoadRecord, ProbeRecord, RunRecord, SweepRecord
from nnbench.vocab import State

JUDGED = (State.SUPPORTED, State.SUPPORTED_DEGRADED, State.SILENTLY_WRONG)
"""states the oracle reached a verdict in; NO_REFERENCE and ERROR are not verdicts"""


def _nothing_judged(states: Counter, what: str) -> str | None:
    total = sum(states.values())
    if total and not any(states[s] for s in JUDGED):
        counts = ", ".join(f"{n} {s}" for s, n in states.most_common() if n)
        return f"nothing was judged: {total} {what}, all NO_REFERENCE or ERROR ({counts})"
    if not total:
        return f"no {what} ran"
    return None


def states_of(states: Iterable[State]) -> Counter:
    return Counter(State(s) for s in states)


def sweep_verdict(record: SweepRecord) -> str | None:
    return _nothing_judged(states_of(r.state for r in record.rows), "cells")


def probe_verdict(record: ProbeRecord) -> str | None:
    return _nothing_judged(states_of(r.state for r in record.rows), "probes")


def load_verdict(record: LoadRecord) -> str | None:
    """Failed when every step was invalid, or (with checks on) no response was judged."""
    if not record.rows:
        return "no step ran"
    if all(not r.valid for r in record.rows):
        reasons = sorted({r.invalid_reason or "invalid" for r in record.rows})
        return f"every step was invalid ({len(record.rows)} of {len(record.rows)}: {'; '.join(reasons)})"
    if record.spec.get("check", True) is False:
        return None
    states: Counter = Counter()
    for r in record.rows:
        states.update({State(k): v for k, v in r.states.items()})
    return _nothing_judged(states, "responses")


def no_verdict(record: RunRecord) -> str | None:
    return None
