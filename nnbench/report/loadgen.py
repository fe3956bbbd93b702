"""A finished load record for people: the Markdown summary and the PNG plots."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

from nnbench.records import LoadStepRow
from nnbench.results import LoadRecord
from nnbench.vocab import State


def _power(row: LoadStepRow) -> str:
    power = row.isolation_power
    if power is None or not power.pairs or power.share is None:
        return "no overlap"
    return f"{power.told_apart}/{power.pairs} ({power.share:.0%})"


def _ms(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def _machine(r: LoadStepRow) -> str:
    """Other processes' share of the machine during the step (with steal), **busy** past the mark."""
    m = r.machine
    if m is None or m.others_cpu is None:
        return "–"
    text = f"{m.others_cpu:.0%}" + (f", steal {m.steal:.0%}" if m.steal else "")
    return f"**busy: {text}**" if m.busy else text


def error_classes(record: LoadRecord) -> Counter:
    """Each error class summed over every step (a dict of the rows kept only the last step's count)."""
    total: Counter = Counter()
    for r in record.rows:
        total.update(r.errors)
    return total


def markdown_summary(record: LoadRecord) -> str:
    s, p = record.spec, record.provenance
    lines = [
        f"# nnbench load: {s['name']} ({record.status})",
        *([f"**Run {record.status}: {record.error}**", ""] if record.status != "success" and record.error else []),
        f"{p.date} · {p.device_name} · nnsight {p.versions.get('nnsight')} · "
        f"vllm {p.versions.get('vllm')} · commit {p.git_commit} · scenario {p.spec_hash} · seed {s['seed']}",
        f"family {s['family']} · mix {', '.join(m['methodology'] for m in s['mix'])} · "
        f"{s['arrivals']['process']} · SLO {s['slo']['latency_ms']:g} ms · checks {'on' if s['check'] else 'OFF'}",
        "",
        "Latency is measured from each request's intended send time (coordinated-omission safe); "
        "service time from the actual send. Goodput counts SUPPORTED responses within the SLO. NO_REF: "
        "responses that could not be judged (the HF intervention moves that prompt by less than 10x the "
        "SUPPORTED tolerance, or its reference failed). "
        "Leak detector power: of the overlapping request pairs carrying different interventions, the "
        "share whose references lie far enough apart (3 tolerances) for a leak between them to show.",
        "",
        "| backend | step | requests | thr. req/s | goodput req/s (degraded) | p50 ms | p90 ms | p99 ms | service p50 ms | "
        "dispatch lag p99 ms | SUPPORTED | DEGRADED | WRONG | ERROR | NO_REF | cut off | isolation | leak detector power | "
        "others' CPU | valid |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record.rows:
        st, lat = r.states, r.latency
        lines.append(
            f"| {r.backend} ({r.concurrency}) | {r.step} | {r.requests} | {r.throughput_rps:.2f} "
            f"| {r.goodput_rps:.2f} ({r.goodput_degraded_rps:.2f}) | {_ms(lat.p50_ms)} | {_ms(lat.p90_ms)} | {_ms(lat.p99_ms)} "
            f"| {_ms(r.service.p50_ms)} | {r.dispatch_lag.p99_ms or 0:.3f} | {st[State.SUPPORTED]} "
            f"| {st[State.SUPPORTED_DEGRADED]} | {st[State.SILENTLY_WRONG]} | {st[State.ERROR]} | {st[State.NO_REFERENCE]} | {r.cut_off} "
            f"| {len(r.isolation_failures)} | {_power(r)} | {_machine(r)} "
            f"| {'interrupted' if r.interrupted else 'yes' if r.valid else f'NO: {r.invalid_reason}'} |"
        )
    busy = [r for r in record.rows if r.machine is not None and r.machine.busy]
    if busy:
        lines += ["", f"**{len(busy)} of {len(record.rows)} steps ran on a busy machine** (other processes used more "
                  "than a quarter of its cores, or the hypervisor stole more than 5%): their latencies are not the "
                  "backend's alone; run again on an idle machine before comparing them."]
    phases = [r.phases_s for r in record.rows if r.phases_s is not None]
    if phases:
        lines += ["", f"Where the steps' time went (all steps): sending and draining "
                  f"{sum(p.drive_s for p in phases):.1f} s; before the clock, references "
                  f"{sum(p.references_s for p in phases):.1f} s and payloads {sum(p.payloads_s for p in phases):.1f} s; "
                  f"after it, the oracle's checks {sum(p.checks_s for p in phases):.1f} s."]
    errors = error_classes(record)
    if errors:
        lines += ["", "Error classes (all steps): " + ", ".join(f"{k} ×{v}" for k, v in errors.most_common())]
    for r in record.rows:
        for failure in r.isolation_failures[:5]:
            lines.append(f"- isolation failure ({r.backend} {r.step}): request {failure.request} ↔ "
                         f"{failure.other}: {failure.note}")
    knees = record.summary.knee_rps if record.summary else {}
    if knees:
        lines += ["", "Highest rate meeting the SLO: " + ", ".join(
            f"{b} {'none' if k is None else f'{k:g} req/s'}" for b, k in knees.items())]
    return "\n".join(lines) + "\n"


PLOT_PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9)


