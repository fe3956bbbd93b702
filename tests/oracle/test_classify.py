"""Each state arises for its own reason, on real models."""


import math

import pytest
import torch

from nnbench.cells import CellRegistry
from nnbench.cells.common import hidden_size, steering_vector
from nnbench.cells.hooks import forward_hooks
from nnbench.cells.logit_lens import logit_lens_hf
from nnbench.cells.steering import steering_hf, steering_raw
from nnbench.families import Modules
from nnbench.jobs import CellOutput, PromptOutput, per_prompt
from nnbench.offline.run import run_sweep
from nnbench.offline.spec import SweepSpec
from nnbench.oracle import Evidence, Failure, NoiseFloor, compare, judge
from nnbench.oracle.thresholds import STRICT
from nnbench.vocab import State

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them


def _one(registry, pool, store, **spec):
    base = dict(families=["llama"], workloads=["interactive"], warmup=0, trials=1)
    return run_sweep(SweepSpec.from_mapping(base | spec), registry=registry, store=store, pool=pool,
                     references=registry).rows[0]


def test_planted_wrong_layer_runs_cleanly_and_is_silently_wrong(pool, store):
    """A raw-hooks steering cell that adds the vector one layer late: no error, wrong numbers."""
    registry = CellRegistry()
    registry.cell("steering", "llama", "hf", "interactive")(steering_hf)

    @registry.cell("steering", "llama", "raw_hooks", "interactive")
    def steering_one_layer_late(model, job):
        mods = Modules.of(model.module, job.family)
        vector = steering_vector(hidden_size(model.config), job.params, job.family)
        with forward_hooks((mods.layers[job.params.layer + 1], lambda m, a, out: out + vector)):
            logits = model.forward(job.texts).logits
        return per_prompt({"next_token": logits[:, -1].softmax(-1)})

    row = _one(registry, pool, store, methodologies=["steering"], backends=["raw_hooks"])
    assert row.state == State.SILENTLY_WRONG and row.error is None
    assert row.versus_reference.max_tv > 0.05  # ten times what SUPPORTED allows


def test_the_correct_twin_is_supported(pool, store):
    registry = CellRegistry()
    registry.cell("steering", "llama", "hf", "interactive")(steering_hf)
    registry.cell("steering", "llama", "raw_hooks", "interactive")(steering_raw)
    row = _one(registry, pool, store, methodologies=["steering"], backends=["raw_hooks"])
    assert row.state == State.SUPPORTED and row.timing.median_s > 0


def test_a_cell_that_raises_is_error_with_type_and_message(pool, store):
    registry = CellRegistry()
    registry.cell("steering", "llama", "hf", "interactive")(steering_hf)

    @registry.cell("steering", "llama", "raw_hooks", "interactive")
    def steering_on_missing_layer(model, job):
        Modules.of(model.module, job.family).layers[99]

    row = _one(registry, pool, store, methodologies=["steering"], backends=["raw_hooks"])
    assert row.state == State.ERROR
    assert row.error.type == "IndexError" and "99" in row.error.message


def test_failed_hf_control_is_no_reference(pool, store):
    """The HF control reads a layer after a later one: nnsight raises OutOfOrderError."""
    registry = CellRegistry()

    @registry.cell("logit_lens", "llama", "hf", "interactive")
    def lens_out_of_order(model, job):
        mods = Modules.of(model, job.family)
        with model.trace(job.texts):
            late = mods.layers[10].output.save()
            early = mods.layers[2].output.save()
        return per_prompt({"lens": torch.stack([early, late], 1)[:, :, -1].softmax(-1)})

    registry.cell("logit_lens", "llama", "raw_hooks", "interactive")(lambda m, j: None)
    row = _one(registry, pool, store, methodologies=["logit_lens"], backends=["raw_hooks"])
    assert row.state == State.NO_REFERENCE
    assert "OutOfOrderError" in row.note


