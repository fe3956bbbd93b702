"""Markdown for people: the applicability map and the performance table of a sweep record."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from nnbench.records import CellRow, FloorRow, SweepSummary
from nnbench.results import ProbeRecord, RunRecord, SweepRecord
from nnbench.unprobed import NOT_PROBED
from nnbench.vocab import State

STAND_IN_ORDER = ("vllm_async", "vllm_serve", "vllm_sync")
"""where a cell's own backend was not probed, the first of these that was stands in"""

SHORT = {
    "SUPPORTED": "SUPPORTED",
    "SUPPORTED_DEGRADED": "DEGRADED",
    "SILENTLY_WRONG": "**SILENTLY_WRONG**",
    "ERROR": "ERROR",
    "NO_REFERENCE": "NO_REFERENCE",
}


def _column(row: CellRow, many_dtypes: bool) -> str:
    col = f"{row.family}{' (synthetic)' if row.synthetic else ''} · {row.backend}"
    return f"{col} · {row.dtype}" if many_dtypes else col


def applicability_map(record: SweepRecord) -> str:
    """Rows methodology × workload, columns family × backend (× dtype), cells the state; a cell
    with a portable and an aware form shows both."""
    rows = record.rows
    many_dtypes = len({r.dtype for r in rows}) > 1
    columns = sorted({_column(r, many_dtypes) for r in rows})
    table: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(rows, key=lambda r: r.variant):
        label = f"{r.variant}: {SHORT[r.state]}" if r.variant else SHORT[r.state]
        table[(r.methodology, r.workload)][_column(r, many_dtypes)].append(label)
    lines = ["| methodology | workload | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for (methodology, workload), states in sorted(table.items()):
        cells = ("<br>".join(states[c]) if c in states else "–" for c in columns)
        lines.append(f"| {methodology} | {workload} | " + " | ".join(cells) + " |")
    for ex in record.excluded:
        lines.append(f"\n{ex.methodology} × {ex.workload}: not a cell ({ex.reason}).")
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.1f}"


def _order(r: CellRow) -> tuple[str, ...]:
    return (r.methodology, r.family, r.workload, r.backend, r.variant, r.dtype)


