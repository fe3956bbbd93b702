"""Load-generator outputs: the JSON record, .hgrm percentile tables, per-request JSONL, a
Markdown summary and PNG plots, all under one self-describing results directory."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from hdrh.histogram import HdrHistogram

from nnbench.loadgen.recorder import RequestOutcome, StepRecorder
from nnbench.results import RunRecord, write_record


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text.replace("@", "_at_"))


class ResultFiles:
    """``<out>/loadgen-<scenario>-<UTC stamp>/loadgen-<scenario>.{json,md}`` and friends."""

    def __init__(self, out_dir: Path, scenario_name: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.dir = Path(out_dir) / f"loadgen-{scenario_name}-{stamp}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stem = f"loadgen-{scenario_name}"

    @property
    def json_path(self) -> Path:
        return self.dir / f"{self.stem}.json"

    def save_step(self, record: RunRecord, recorder: StepRecorder, outcomes: list[RequestOutcome]) -> None:
        write_record(record, self.json_path)
        with (self.dir / f"{self.stem}-{_slug(recorder.backend)}-{_slug(recorder.step)}.hgrm").open("wb") as handle:
            recorder.latency.hist.output_percentile_distribution(handle, 1000.0)  # µs → ms
        with (self.dir / f"{self.stem}-requests.jsonl").open("a") as handle:
            for outcome in sorted(outcomes, key=lambda o: o.id):
                row = asdict(outcome) | {"backend": recorder.backend, "step": recorder.step,
                                         "latency_s": outcome.latency_s, "service_s": outcome.service_s}
                handle.write(json.dumps(row) + "\n")

    def write_all(self, record: RunRecord) -> None:
        write_record(record, self.json_path)
        (self.dir / f"{self.stem}.md").write_text(markdown_summary(record))
        if record.rows:
            plot_latency_percentiles(record, self.dir / f"{self.stem}-latency.png")
            plot_curves(record, self.dir / f"{self.stem}-curves.png")


def _power(row: dict) -> str:
    power = row.get("isolation_power") or {}
    if not power.get("pairs"):
        return "no overlap"
    return f"{power['told_apart']}/{power['pairs']} ({power['share']:.0%})"


def _ms(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def markdown_summary(record: RunRecord) -> str:
    s, p = record.spec, record.provenance
    lines = [
        f"# nnbench load: {s['name']} ({record.status})",
        f"{p['date']} · {p['device_name']} · nnsight {p['versions'].get('nnsight')} · "
        f"vllm {p['versions'].get('vllm')} · commit {p['git_commit']} · scenario {p['spec_hash']} · seed {s['seed']}",
        f"family {s['family']} · mix {', '.join(m['methodology'] for m in s['mix'])} · "
        f"{s['arrivals']['process']} · SLO {s['slo']['latency_ms']:g} ms · checks {'on' if s['check'] else 'OFF'}",
        "",
        "Latency is measured from each request's intended send time (coordinated-omission safe); "
        "service time from the actual send. Goodput counts SUPPORTED responses within the SLO. "
        "Leak detector power: of the overlapping request pairs carrying different interventions, the "
        "share whose references lie far enough apart (3 tolerances) for a leak between them to show.",
        "",
        "| backend | step | requests | thr. req/s | goodput req/s (degraded) | p50 ms | p90 ms | p99 ms | service p50 ms | "
        "dispatch lag p99 ms | SUPPORTED | DEGRADED | WRONG | ERROR | cut off | isolation | leak detector power | valid |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record.rows:
        st, lat = r["states"], r["latency"]
        lines.append(
            f"| {r['backend']} ({r.get('concurrency', '?')}) | {r['step']} | {r['requests']} | {r['throughput_rps']:.2f} "
            f"| {r['goodput_rps']:.2f} ({r['goodput_degraded_rps']:.2f}) | {_ms(lat['p50_ms'])} | {_ms(lat['p90_ms'])} | {_ms(lat['p99_ms'])} "
            f"| {_ms(r['service']['p50_ms'])} | {r['dispatch_lag']['p99_ms'] or 0:.3f} | {st['SUPPORTED']} "
            f"| {st['SUPPORTED_DEGRADED']} | {st['SILENTLY_WRONG']} | {st['ERROR']} | {r['cut_off']} "
            f"| {len(r['isolation_failures'])} | {_power(r)} | {'yes' if r['valid'] else 'NO: ' + r['invalid_reason']} |"
        )
    phases = [r.get("phases_s") or {} for r in record.rows]
    if any(phases):
        names = ("references_s", "payloads_s", "drive_s", "checks_s")
        total = {name: sum(p.get(name, 0.0) for p in phases) for name in names}
        lines += ["", "Where the steps' time went (all steps): sending and draining {drive_s:.1f} s; before the clock, "
                  "references {references_s:.1f} s and payloads {payloads_s:.1f} s; after it, the oracle's checks "
                  "{checks_s:.1f} s.".format(**total)]
    errors = {k: v for r in record.rows for k, v in r["errors"].items()}
    if errors:
        lines += ["", "Error classes: " + ", ".join(f"{k} ×{v}" for k, v in errors.items())]
    for r in record.rows:
        for failure in r["isolation_failures"][:5]:
            lines.append(f"- isolation failure ({r['backend']} {r['step']}): request {failure['request']} ↔ "
                         f"{failure['other']}: {failure['note']}")
    if record.summary.get("knee_rps"):
        lines += ["", "Highest rate meeting the SLO: " + ", ".join(
            f"{b} {'none' if k is None else f'{k:g} req/s'}" for b, k in record.summary["knee_rps"].items())]
    return "\n".join(lines) + "\n"


PLOT_PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9)


def plot_latency_percentiles(record: RunRecord, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in record.rows:
        if not r["latency"]["encoded"]:
            continue
        hist = HdrHistogram.decode(r["latency"]["encoded"])
        values = [hist.get_value_at_percentile(p) / 1e3 for p in PLOT_PERCENTILES]
        ax.plot(range(len(PLOT_PERCENTILES)), values, marker="o", label=f"{r['backend']} {r['step']}")
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


def plot_curves(record: RunRecord, path: Path) -> None:
    """Latency p50/p99 and goodput against offered rate (open loop) or users (closed loop)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = record.spec["arrivals"]["process"] == "closed"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for backend in dict.fromkeys(r["backend"] for r in record.rows):
        rows = sorted((r for r in record.rows if r["backend"] == backend), key=lambda r: r["offered"])
        x = [r["offered"] for r in rows]
        for q, style in (("p50_ms", "-o"), ("p99_ms", "--s")):
            left.plot(x, [r["latency"][q] for r in rows], style, label=f"{backend} {q[:-3]}")
        right.plot(x, [r["goodput_rps"] for r in rows], "-o", label=f"{backend} goodput")
        right.plot(x, [r["goodput_rps"] + r["goodput_degraded_rps"] for r in rows], "--^",
                   label=f"{backend} goodput incl. DEGRADED")
        right.plot(x, [r["throughput_rps"] for r in rows], ":", label=f"{backend} throughput")
    xlabel = "concurrent users" if closed else "offered rate (req/s)"
    left.set(xlabel=xlabel, ylabel="latency (ms)", title="response time", yscale="log")
    right.set(xlabel=xlabel, ylabel="req/s", title="goodput (correct, within SLO)")
    if not closed:
        top = max(r["offered"] for r in record.rows)
        right.plot([0, top], [0, top], color="grey", lw=0.5, label="offered")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