def test_bf16_cell_is_degraded_after_a_matched_precision_rerun(pool, store):
    registry = CellRegistry()
    registry.cell("logit_lens", "gpt2", "hf", "batched")(logit_lens_hf)
    row = _one(registry, pool, store, methodologies=["logit_lens"], families=["gpt2"], backends=["hf"],
               workloads=["batched"], dtypes=["bfloat16"], batch_size=2)
    assert row.state == State.SUPPORTED_DEGRADED
    assert row.versus_reference.max_tv > 0.005  # diverged from fp32 ...
    assert row.versus_precision.max_tv < 1e-6  # ... only through precision
    assert row.floor.reference_dtype == "bfloat16" and row.floor.versus_fp32 > 0.005


def _output(probs: torch.Tensor, steps: int = 1, values: dict | None = None) -> CellOutput:
    return CellOutput((PromptOutput({"next_token": probs}, values or {}, steps),))


def _floor(tv: float) -> NoiseFloor:
    return NoiseFloor("llama", "raw_hooks", "bfloat16", "cpu", versus_fp32=1.0, versus_matched=tv, hf_rerun=0.0, runs=1)


def test_nan_is_never_supported():
    ref = _output(torch.tensor([[0.7, 0.3]]))
    nan = _output(torch.tensor([[float("nan"), 0.3]]))
    verdict = judge(nan, Evidence(ref, matched=lambda: nan, floor=_floor(0.01)))
    assert verdict.state == State.SILENTLY_WRONG and "non-finite" in verdict.note


def test_a_nan_reference_is_no_reference_wherever_the_nan_sits():
    """A NaN after the first value once read as relative error 0 (``max`` skips it) and made a
    correct cell SUPPORTED against NaN scores."""
    good = torch.tensor([1.0, 2.0, 3.0])
    ref = _output(torch.tensor([[0.7, 0.3]]), values={"scores": torch.tensor([1.0, float("nan"), 3.0])})
    cell = _output(torch.tensor([[0.7, 0.3]]), values={"scores": good})
    verdict = judge(cell, Evidence(ref))
    assert verdict.state == State.NO_REFERENCE and "non-finite" in verdict.note
    nan_probs = _output(torch.tensor([[0.7, float("nan")]]))
    assert judge(_output(torch.tensor([[0.7, 0.3]])), Evidence(nan_probs)).state == State.NO_REFERENCE


def test_every_aggregate_propagates_nan():
    two = CellOutput(tuple(PromptOutput({"next_token": torch.tensor([[0.5, 0.5]])}, {"v": v})
                           for v in (torch.tensor([1.0]), torch.tensor([float("nan")]))))
    ref = CellOutput(tuple(PromptOutput({"next_token": torch.tensor([[0.5, 0.5]])}, {"v": torch.tensor([1.0])})
                           for _ in range(2)))
    assert math.isnan(compare(two, ref).max_rel_err)  # the NaN is second: Python's max() would skip it
    assert not compare(two, ref).within(STRICT)


def test_shape_mismatch_is_silently_wrong_and_says_why():
    ref = _output(torch.tensor([[0.7, 0.3]]))
    wide = _output(torch.tensor([[0.7, 0.2, 0.1]]))
    verdict = judge(wide, Evidence(ref))
    assert verdict.state == State.SILENTLY_WRONG and "shape" in verdict.note


def test_same_precision_divergence_has_no_excuse():
    verdict = judge(_output(torch.tensor([[0.3, 0.7]])), Evidence(_output(torch.tensor([[0.7, 0.3]]))))
    assert verdict.state == State.SILENTLY_WRONG


def test_degraded_allows_a_multiple_of_the_measured_floor_not_a_constant():
    ref = _output(torch.tensor([[0.70, 0.30]]))
    cell = _output(torch.tensor([[0.66, 0.34]]))  # TV 0.04 from the reference
    assert judge(cell, Evidence(ref, lambda: ref, _floor(0.02))).state == State.SUPPORTED_DEGRADED  # 0.04 <= 3 x 0.02
    wrong = judge(cell, Evidence(ref, lambda: ref, _floor(0.01)))  # 0.04 > 3 x 0.01
    assert wrong.state == State.SILENTLY_WRONG and "allowed 0.03" in wrong.note