def plot_latency_percentiles(record: LoadRecord, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in record.rows:
        if not r.latency.encoded:
            continue
        hist = HdrHistogram.decode(r.latency.encoded)
        values = [hist.get_value_at_percentile(p) / 1e3 for p in PLOT_PERCENTILES]
        ax.plot(range(len(PLOT_PERCENTILES)), values, marker="o", label=f"{r.backend} {r.step}")
    ax.set_xticks(range(len(PLOT_PERCENTILES)), [f"p{p:g}" for p in PLOT_PERCENTILES])
    ax.set_yscale("log")
    ax.set_ylabel("latency from intended send (ms)")
    ax.set_title(f"{record.spec['name']}: latency percentiles")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no successful responses", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass(frozen=True, slots=True)
class StepMark:
    """What a plotted step carries besides its numbers: why it should not be read at face value."""

    backend: str
    offered: float
    requests: int
    marks: tuple[str, ...]
    """of "invalid", "interrupted", "busy" (the machine, not the backend, was loaded)"""


def step_marks(record: LoadRecord) -> list[StepMark]:
    return [StepMark(str(r.backend), r.offered, r.requests, tuple(
        m for m, on in (("invalid", not r.valid), ("interrupted", r.interrupted),
                        ("busy", r.machine is not None and r.machine.busy)) if on)) for r in record.rows]


def no_latency_reason(record: LoadRecord) -> str | None:
    """Why the latency panel has nothing to draw (every response failed, or no step ran), else None."""
    if not record.rows:
        return "no step ran"
    if all(r.latency.p50_ms is None for r in record.rows):
        failed = sum(r.states[State.ERROR] for r in record.rows)
        return f"no response succeeded: {failed} of {sum(r.requests for r in record.rows)} ERROR, nothing to plot"
    return None


MARK_STYLE = {"invalid": ("x", "red"), "interrupted": ("D", "orange"), "busy": ("o", "grey")}


def plot_curves(record: LoadRecord, path: Path) -> None:
    """Latency p50/p99 (SLO line, each step's sample count, invalid / interrupted / busy steps
    marked, the knee) and, apart, correct responses per second against failed ones, by offered rate
    (open loop) or users (closed loop). A run with nothing to draw says so in the panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = record.spec["arrivals"]["process"] == "closed"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    knees = record.summary.knee_rps if record.summary else {}
    for backend in dict.fromkeys(r.backend for r in record.rows):
        rows = sorted((r for r in record.rows if r.backend == backend), key=lambda r: r.offered)
        x = [r.offered for r in rows]
        left.plot(x, [r.latency.p50_ms for r in rows], "-o", label=f"{backend} p50")
        left.plot(x, [r.latency.p99_ms for r in rows], "--s", label=f"{backend} p99")
        for r in rows:
            if r.latency.p99_ms is not None:
                left.annotate(f"n={r.requests}", (r.offered, r.latency.p99_ms), fontsize=6,
                              textcoords="offset points", xytext=(0, 4), ha="center")
        right.plot(x, [r.goodput_rps for r in rows], "-o", label=f"{backend} correct (SUPPORTED, in SLO)")
        right.plot(x, [r.goodput_rps + r.goodput_degraded_rps for r in rows], "--^",
                   label=f"{backend} correct incl. DEGRADED")
        right.plot(x, [(r.states[State.ERROR] + r.states[State.SILENTLY_WRONG]) / r.window_s if r.window_s else 0.0
                       for r in rows], "-v", color="red", alpha=0.6, label=f"{backend} failed (ERROR, WRONG)")
        right.plot(x, [r.throughput_rps for r in rows], ":", label=f"{backend} all responses")
        if knees.get(backend) is not None:
            for ax in (left, right):
                ax.axvline(knees[backend], color="purple", lw=0.8, ls="-.")
            right.annotate(f"knee {knees[backend]:g}", (knees[backend], 0), fontsize=7, color="purple",
                           textcoords="offset points", xytext=(3, 3))
    for mark, (marker, color) in MARK_STYLE.items():
        marked = [(m, r) for m, r in zip(step_marks(record), record.rows, strict=True) if mark in m.marks]
        points = [(r.offered, r.latency.p50_ms) for _, r in marked if r.latency.p50_ms is not None]
        if points:
            left.scatter(*zip(*points, strict=True), marker=marker, s=90, facecolors="none", edgecolors=color,
                         label=f"{mark} step", zorder=5)
    left.axhline(record.spec["slo"]["latency_ms"], color="green", lw=0.8, ls=":", label="SLO")
    xlabel = "concurrent users" if closed else "offered rate (req/s)"
    left.set(xlabel=xlabel, ylabel="latency (ms)", title="response time (n = responses per step)", yscale="log")
    right.set(xlabel=xlabel, ylabel="req/s", title="correct responses apart from failed ones")
    if (reason := no_latency_reason(record)) is not None:
        left.text(0.5, 0.5, reason, transform=left.transAxes, ha="center", va="center", wrap=True, color="red")
    if not closed and record.rows:
        top = max(r.offered for r in record.rows)
        right.plot([0, top], [0, top], color="grey", lw=0.5, label="offered")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
