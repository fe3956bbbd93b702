"""The peer system TransformerLens (``transformer_lens``) on the same oracle as nnsight, on real models.

Its cells must agree with the raw-hooks twins at fp32, hold at both precisions, and be caught when
a fault is planted in them, including the TransformerLens habit that loses an edit (a hook that
rebinds its argument and returns nothing). What TransformerLens itself gets wrong is pinned too,
so a fixed release shows up here: left padding on GPT-2's absolute positions.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from nnbench.backends import BackendConfig
from nnbench.backends.engine import Engine
from nnbench.cells import CELLS, CellKey
from nnbench.cells.common import steering_vector
from nnbench.cells.control import CONTROLS, control_job
from nnbench.cells.lens import logits_with_hooks, resid_post
from nnbench.evidence import attempt
from nnbench.jobs import CellJob, CellOutput, CellParams, per_prompt
from nnbench.offline.grid import prompts_for
from nnbench.oracle import compare, judge
from nnbench.oracle.thresholds import STRICT
from nnbench.prompts import FACTS, IOI_PAIRS
from nnbench.vocab import State
from tests.conftest import require_model

pytest.importorskip("transformer_lens", reason="the [peers] extra: pip install -e '.[peers]'")
pytestmark = pytest.mark.slow

ENGINE = Engine()
TL_KEYS = [k for k in CELLS if k.backend == "transformer_lens"]


def _twin_job(key: CellKey) -> CellJob:
    return CellJob(key.methodology, key.family, key.workload, prompts_for(key.methodology, key.workload, 2))


@pytest.mark.parametrize("key", [k for k in TL_KEYS if not (k.family == "gpt2" and k.workload == "batched")], ids=str)
def test_a_transformer_lens_cell_agrees_with_its_raw_hooks_twin(key, pool):
    """Within STRICT on the four families (bit for bit on SmolLM2, Qwen2.5 and Gemma-3; TV <= 2e-6
    on the synthetic GPT-2, measured); GPT-2 batched is the exception pinned below."""
    require_model(key.family)
    job = _twin_job(key)
    tl = pool.get(BackendConfig("transformer_lens", key.family)).run(job, CELLS.get(key))
    twin = CellKey(key.methodology, key.family, "raw_hooks", key.workload)
    raw = pool.get(BackendConfig("raw_hooks", key.family)).run(job, CELLS.get(twin))
    assert compare(tl, raw).within(STRICT), compare(tl, raw)


def test_left_padding_on_gpt2_is_silently_wrong_in_transformer_lens(book, pool):
    """TransformerLens 4.3's bridge left-pads without shifting GPT-2's learned positions (nnsight
    and the raw hooks give each row its own positions): the batched steering cell, written as its
    docs suggest, is wrong on every padded prompt, and the oracle says so."""
    job = CellJob("steering", "gpt2", "batched", prompts_for("steering", "batched", 4))
    config = ENGINE.backend_config("transformer_lens", "gpt2", "float32")
    verdict = judge(pool.get(config).run(job, CELLS.get(CellKey("steering", "gpt2", "transformer_lens", "batched"))),
                    book.evidence(job, config))
    assert verdict.state == State.SILENTLY_WRONG, verdict.note


def _job(methodology: str) -> CellJob:
    prompts = IOI_PAIRS[:1] if methodology == "activation_patching" else FACTS[:1]
    return CellJob(methodology, "llama", "interactive", prompts, CellParams())


def _with(job: CellJob, **params) -> CellJob:
    return dataclasses.replace(job, params=dataclasses.replace(job.params, **params))


def _shipped(backend, job: CellJob) -> CellOutput:
    return backend.run(job, CELLS.get(CellKey(job.methodology, job.family, "transformer_lens", job.workload)))


def _steering_without_return(model, job: CellJob) -> CellOutput:
    """The TransformerLens slip: the hook rebinds ``resid`` and returns None, so the bridge keeps
    the original activation and the edit is lost without an error."""
    vector = steering_vector(model.cfg.d_model, job.params, job.family, job.model)

    def add(resid, hook):
        resid = resid + vector.to(resid.device, resid.dtype)  # noqa: F841 (the fault: never returned)

    logits = logits_with_hooks(model, job, job.texts, (resid_post(job.params.layer), add))
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


FAULTS = {
    ("steering", "lost edit"): lambda b, j: _shipped(b, _with(j, alpha=0.0)),
    ("steering", "sign flip"): lambda b, j: _shipped(b, _with(j, alpha=-CellParams().steering_norm("llama"))),
    ("steering", "wrong layer"): lambda b, j: _shipped(b, _with(j, layer=7)),
    ("steering", "hook returns nothing"): lambda b, j: b.run(j, dataclasses.replace(
        CELLS.get(CellKey("steering", "llama", "transformer_lens", "interactive")), fn=_steering_without_return)),
    ("zero_ablation", "lost edit"): lambda b, j: b.run(control_job(j), CONTROLS["transformer_lens"]),
    ("zero_ablation", "wrong layer"): lambda b, j: _shipped(b, _with(j, layer=7)),
    ("activation_patching", "lost edit"): lambda b, j: b.run(control_job(j), CONTROLS["transformer_lens"]),
    ("activation_patching", "wrong layer"): lambda b, j: _shipped(b, _with(j, layer=20)),
}
DTYPES = ("float32", "bfloat16")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(FAULTS), ids=lambda c: f"{c[0]}/{c[1]}")
def test_a_fault_planted_in_a_transformer_lens_cell_is_silently_wrong(case, dtype, book, pool):
    job = _job(case[0])
    config = ENGINE.backend_config("transformer_lens", "llama", dtype)
    verdict = judge(attempt(lambda: FAULTS[case](pool.get(config), job)), book.evidence(job, config))
    assert verdict.state == State.SILENTLY_WRONG, verdict.note


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("methodology", sorted({m for m, _ in FAULTS}))
def test_the_shipped_transformer_lens_cell_holds_at_both_precisions(methodology, dtype, book, pool):
    job = _job(methodology)
    config = ENGINE.backend_config("transformer_lens", "llama", dtype)
    verdict = judge(_shipped(pool.get(config), job), book.evidence(job, config))
    assert verdict.state == (State.SUPPORTED if dtype == "float32" else State.SUPPORTED_DEGRADED), verdict.note
    assert verdict.effect.certifying == len(job.prompts)


def test_the_bridge_keeps_no_hook_after_a_cell_that_raised(pool):
    """``run`` resets the bridge's hooks even when a cell fails mid-forward."""
    backend = pool.get(BackendConfig("transformer_lens", "llama"))

    def fails_in_the_hook(model, job):
        def boom(resid, hook):
            raise RuntimeError("planted")

        return model.run_with_hooks(list(job.texts), fwd_hooks=[(resid_post(3), boom)], reset_hooks_end=False)

    with pytest.raises(RuntimeError, match="planted"):
        backend.run(_job("steering"), dataclasses.replace(
            CELLS.get(CellKey("steering", "llama", "transformer_lens", "interactive")), fn=fails_in_the_hook))
    assert not any(hook_point.fwd_hooks for hook_point in backend.model.hook_dict.values())
    assert torch.equal(*(_shipped(backend, _job("steering")).per_prompt[0].dists["next_token"] for _ in range(2)))


def test_a_missing_transformer_lens_is_refused_with_its_install_command():
    """A machine without the [peers] extra (simulated: the import is made to fail) gets one line."""
    code = ("import sys; sys.modules['transformer_lens'] = None\n"
            "from nnbench.backends import BackendConfig, open_backend\n"
            "try:\n    open_backend(BackendConfig('transformer_lens', 'llama'))\n"
            "except RuntimeError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "backend transformer_lens needs transformer-lens (pip install -e '.[peers]')" in done.stdout, done.stderr
