"""``python -m nnbench.loadgen compare A.json B.json``: what changed between two load runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nnbench.records import LoadStepRow
from nnbench.results import read_record

FIELDS: tuple[tuple[str, Callable[[LoadStepRow], float | None]], ...] = (
    ("p50 ms", lambda r: r.latency.p50_ms), ("p99 ms", lambda r: r.latency.p99_ms),
    ("goodput req/s", lambda r: r.goodput_rps), ("throughput req/s", lambda r: r.throughput_rps))


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return f"{a} → {b}"
    pct = f" ({(b - a) / a * 100:+.0f}%)" if a else ""
    return f"{a:.2f} → {b:.2f}{pct}"


def compare(path_a: Path, path_b: Path) -> str:
    a, b = read_record(path_a, "loadgen"), read_record(path_b, "loadgen")
    rows_a = {(str(r.backend), r.step): r for r in a.rows}
    rows_b = {(str(r.backend), r.step): r for r in b.rows}
    lines = [f"A: {path_a} ({a.provenance.date}, commit {a.provenance.git_commit})",
             f"B: {path_b} ({b.provenance.date}, commit {b.provenance.git_commit})", "",
             "| backend | step | " + " | ".join(name for name, _ in FIELDS) + " | states changed |",
             "|---|---|" + "---|" * (len(FIELDS) + 1)]
    for key in sorted(set(rows_a) | set(rows_b)):
        ra, rb = rows_a.get(key), rows_b.get(key)
        if ra is None or rb is None:
            lines.append(f"| {key[0]} | {key[1]} | only in {'B' if ra is None else 'A'} |" + " |" * len(FIELDS))
            continue
        states = [f"{s} {ra.states[s]}→{rb.states[s]}" for s in ra.states if ra.states[s] != rb.states.get(s)]
        cells = [_change(get(ra), get(rb)) for _, get in FIELDS]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {', '.join(states) or 'none'} |")
    return "\n".join(lines)