def test_the_closer_reference_is_used_and_named():
    """HF bf16 can be the noisy side: the floor says which reference a bf16 cell is held to."""
    fp32, hf_bf16 = _output(torch.tensor([[0.70, 0.30]])), _output(torch.tensor([[0.50, 0.50]]))
    noisy_hf = NoiseFloor("llama", "vllm_sync", "bfloat16", "cuda", versus_fp32=0.01, versus_matched=0.2,
                          hf_rerun=0.0, runs=1)
    cell = _output(torch.tensor([[0.69, 0.31]]))
    verdict = judge(cell, Evidence(fp32, lambda: hf_bf16, noisy_hf))
    assert noisy_hf.reference_dtype == "float32"
    assert verdict.state == State.SUPPORTED_DEGRADED and "HF float32" in verdict.note


def test_nnsight_dynamic_error_class_reports_the_original():
    from nnsight.intervention.interleaver import OutOfOrderError

    dynamic = type("NNsightException", (IndexError,), {"__module__": "nnsight.intervention.errors"})
    assert Failure.from_exception(dynamic("boom")).type == "IndexError"
    assert Failure.from_exception(OutOfOrderError("late")).type.endswith("Error")


def test_a_flipped_token_stops_the_generation_comparison_there():
    """Greedy runs that pick different tokens at step 1 are compared on steps 0 and 1 only."""
    ref = torch.tensor([[0.9, 0.1, 0.0], [0.52, 0.48, 0.0], [0.0, 0.0, 1.0]])
    out = torch.tensor([[0.9, 0.1, 0.0], [0.48, 0.52, 0.0], [1.0, 0.0, 0.0]])  # near-tie flips, then diverges
    verdict = judge(_output(out, steps=3), Evidence(_output(ref, steps=3), matched=lambda: _output(ref, steps=3),
                                                    floor=_floor(0.02)))
    assert verdict.versus_reference.diverged_at_step == 1
    assert verdict.versus_reference.max_tv == pytest.approx(0.04)  # step 2 (TV 1.0) left out
    assert verdict.state == State.SUPPORTED_DEGRADED  # the flip is a near-tie at matched precision


def test_cross_process_error_text_reports_the_inner_error():
    text = 'Traceback (most recent call last):\n    raise exception.with_traceback(\nNotImplementedError: backward under inference_mode'
    failure = Failure.from_exception(RuntimeError(text))
    assert (failure.type, failure.message) == ("NotImplementedError", "backward under inference_mode")


def test_an_unalignable_generation_read_may_agree_with_either_precision_at_its_own_floor():
    """Attention rows at every step say nothing about the tokens decoded: against a reference that
    decoded others they compare different prefixes. Such an output may agree with HF at either
    precision, each within its own measured floor; every other output only with the closer one."""
    fp32, hf_bf16 = _output(torch.tensor([[0.9, 0.1]])), _output(torch.tensor([[0.5, 0.5]]))
    floor = NoiseFloor("llama", "vllm_sync", "bfloat16", "cuda", versus_fp32=0.03, versus_matched=0.04,
                       hf_rerun=0.0, runs=1)
    cell = _output(torch.tensor([[0.52, 0.48]]))  # TV 0.38 from fp32, 0.02 from HF bf16
    assert judge(cell, Evidence(fp32, lambda: hf_bf16, floor)).state == State.SILENTLY_WRONG
    verdict = judge(cell, Evidence(fp32, lambda: hf_bf16, floor, unaligned_steps=True))
    assert verdict.state == State.SUPPORTED_DEGRADED and "HF bfloat16 within 0.12" in verdict.note


def test_the_evidence_knows_which_generation_outputs_cannot_be_aligned(book):
    from nnbench.jobs import CellJob, CellParams
    from nnbench.prompts import FACTS

    config = book.config_of("raw_hooks", "llama", "bfloat16")
    attention, lens = (CellJob(m, "llama", "generation", FACTS[:1], CellParams(new_tokens=2))
                       for m in ("attention_pattern", "logit_lens"))
    assert book.evidence(attention, config).unaligned_steps
    assert not book.evidence(lens, config).unaligned_steps
