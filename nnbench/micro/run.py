"""The probe map: primitive × module kind × family × backend, each probe judged by the oracle
against the same probe through nnsight on HF."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from nnbench import provenance
from nnbench.backends.engine import Engine
from nnbench.backends.pool import BackendPool
from nnbench.cells.registry import CellEntry
from nnbench.evidence import EvidenceBook, attempt
from nnbench.jobs import CellJob
from nnbench.micro.probes import LEVEL, MODULE_PATHS, Primitive, Probe, applies, run_hooks, run_nnsight, vllm_probe
from nnbench.oracle import EffectEvidence, Evidence, Failure, ReferenceStore, judge
from nnbench.prompts import FACTS, Prompt
from nnbench.provision import cache_root
from nnbench.records import ProbeRow, ProbeSummary, verdict_fields
from nnbench.results import ProbeRecord, RunRecord, finishing, write_record
from nnbench.validate import SpecError
from nnbench.verdict import probe_verdict
from nnbench.vocab import BackendName, Family, Methodology, Workload


def _through_backend(backend, probe: Probe):
    """A vLLM probe is a one-prompt vLLM cell: the backend runs it as it runs any cell."""
    job = CellJob(Methodology.STEERING, probe.family, Workload.INTERACTIVE, (Prompt(probe.text),), model=probe.model)
    return backend.run(job, CellEntry(partial(vllm_probe, probe=probe), ()))


RUNNERS: dict[BackendName, Callable[[Any, Probe], Any]] = {
    BackendName.HF: lambda backend, probe: run_nnsight(backend.model, probe),
    BackendName.RAW_HOOKS: lambda backend, probe: run_hooks(backend.model, probe),
    BackendName.VLLM_SYNC: _through_backend,
    BackendName.VLLM_ASYNC: _through_backend,
    BackendName.VLLM_SERVE: _through_backend,
}

REFERENCE_DTYPE = "float32"


def run_micro(backends: tuple[BackendName, ...], families: tuple[Family, ...], out: Path | None = None,
              pool: BackendPool | None = None, on_progress: Callable[[int, int, str], None] | None = None,
              engine: Engine | None = None, store: ReferenceStore | None = None, model: str = "") -> RunRecord:
    """Every probe of ``families`` on ``backends`` at ``engine.dtype``, judged against HF at float32
    on ``engine.device`` (and, below float32, against HF at that dtype too, to tell precision from
    error); ``model``: a built-in model's name or a directory of the one family given."""
    engine = engine or Engine()
    device, dtype = engine.device, engine.dtype
    for backend in backends:
        if backend not in RUNNERS:
            raise SpecError(f"backends: no probes for {str(backend)!r}; allowed: {', '.join(RUNNERS)}")
    spec = {"backends": list(backends), "families": list(families), "device": device, "dtype": dtype}
    if model:
        spec["model"] = model
    record: ProbeRecord = RunRecord("micro", spec, provenance.collect(device, 0, spec))
    owned, pool = pool is None, pool or BackendPool()
    book = EvidenceBook(pool, store or ReferenceStore(cache_root() / "references"), device, engine.backend_config)
    probes = [Probe(p, kind, family, FACTS[0].text, model=model) for family in families for kind in MODULE_PATHS[family]
              for p in Primitive if applies(p, kind)]
    save = (lambda: write_record(record, out)) if out else (lambda: None)
    try:
        with finishing(record, save, probe_verdict):
            for index, probe in enumerate(probes):
                if on_progress:
                    on_progress(index, len(probes), f"{probe.family} {probe.label}")
                record.rows.extend(_judge_probe(probe, backends, pool, engine, book))
                record.floors = book.floor_rows()
                save()
            record.summary = ProbeSummary(len(record.rows))
    finally:
        if owned:
            pool.close()
    return record


def _run(pool: BackendPool, backend: BackendName, probe: Probe, engine: Engine, dtype: str):
    def go():
        with torch.no_grad():
            return RUNNERS[backend](pool.get(engine.backend_config(backend, probe.family, dtype, probe.model)), probe)

    return attempt(go)


def _judge_probe(probe: Probe, backends: tuple[BackendName, ...], pool: BackendPool, engine: Engine,
                 book: EvidenceBook) -> list[ProbeRow]:
    """Every backend's probe against HF's. A write probe (Level 1) is also judged by its effect:
    its output against the backend's own plain run of the probe's text."""
    dtype = engine.dtype
    reference = _run(pool, BackendName.HF, probe, engine, REFERENCE_DTYPE)
    matched_cache: list = []

    def matched():  # HF at the probe's precision, computed once and only if needed
        if not matched_cache:
            matched_cache.append(_run(pool, BackendName.HF, probe, engine, dtype))
        return matched_cache[0]

    plain = CellJob(Methodology.STEERING, probe.family, Workload.INTERACTIVE, (Prompt(probe.text),), model=probe.model)
    rows = []
    for backend in backends:
        config = engine.backend_config(backend, probe.family, dtype, probe.model)
        same_as_reference = backend == BackendName.HF and dtype == REFERENCE_DTYPE
        output = reference if same_as_reference else _run(pool, backend, probe, engine, dtype)
        effect = EffectEvidence("next_token", partial(book.control, config, plain), book.hf_control(plain)) \
            if LEVEL[probe.primitive] == 1 else None
        below = dtype != REFERENCE_DTYPE
        verdict = judge(output, Evidence(reference, matched if below else None,
                                         book.floor(config) if below and not isinstance(output, Failure) else None,
                                         effect))
        rows.append(ProbeRow(
            primitive=str(probe.primitive), level=LEVEL[probe.primitive], module_kind=probe.module_kind,
            module_path=probe.path, family=probe.family, backend=backend, dtype=dtype, label=probe.label,
            **verdict_fields(verdict),
        ))
    return rows
