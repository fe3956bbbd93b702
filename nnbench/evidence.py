"""What the oracle judges a cell's output against, computed on a backend pool.

One place computes, for the sweep, the probes and the load generator alike:

* the HF reference of a job (its HF cell) at fp32 and at the cell's own dtype, cached on disk;
* the HF unintervened run of a write job (``cells.control``) at fp32, cached on disk;
* the cell backend's own unintervened run of the same job (memoised for the run);
* the noise floor of each (family, backend, dtype, device), measured once per run on the
  built-in prompts in every workload form, and kept for the result file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from nnbench.backends import Backend, BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.cells.control import CONTROLS, EFFECT_DIST, control_job, writes
from nnbench.cells.registry import CELLS, CellKey, CellRegistry
from nnbench.jobs import CellJob, CellOutput, CellParams
from nnbench.oracle import (
    ControlSet,
    EffectEvidence,
    Evidence,
    Failure,
    NoiseFloor,
    Outcome,
    ReferenceStore,
    measure_floor,
    reference_key,
)
from nnbench.oracle.compare import compare
from nnbench.oracle.effect import Effect, measure
from nnbench.oracle.floors import REFERENCE_DTYPE
from nnbench.oracle.thresholds import STRICT
from nnbench.prompts import FACTS, IOI_PAIRS, Prompt
from nnbench.provision import ensure_model
from nnbench.records import FloorFailure, FloorRow
from nnbench.vocab import BackendName, Family, Methodology, Workload

FP32_CHECKED = (BackendName.RAW_HOOKS, BackendName.TRANSFORMER_LENS, BackendName.PYVENE)
"""backends whose below-fp32 floor is measured only after their fp32 unintervened runs are checked
against HF's (in-process copies on the same device, cheap); the vLLM backends would need a second,
fp32 engine each, and are not checked this way yet"""

T = TypeVar("T")
ConfigOf = Callable[[BackendName, Family, str, str], BackendConfig]
"""(backend, family, dtype, model) → its config: ``Engine.backend_config``"""


def attempt(fn: Callable[[], T]) -> T | Failure:
    """Run ``fn``; an exception becomes a ``Failure`` (an outcome, not a crash)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every failure is recorded with its type and message
        return Failure.from_exception(exc)


def own_effect(backend: Backend, job: CellJob, registry: CellRegistry = CELLS) -> Effect:
    """How far ``job``'s write moves each of its prompts on ``backend``, against the same backend's
    unintervened run, with the backend as its own reference (cosine 1, ratio 1): the prompts' sizes
    and margins, which is what calibrating a strength or a prompt set reads."""
    config = backend.config
    output = backend.run(job, registry.get(CellKey(job.methodology, job.family, config.name, job.workload)))
    control = backend.run(control_job(job), CONTROLS[config.name])
    return measure(output, control, output, control, EFFECT_DIST[job.methodology], STRICT.max_tv)


def floor_jobs(family: Family, params: CellParams, model: str = "") -> list[CellJob]:
    """The unintervened runs a floor is the worst of: every built-in text on its own (factual
    prompts, both halves of every IOI pair), a left-padded batch of each kind, and a greedy
    generation of each kind."""
    corrupt = [p.corrupt for p in IOI_PAIRS if p.corrupt is not None]  # every IOI pair has one
    texts = [p.text for p in FACTS] + [p.text for p in IOI_PAIRS] + corrupt

    def job(workload: Workload, prompts: list[str]) -> CellJob:
        return CellJob(Methodology.STEERING, family, workload, tuple(Prompt(t) for t in prompts), params, model)

    return ([job(Workload.INTERACTIVE, [t]) for t in texts]
            + [job(Workload.BATCHED, [p.text for p in FACTS[:4]]), job(Workload.BATCHED, corrupt)]
            + [job(Workload.GENERATION, [FACTS[0].text]), job(Workload.GENERATION, corrupt[:1])])


