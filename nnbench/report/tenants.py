"""A tenants record (``nnbench.loadgen.tenants``) as Markdown: one row per attack × backend."""

from __future__ import annotations

from nnbench.results import TenantsRecord


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _yes(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "NO")


def markdown(record: TenantsRecord) -> str:
    spec, prov = record.spec, record.provenance
    tenants = spec.get("tenants") or {}
    lines = [
        f"# nnbench tenants: {spec['name']} ({record.status})",
        f"{prov.date} · {prov.device_name} · nnsight {prov.versions.get('nnsight')} · commit {prov.git_commit} · "
        f"seed {spec['seed']}",
        f"family {spec['family']} · canaries: {', '.join(m['methodology'] for m in spec['mix'])}, Poisson "
        f"{tenants.get('canary_rate')} req/s for {tenants.get('duration_s')} s per phase, every response judged",
        "",
        "Each attack runs the same canary trace alone, then beside the attacker. Detected: a canary that was right "
        "alone came back wrong or failed (*caused*), matched another request's reference, or its p99 grew "
        f"{tenants.get('latency_alarm')}x "
        f"and by {tenants.get('latency_alarm_ms')} ms. "
        "Survived: the model still answered a canary correctly after the attack (before any restore).",
        "",
        "Wrong/error alone are the same canaries sent with no attacker: the backend's own baseline.",
        "",
        "| attack | backend | detected | canaries | wrong / error alone | wrong / error with | caused | isolation "
        "| p50 ms without → with | p99 ms without → with | latency factor | attacker sent (failed) | survived "
        "| restore s | clean after | what happened |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record.rows:
        if not r.applies:
            lines.append(f"| {r.attack} | {r.backend} | – | – | – | – | – | – | – | – | – | – | – | – | – | {r.note} |")
            continue
        factor = "–" if r.latency_factor is None else f"{r.latency_factor:.2f}"
        restore = "–" if r.restore_s is None else f"{r.restore_s:.1f}"
        lines.append(
            f"| {r.attack} | {r.backend} | {'**yes**' if r.detected else 'no'} | {r.canaries} "
            f"| {_pair(r.wrong_alone)} | {r.canaries_wrong} / {r.canaries_error} "
            f"| {_pair(r.caused)} | {r.isolation_failures} "
            f"| {_ms(r.p50_ms[0])} → {_ms(r.p50_ms[1])} | {_ms(r.p99_ms[0])} → {_ms(r.p99_ms[1])} "
            f"| {factor} | {r.attacker_requests} ({r.attacker_errors}) | {_yes(r.survived)} | {restore} "
            f"| {_yes(r.clean_after_restore)} | {r.note} |")
    examples = [f"- {r.attack} on {r.backend}: {e}" for r in record.rows for e in r.wrong_examples]
    if examples:
        lines += ["", "Wrong or failed canaries (up to three a row, alone first):", "", *examples]
    return "\n".join(lines) + "\n"


def _pair(counts: tuple[int, int] | None) -> str:
    return "–" if counts is None else f"{counts[0]} / {counts[1]}"
