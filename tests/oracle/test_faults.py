"""The oracle against planted faults, on SmolLM2, Qwen2.5-0.5B and Gemma-3-270M (the last two when
their packages are installed), at fp32 and bf16, on hf and raw_hooks.

Every write methodology with each fault that applies to it (a lost edit, a sign flip, a wrong
layer, a wrong position, an edit at one decoding step only) must be SILENTLY_WRONG at both
precisions; the shipped cell must be SUPPORTED at fp32 and SUPPORTED_DEGRADED at bf16. The
previous oracle (TV <= 0.25 against HF at the cell's dtype) let four of these through at bf16 on
both backends: a lost ablation (TV 0.223), an ablation of the last position only (0.209), and an
edit at the first step only in generation steering (0.128) and in ablation (0.052)
(results/20261202-cpu/fault-matrix.md).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest

from nnbench.backends.engine import Engine
from nnbench.cells import CELLS, CellKey
from nnbench.cells.control import CONTROLS, control_job
from nnbench.cells.generation_steering import generation_steering_hf, generation_steering_raw
from nnbench.cells.steering import steering_generation_hf, steering_generation_raw
from nnbench.evidence import attempt
from nnbench.jobs import CellJob, CellParams
from nnbench.oracle import judge
from nnbench.prompts import FACTS, IOI_PAIRS, Prompt
from nnbench.vocab import State
from tests.conftest import require_model
from tests.oracle import faults

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them

ENGINE = Engine()
STEPS = 3
FAMILIES = ("llama", "qwen2", "gemma3")
"""the real models (the synthetic GPT-2 has its own discrimination tests); qwen2 and gemma3 skip
without their weight packages"""
EXACT_AT_BF16 = {("activation_patching", "interactive", "qwen2")}
"""shipped cells whose bf16 output lands within STRICT of HF fp32, so SUPPORTED rather than
SUPPORTED_DEGRADED (measured: patching moves Qwen2.5-0.5B's IOI pairs by TV 0.80-0.98, to a
nearly one-hot next token that bf16 does not disturb); listed exactly, so a change either way fails"""
FAR_LAYER = {"llama": 20, "qwen2": 20, "gemma3": 16}
"""a layer far enough from 6 that patching there is a different result, within each model"""


def _job(methodology: str, workload: str = "interactive", family: str = "llama") -> CellJob:
    prompts = IOI_PAIRS[:1] if "patching" in methodology else FACTS[:1]
    return CellJob(methodology, family, workload, prompts, CellParams(new_tokens=STEPS))


def _norm(job: CellJob) -> float:
    return CellParams().steering_norm(job.family, job.model)


def _with(job: CellJob, **params) -> CellJob:
    return dataclasses.replace(job, params=dataclasses.replace(job.params, **params))


def _shipped(backend, job: CellJob):
    return backend.run(job, CELLS.get(CellKey(job.methodology, job.family, backend.config.name, job.workload)))


def _body(backend, hf_fn, raw_fn):
    return hf_fn if backend.config.name == "hf" else raw_fn


def _lost(backend, job):  # the edit never landed: the backend's own plain run
    return backend.run(control_job(job), CONTROLS[backend.config.name])


def _clean_twice(backend, job):  # attribution's corrupt run ran the clean prompt
    clean = tuple(dataclasses.replace(p, corrupt=p.text) for p in job.prompts)
    return _shipped(backend, dataclasses.replace(job, prompts=clean))


def _run(backend, job, hf_fn, raw_fn):
    return _body(backend, hf_fn, raw_fn)(backend.model, job)


FAULTS = {
    ("steering", "interactive", "lost edit"): lambda b, j: _shipped(b, _with(j, alpha=0.0)),
    ("steering", "interactive", "sign flip"): lambda b, j: _shipped(b, _with(j, alpha=-_norm(j))),
    ("steering", "interactive", "wrong layer"): lambda b, j: _shipped(b, _with(j, layer=7)),
    ("steering", "interactive", "last position only"): lambda b, j: _run(
        b, j, faults.steering_last_position_hf, faults.steering_last_position_raw),
    ("generation_steering", "interactive", "lost edit"): lambda b, j: _shipped(b, _with(j, alpha=0.0)),
    ("generation_steering", "interactive", "sign flip"): lambda b, j: _shipped(b, _with(j, alpha=-_norm(j))),
    ("generation_steering", "interactive", "wrong layer"): lambda b, j: _shipped(b, _with(j, layer=7)),
    ("generation_steering", "interactive", "first step only"): lambda b, j: _run(
        b, j, steering_generation_hf, steering_generation_raw),
    ("zero_ablation", "interactive", "lost edit"): _lost,
    ("zero_ablation", "interactive", "wrong layer"): lambda b, j: _shipped(b, _with(j, layer=7)),
    ("zero_ablation", "interactive", "last position only"): lambda b, j: _run(
        b, j, faults.ablation_last_position_hf, faults.ablation_last_position_raw),
    ("zero_ablation", "generation", "first step only"): lambda b, j: _run(
        b, j, faults.ablation_first_step_hf, faults.ablation_first_step_raw),
    ("activation_patching", "interactive", "lost edit"): _lost,
    ("activation_patching", "interactive", "sign flip"): lambda b, j: _run(
        b, j, partial(faults.patching_fault_hf, mode="sign"), partial(faults.patching_fault_raw, mode="sign")),
    # on SmolLM2 the name token carries the same information from layer 4 to 10 (patching any of
    # them gives TV <= 0.007 from layer 6 on all four pairs): that band is one result, not a fault
    ("activation_patching", "interactive", "wrong layer"): lambda b, j: _shipped(b, _with(j, layer=FAR_LAYER[j.family])),
    ("activation_patching", "interactive", "wrong position"): lambda b, j: _run(
        b, j, partial(faults.patching_fault_hf, mode="position"), partial(faults.patching_fault_raw, mode="position")),
    ("attribution_patching", "interactive", "clean prompt as corrupt"): _clean_twice,
}
CORRECT = sorted({(m, w) for m, w, _ in FAULTS})
PRECISIONS = [("hf", "float32"), ("hf", "bfloat16"), ("raw_hooks", "float32"), ("raw_hooks", "bfloat16")]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend,dtype", PRECISIONS, ids=[f"{b}-{d}" for b, d in PRECISIONS])
@pytest.mark.parametrize("case", list(FAULTS), ids=lambda c: f"{c[0]}/{c[1]}/{c[2]}")
def test_a_planted_fault_is_silently_wrong(case, backend, dtype, family, book, pool):
    require_model(family)
    methodology, workload, _ = case
    job = _job(methodology, workload, family)
    config = ENGINE.backend_config(backend, family, dtype)
    output = attempt(lambda: FAULTS[case](pool.get(config), job))
    verdict = judge(output, book.evidence(job, config))
    assert verdict.state == State.SILENTLY_WRONG, verdict.note


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend,dtype", PRECISIONS, ids=[f"{b}-{d}" for b, d in PRECISIONS])
@pytest.mark.parametrize("methodology,workload", CORRECT, ids=[f"{m}/{w}" for m, w in CORRECT])
def test_the_shipped_cell_holds_at_both_precisions(methodology, workload, backend, dtype, family, book, pool):
    require_model(family)
    job = _job(methodology, workload, family)
    config = ENGINE.backend_config(backend, family, dtype)
    verdict = judge(_shipped(pool.get(config), job), book.evidence(job, config))
    exact = dtype == "float32" or (methodology, workload, family) in EXACT_AT_BF16
    expected = State.SUPPORTED if exact else State.SUPPORTED_DEGRADED
    assert verdict.state == expected, verdict.note
    assert verdict.effect.certifying == len(job.prompts)


def test_an_intervention_too_small_to_tell_is_no_reference(book, pool):
    """A steering vector of norm 0.5 moves the prompt by far less than 10x STRICT: the row cannot
    certify anything, so it says so instead of calling a possibly lost edit SUPPORTED."""
    job = dataclasses.replace(_with(_job("steering"), alpha=0.5), prompts=(Prompt(FACTS[0].text),))
    config = ENGINE.backend_config("raw_hooks", "llama", "float32")
    verdict = judge(_shipped(pool.get(config), job), book.evidence(job, config))
    assert verdict.state == State.NO_REFERENCE and "10x STRICT" in verdict.note


def test_generation_steering_bodies_are_distinct():
    """The first-step fault borrows steering's generation cell: it must not be the shipped body."""
    assert steering_generation_hf is not generation_steering_hf and steering_generation_raw is not generation_steering_raw
