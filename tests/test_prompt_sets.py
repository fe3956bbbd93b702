"""The templated prompt sets: large, seeded, nested, refused by name when too large, and
tokenized alike on every family (one-token names, IOI pairs differing in one token)."""

import pytest

from nnbench.cells.common import family_tokenizer, first_token_id, patch_positions
from nnbench.loadgen.scenario import parse as parse_scenario
from nnbench.offline.grid import prompts_for
from nnbench.offline.spec import SweepSpec
from nnbench.prompt_sets import KINDS, NAMES, PLACES, THINGS, pool, prompt_set
from nnbench.prompts import FACTS, IOI_PAIRS
from nnbench.validate import SpecError
from tests.conftest import require_model


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_has_at_least_64_distinct_prompts_seeded_and_nested(kind):
    big = prompt_set(kind, 64)
    assert len({p.text for p in big}) == 64
    assert prompt_set(kind, 16) == big[:16] and prompt_set(kind, 64) == big


def test_a_cell_draws_from_the_pool_its_methodology_and_workload_need():
    assert pool("steering", "interactive", None) == FACTS and pool("activation_patching", "batched", None) == IOI_PAIRS
    assert all(p.corrupt for p in pool("activation_patching", "interactive", 64))
    assert pool("steering", "generation", 64) == prompt_set("generation", 64)
    assert prompts_for("steering", "batched", 32, 64) == prompt_set("facts", 64)[:32]


def test_a_pool_too_large_for_its_templates_is_refused_before_anything_runs():
    with pytest.raises(SpecError, match="prompts: 80 generation prompts asked; the templates make 1 to 72"):
        SweepSpec.from_mapping({"prompts": 80, "methodologies": ["steering"]})
    assert SweepSpec.from_mapping({"prompts": 80, "workloads": ["interactive", "batched"]}).prompts == 80
    with pytest.raises(SpecError, match="batch_size: 8 is more than the 4 built-in prompts .*set prompts = N"):
        prompts_for("activation_patching", "batched", 8)
    scenario = {"name": "s", "family": "llama", "backends": ["hf"], "mix": [{"methodology": "steering"}]}
    assert parse_scenario(scenario | {"prompts": 96}).prompts == 96
    with pytest.raises(SpecError, match="97 facts prompts asked"):
        parse_scenario(scenario | {"prompts": 97})


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "gemma3"])
def test_names_places_and_things_are_one_token_and_pairs_differ_in_one_on_every_family(family):
    require_model(family)
    tokenizer = family_tokenizer(family)
    for word in NAMES + PLACES + THINGS:
        assert len(tokenizer(f" {word}", add_special_tokens=False).input_ids) == 1, (family, word)
    pairs = prompt_set("ioi", 64)
    assert patch_positions(tokenizer, pairs).tolist() == [-5] * 64  # raises if a pair differs elsewhere
    assert all(first_token_id(tokenizer, p.answer) != first_token_id(tokenizer, p.wrong) for p in pairs)
