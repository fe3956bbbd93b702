"""Every shipped write intervention moves every built-in prompt of every family by at least 10x
what SUPPORTED allows, so a lost edit on any prompt the load generator may draw is caught.

Measured on the reference side (HF cells' raw-hooks twins, bit-identical at fp32), each prompt
against the same prompt with no intervention, on the first decoding step.
"""

import pytest

from nnbench.backends import BackendConfig
from nnbench.evidence import own_effect
from nnbench.jobs import CellJob, CellParams
from nnbench.oracle.thresholds import EFFECT, STRICT
from nnbench.prompts import FACTS, IOI_PAIRS
from tests.conftest import require_model

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them

WRITES = ("steering", "zero_ablation", "activation_patching", "attribution_patching", "generation_steering")
WEAK = {("zero_ablation", "qwen2"): [7]}
"""Prompts (indices) a write moves by less than the margin, measured: zeroing layer 6's MLP moves
Qwen2.5-Coder-0.5B's prompt 7 by TV 0.046 (and prompt 2 by 0.053, just above the 0.05); the
oracle certifies the cell on the other seven and says so in its note. Listed exactly, so that a
change either way fails here."""


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "gemma3"])
@pytest.mark.parametrize("methodology", WRITES)
def test_every_prompt_is_moved_by_ten_tolerances(methodology, family, pool):
    require_model(family)
    prompts = IOI_PAIRS if "patching" in methodology else FACTS
    job = CellJob(methodology, family, "batched", prompts, CellParams(new_tokens=2))
    effect = own_effect(pool.get(BackendConfig("raw_hooks", family)), job)
    sizes = [round(p.size, 4) for p in effect.prompts]
    weak = [i for i, p in enumerate(effect.prompts) if not p.certifies]
    assert len(sizes) == len(prompts) and weak == WEAK.get((methodology, family), []), sizes
    assert all(s >= EFFECT.min_margin * STRICT.max_tv for i, s in enumerate(sizes) if i not in weak)


@pytest.mark.slow
def test_the_large_qwen_is_moved_by_its_own_steering_norm(pool):
    """Qwen2.5-Coder-1.5B gets its own norm (48): the family's 16 moved its first prompt by 0.016."""
    model = "qwen2.5-coder-1.5b-instruct"
    require_model("qwen2", model)
    job = CellJob("steering", "qwen2", "batched", FACTS, CellParams(new_tokens=2), model)
    effect = own_effect(pool.get(BackendConfig("raw_hooks", "qwen2", model=model)), job)
    assert job.params.steering_norm("qwen2", model) == 48.0
    assert all(p.certifies for p in effect.prompts), [round(p.size, 4) for p in effect.prompts]