def performance_table(record: SweepRecord) -> str:
    lines = [
        "| cell | dtype | state | median ± std (ms) | empty trace (ms) | overhead × | plain engine (ms) "
        "| prompts/s | peak MiB | max TV | top-1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(record.rows, key=_order):
        t, b, v, plain = r.timing, r.baseline, r.versus_reference, r.plain_engine
        timing = f"{_ms(t.median_s)} ± {_ms(t.std_s)}" if t else "–"
        peak = f"{t.peak_memory_bytes / 2**20:.0f}" if t and t.peak_memory_bytes else "–"
        lines.append(
            f"| {r.name} | {r.dtype} | {SHORT[r.state]} "
            f"| {timing} | {_ms(b.median_s) if b else '–'} | {_fmt(r.overhead, '.2f')} "
            f"| {_ms(plain.median_s) if plain else '–'} | {_fmt(r.prompts_per_s, '.1f')} | {peak} "
            f"| {_fmt(v.max_tv if v else None)} | {_fmt(v.top1 if v else None)} |"
        )
    return "\n".join(lines)


def nnsight_overhead_table(record: SweepRecord) -> str:
    """nnsight (hf) against plain hooks (raw_hooks) on the same cell: the price of the framework."""
    by_cell: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    for r in record.rows:
        if r.timing:
            by_cell[(r.methodology, r.family, r.workload, r.dtype)][r.backend] = r.timing.median_s
    lines = ["| cell | dtype | nnsight hf (ms) | raw hooks (ms) | nnsight / raw |", "|---|---|---|---|---|"]
    for (m, f, w, d), times in sorted(by_cell.items()):
        if "hf" in times and "raw_hooks" in times:
            lines.append(f"| {m}/{f}/{w} | {d} | {_ms(times['hf'])} | {_ms(times['raw_hooks'])} | {times['hf'] / times['raw_hooks']:.2f} |")
    return "\n".join(lines)


def floors_table(record: RunRecord) -> str:
    """The noise floors the oracle measured, and what each lets SUPPORTED_DEGRADED through."""
    if not record.floors:
        return "No floor measured (every cell ran at fp32, where SUPPORTED needs STRICT agreement)."
    lines = ["| family | backend | dtype | TV vs HF fp32 | TV vs HF same dtype | HF re-run | judged against | "
             "degraded allows |", "|---|---|---|---|---|---|---|---|"]
    for f in sorted(record.floors, key=lambda f: (f.family, f.backend, f.dtype)):
        if not isinstance(f, FloorRow):
            lines.append(f"| {f.family} | {f.backend} | {f.dtype} | {f.error} | | | | |")
            continue
        lines.append(f"| {f.family} | {f.backend} | {f.dtype} | {_fmt(f.versus_fp32)} "
                     f"| {_fmt(f.versus_matched)} | {_fmt(f.hf_rerun)} | HF {f.reference_dtype} "
                     f"| {_fmt(f.degraded_max_tv)} |")
    return "\n".join(lines)


def effect_table(record: SweepRecord) -> str:
    """Per write cell: how far the HF intervention moves its weakest prompt, in tolerances (the
    margin a lost edit would land at), and the worst direction and size the cell's own effect had."""
    lines = ["| cell | dtype | state | prompts certifying | checked | smallest reference TV | smallest margin "
             "| worst cosine | size range |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in record.rows if r.effect), key=_order):
        assert r.effect is not None
        prompts = r.effect.prompts
        checked = [p for p in prompts if p.resolved] or list(prompts)
        lines.append(
            f"| {r.name} | {r.dtype} | {SHORT[r.state]} | {r.effect.certifying}/{len(prompts)} "
            f"| {r.effect.resolved} | {_fmt(_least(p.size for p in prompts))} "
            f"| {_fmt(_least(p.margin for p in prompts), '.0f')} | {_fmt(_least(p.cosine for p in checked), '.3f')} "
            f"| {_fmt(_least(p.ratio for p in checked), '.2f')}–{_fmt(_most(p.ratio for p in checked), '.2f')} |")
    return "\n".join(lines) if len(lines) > 2 else "No write cell reached the effect check."


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def _least(values: Iterable[float | None]) -> float | None:
    """The smallest figure; a null (NaN or infinity as written) is not a number to rank."""
    return min((v for v in values if v is not None), default=None)


def _most(values: Iterable[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def sweep_report(record: SweepRecord) -> str:
    p = record.provenance
    versions = ", ".join(f"{k} {v}" for k, v in p.versions.items() if v)
    summary = record.summary or SweepSummary.of(record.rows)
    counts = ", ".join(f"{k} {v}" for k, v in summary.states.items() if v)
    return "\n\n".join([
        f"# nnbench sweep ({record.status})",
        *([f"**Run {record.status}: {record.error}**"] if record.status != "success" and record.error else []),
        f"{p.date} · {p.device_name} ({p.device}) · {versions} · commit {p.git_commit}",
        f"States: {counts}",
        "## Applicability map",
        applicability_map(record),
        "## Noise floors",
        floors_table(record),
        "## Discrimination (write cells)",
        effect_table(record),
        "## Performance",
        performance_table(record),
        "## nnsight against plain hooks",
        nnsight_overhead_table(record),
    ]) + "\n"


def probe_map(record: ProbeRecord) -> str:
    """Rows primitive × module kind, columns family × backend, cells the state."""
    columns = sorted({f"{r.family} · {r.backend}" for r in record.rows})
    table: dict[tuple[int, str, str], dict[str, str]] = defaultdict(dict)
    for r in record.rows:
        table[(r.level, r.primitive, r.module_kind)][f"{r.family} · {r.backend}"] = SHORT[r.state]
    lines = ["| level | primitive | module kind | " + " | ".join(columns) + " |", "|---|---|---|" + "---|" * len(columns)]
    for (level, primitive, kind), states in sorted(table.items()):
        lines.append(f"| {level} | {primitive} | {kind} | " + " | ".join(states.get(c, "–") for c in columns) + " |")
    return "\n".join(lines)


def merge_sweeps(records: list[SweepRecord]) -> SweepRecord:
    """One record from several sweeps (one per family, a re-run of one backend, ...): a later
    record's row replaces an earlier one for the same cell and precision."""
    if not records:
        raise ValueError("merge_sweeps: no records given")
    rows: dict[tuple[str, ...], CellRow] = {}
    for record in records:
        if record.kind != "sweep":
            raise ValueError(f"merge_sweeps: a {record.kind} record is not a sweep")
        for r in record.rows:
            rows.pop(r.key, None)
            rows[r.key] = r
    excluded = {(e.methodology, e.workload): e for record in records for e in record.excluded}
    merged: SweepRecord = RunRecord("sweep", {"merged_from": [r.spec for r in records]}, records[-1].provenance,
                                    status=next((r.status for r in records if r.status != "success"), "success"),
                                    rows=list(rows.values()), excluded=list(excluded.values()),
                                    floors=[f for record in records for f in record.floors])
    merged.summary = SweepSummary.of(merged.rows)
    return merged


def primitive_links(sweep: SweepRecord, micro: ProbeRecord | list[ProbeRecord]) -> str:
    """Every vLLM cell that is not SUPPORTED(_DEGRADED), with the primitives it relies on and
    what their probes showed on the same family and backend (or, where that backend was not
    probed, on another vLLM backend, which is named)."""
    micros = micro if isinstance(micro, list) else [micro]
    probes = {(str(r.family), str(r.backend), r.label): r for m in micros for r in m.rows
              if r.backend.startswith("vllm")}
    lines = ["| cell | state | relies on: probe state |", "|---|---|---|"]
    for r in sorted(sweep.rows, key=lambda r: (r.methodology, r.family, r.workload, r.backend)):
        if r.state in (State.SUPPORTED, State.SUPPORTED_DEGRADED) or not r.backend.startswith("vllm"):
            continue
        links = []
        for name in r.relies_on:
            probe = probes.get((r.family, r.backend, name))
            stand_in = next((probes[(r.family, b, name)] for b in STAND_IN_ORDER
                             if (r.family, b, name) in probes), None)
            if probe:
                links.append(f"{name}: {SHORT[probe.state]}")
            elif stand_in:
                links.append(f"{name}: {SHORT[stand_in.state]} (on {stand_in.backend})")
            else:
                links.append(f"{name}: (not probed: {NOT_PROBED.get(name, 'no probe for it')})")
        lines.append(f"| {r.name} | {SHORT[r.state]} | {'; '.join(links)} |")
    return "\n".join(lines) if len(lines) > 2 else "Every vLLM cell is SUPPORTED or SUPPORTED_DEGRADED."
