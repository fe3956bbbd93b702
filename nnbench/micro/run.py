"""The probe map: primitive × module kind × family × backend, each probe judged by the oracle
against the same probe through nnsight on HF."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nnbench import provenance
from nnbench.backends import BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.micro.probes import LEVEL, MODULE_PATHS, Primitive, Probe, run_hooks, run_nnsight
from nnbench.offline.run import attempt
from nnbench.oracle import judge
from nnbench.prompts import FACTS
from nnbench.results import RunRecord, finishing, write_record
from nnbench.vocab import BackendName, Family

RUNNERS: dict[BackendName, Callable[[Any, Probe], Any]] = {
    BackendName.HF: lambda backend, probe: run_nnsight(backend.model, probe),
    BackendName.RAW_HOOKS: lambda backend, probe: run_hooks(backend.model, probe),
}
"""vLLM probes are not written yet: their columns come with the vLLM backends' probe code"""


def run_micro(backends: tuple[BackendName, ...], families: tuple[Family, ...], out: Path | None = None,
              pool: BackendPool | None = None, on_progress: Callable[[int, int, str], None] | None = None) -> RunRecord:
    for backend in backends:
        if backend not in RUNNERS:
            raise ValueError(f"backends: no probes for {str(backend)!r} yet; allowed: {', '.join(RUNNERS)}")
    spec = {"backends": list(backends), "families": list(families)}
    record = RunRecord("micro", spec, provenance.collect("cpu", 0, spec))
    owned, pool = pool is None, pool or BackendPool()
    probes = [Probe(p, kind, family, FACTS[0].text) for family in families for kind in MODULE_PATHS[family] for p in Primitive]
    save = (lambda: write_record(record, out)) if out else (lambda: None)
    try:
        with finishing(record, save):
            for index, probe in enumerate(probes):
                if on_progress:
                    on_progress(index, len(probes), f"{probe.family} {probe.label}")
                record.rows.extend(_judge_probe(probe, backends, pool))
                save()
            record.summary = {"probes": len(record.rows)}
    finally:
        if owned:
            pool.close()
    return record


def _run(pool: BackendPool, backend: BackendName, probe: Probe):
    def go():
        with torch.no_grad():
            return RUNNERS[backend](pool.get(BackendConfig(backend, probe.family)), probe)

    return attempt(go)


def _judge_probe(probe: Probe, backends: tuple[BackendName, ...], pool: BackendPool) -> list[dict]:
    reference = _run(pool, BackendName.HF, probe)
    rows = []
    for backend in backends:
        output = reference if backend == BackendName.HF else _run(pool, backend, probe)
        verdict = judge(output, reference)
        rows.append({
            "primitive": str(probe.primitive), "level": LEVEL[probe.primitive], "module_kind": probe.module_kind,
            "module_path": probe.path, "family": str(probe.family), "backend": str(backend),
            "state": str(verdict.state), "note": verdict.note,
            "versus_reference": verdict.versus_reference.as_dict() if verdict.versus_reference else None,
        })
    return rows
