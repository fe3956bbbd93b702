"""The v1 reader: a version-1 result file as the version-2 object it would have been.

v1 wrote rows as loose dicts whose fields grew session by session (``variant`` from 2026-11-23,
``versus_matched`` renamed ``versus_precision``, ``effect``/``floor`` from 2026-12-02, the load
steps' ``phases_s`` and ``isolation_power`` later than their first runs). Every committed v1 file
is upgraded here, field by field, with the value the writer of the time meant: a field that did not
exist yet becomes the "not measured" value of its type (None, empty), never a made-up measurement.
The upgraded object is then decoded exactly as strictly as a v2 file.
"""

from __future__ import annotations

from typing import Any


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    kind = data.get("kind")
    rows = [ROW_UPGRADES[kind](dict(r)) for r in data.get("rows", [])] if kind in ROW_UPGRADES else data.get("rows")
    upgraded = dict(data) | {"version": 2, "rows": rows, "floors": [_floor(f) for f in data.get("floors", [])]}
    upgraded["summary"] = _summary(kind, data.get("summary") or {}, rows or [])
    return upgraded


def _figures(f: dict | None) -> dict | None:
    if f is None:
        return None
    return {"top1_near": f.get("top1"), "diverged_at_step": None, "prompt_tv": [], **f}


def _timing(t: dict | None) -> dict | None:
    return None if t is None else {"device_used_bytes": None, **t}


def _floor(f: dict) -> dict:
    return {k: v for k, v in f.items() if k != "device"} if "error" in f else f


def _cell(r: dict) -> dict:
    r.setdefault("variant", "")
    r["versus_precision"] = _figures(r.pop("versus_matched", None) or r.get("versus_precision"))
    r["versus_reference"] = _figures(r.get("versus_reference"))
    r.setdefault("effect", None)
    r["floor"] = _floor(r["floor"]) if r.get("floor") else None
    for name in ("timing", "baseline", "plain_engine"):
        r[name] = _timing(r.get(name))
    return r


def _probe(r: dict) -> dict:
    r.setdefault("dtype", "float32")  # v1 probes before 2026-11-24 ran at fp32 only
    r.setdefault("label", f"{r['primitive']}:{r['module_kind']}")
    r.setdefault("error", None)
    r["versus_precision"] = _figures(r.pop("versus_matched", None) or r.get("versus_precision"))
    r["versus_reference"] = _figures(r.get("versus_reference"))
    r.setdefault("effect", None)
    return r


def _step(r: dict) -> dict:
    # good_requests was first written on 2026-11-24; before it, goodput × window is the same count
    r.setdefault("good_requests", round(r["goodput_rps"] * r["window_s"]))
    r.setdefault("interrupted", False)
    r.setdefault("phases_s", None)
    r.setdefault("isolation_power", None)
    return r


def _part(r: dict) -> dict:
    return r


ROW_UPGRADES = {"sweep": _cell, "micro": _probe, "loadgen": _step, "suite": _part}


def _summary(kind: Any, summary: dict, rows: list[dict]) -> dict | None:
    """v1 wrote ``{}`` until a run finished (and always, for a load run without a knee search)."""
    if kind == "sweep":
        if summary:
            return summary
        states = {s: 0 for s in ("SUPPORTED", "SUPPORTED_DEGRADED", "SILENTLY_WRONG", "ERROR", "NO_REFERENCE")}
        for r in rows:
            states[r["state"]] += 1
        return {"cells": len(rows), "states": states}
    if kind == "micro":
        return summary or {"probes": len(rows)}
    if kind == "loadgen":
        return {"knee_rps": summary.get("knee_rps", {})}
    if kind == "suite":
        return summary or None
    return summary