class EvidenceBook:
    """References, controls and floors of one run."""

    def __init__(self, pool: BackendPool, store: ReferenceStore, device: str, config_of: ConfigOf,
                 registry: CellRegistry = CELLS, floor_params: CellParams | None = None) -> None:
        """``registry``: where the HF reference cells come from (tests judge planted cells against
        the shipped references); ``floor_params``: the generation length of the floor's runs."""
        self.pool, self.store, self.device, self.config_of = pool, store, device, config_of
        self.registry, self.floor_params = registry, floor_params or CellParams()
        self._controls: dict[tuple[BackendConfig, CellJob], Outcome] = {}
        self._hf: dict[tuple[str, CellJob, str], Outcome] = {}
        """what was read from the disk cache (or computed) this run: checks look up, never reload"""
        self.floors: dict[BackendConfig, NoiseFloor | Failure] = {}

    def _hf_backend(self, job: CellJob, dtype: str):
        return self.pool.get(self.config_of(BackendName.HF, job.family, dtype, job.model))

    def reference(self, job: CellJob, dtype: str = REFERENCE_DTYPE) -> Outcome:
        """The job's HF cell at ``dtype``, from the cache if present."""
        key = CellKey(job.methodology, job.family, BackendName.HF, job.workload)
        if key not in self.registry:
            return Failure("NotImplementedError", f"no HF cell registered for {key}")
        if ("reference", job, dtype) not in self._hf:
            entry = self.registry.get(key)
            model_hash = ensure_model(job.family, job.model).content_hash
            cache_key = reference_key(job, model_hash, dtype, self.device, entry.fn)
            self._hf["reference", job, dtype] = self.store.get_or_compute(
                cache_key, model_hash, lambda: attempt(lambda: self._hf_backend(job, dtype).run(job, entry)))
        return self._hf["reference", job, dtype]

    def hf_control(self, job: CellJob, dtype: str = REFERENCE_DTYPE, cached: bool = True) -> Outcome:
        """HF's unintervened run of what ``job`` reads (``job`` may be a write job or a plain one)."""
        plain = control_job(job) if writes(job.methodology) else job
        entry = CONTROLS[BackendName.HF]
        def run() -> Outcome:
            return attempt(lambda: self._hf_backend(plain, dtype).run(plain, entry))

        if not cached:
            return run()
        if ("control", plain, dtype) not in self._hf:
            model_hash = ensure_model(job.family, job.model).content_hash
            cache_key = reference_key(plain, model_hash, dtype, self.device, entry.fn, kind="control")
            self._hf["control", plain, dtype] = self.store.get_or_compute(cache_key, model_hash, run)
        return self._hf["control", plain, dtype]

    def control(self, config: BackendConfig, job: CellJob) -> Outcome:
        """The cell backend's own unintervened run of what ``job`` reads, once per run. The null
        backend answers HF's outputs for everything, so its unintervened run is HF's."""
        if config.name == BackendName.NULL:
            return self.hf_control(job, config.dtype)
        plain = control_job(job) if writes(job.methodology) else job
        if (config, plain) not in self._controls:
            self._controls[config, plain] = attempt(lambda: self.pool.get(config).run(plain, CONTROLS[config.name]))
        return self._controls[config, plain]

    def floor(self, config: BackendConfig) -> NoiseFloor | Failure:
        """The backend's noise floor at its dtype, measured on first use."""
        if config not in self.floors:
            self.floors[config] = attempt(lambda: self._measure_floor(config))
        return self.floors[config]

    def _measure_floor(self, config: BackendConfig) -> NoiseFloor:
        below = config.dtype != REFERENCE_DTYPE
        jobs = floor_jobs(config.family, self.floor_params, config.model)
        if below and config.name in FP32_CHECKED:
            self._refuse_a_floor_that_is_not_precision(config, jobs)
        sets = []
        for job in jobs:
            runs = [self.control(config, job), self.hf_control(job)]
            if below:
                runs += [self.hf_control(job, config.dtype), self.hf_control(job, config.dtype, cached=False)]
            outputs = [_output(run) for run in runs]
            sets.append(ControlSet(*outputs))
        return measure_floor(config.family, config.name, config.dtype, self.device, sets)

    def _refuse_a_floor_that_is_not_precision(self, config: BackendConfig, jobs: list[CellJob]) -> None:
        """A floor is precision noise only if the backend's unintervened runs agree with HF's at
        fp32: otherwise the floor measures a backend error, and 3x it lets wrong cells through (the
        synthetic GPT-2's left-padded batch on transformer_lens sat TV 0.98 from HF at fp32 and at
        bf16 alike, a bf16 allowance of 2.94 for every cell of that backend)."""
        at_fp32 = dataclasses.replace(config, dtype=REFERENCE_DTYPE)
        for job in jobs:
            tv = compare(_output(self.control(at_fp32, job)), _output(self.hf_control(job))).max_tv
            if tv > STRICT.max_tv:
                raise RuntimeError(
                    f"{config.name}'s unintervened {job.workload} run of {len(job.prompts)} prompt(s) differs from "
                    f"HF's already at float32 (TV {tv:.3g}): a {config.dtype} floor measured on it would count "
                    "that difference as precision noise")

    def evidence(self, job: CellJob, config: BackendConfig) -> Evidence:
        """Everything ``job``'s output on ``config`` is judged against."""
        below = config.dtype != REFERENCE_DTYPE
        effect = None
        if writes(job.methodology):
            effect = EffectEvidence(EFFECT_DIST[job.methodology], lambda: self.control(config, job), self.hf_control(job))
        reference = self.reference(job)
        return Evidence(
            reference=reference,
            matched=(lambda: self.reference(job, config.dtype)) if below else None,
            floor=self.floor(config) if below else None,
            effect=effect,
            unaligned_steps=job.generates and not isinstance(reference, Failure)
            and all(p.steps == 1 for p in reference.per_prompt),
        )

    def floor_rows(self) -> list[FloorRow | FloorFailure]:
        """Every floor measured so far, for the result file."""
        return [FloorRow.of(f) if isinstance(f, NoiseFloor) else FloorFailure(c.family, c.name, c.dtype, str(f))
                for c, f in self.floors.items()]


def _output(outcome: Outcome) -> CellOutput:
    if isinstance(outcome, Failure):
        raise RuntimeError(f"unintervened run for the noise floor failed: {outcome}")
    return outcome
