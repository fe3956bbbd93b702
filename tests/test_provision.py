import json
import statistics

import pytest
import torch

from nnbench.prompts import FACTS
from nnbench.provision import MARKER, ensure_model


def test_models_are_cached_with_a_content_hash():
    first, again = ensure_model("llama"), ensure_model("llama")
    assert first == again
    marker = json.loads((first.path / MARKER).read_text())
    assert marker["content_hash"] == first.content_hash and len(first.content_hash) == 16
    assert ensure_model("gpt2").content_hash != first.content_hash


def test_unknown_family_names_the_choices():
    with pytest.raises(ValueError, match="gpt3"):
        ensure_model("gpt3")


def test_smollm2_is_the_real_model(hf_llama):
    model = hf_llama.model
    assert model.tokenizer("The Eiffel Tower is in the city of").input_ids == [504, 414, 46682, 18669, 314, 281, 260, 2240, 282]
    with torch.no_grad(), model.trace("The Eiffel Tower is in the city of"):
        top = model.lm_head.output[0, -1].softmax(-1).max(-1).save()
    assert model.tokenizer.decode(top.indices) == " Paris" and top.values > 0.5


def test_synthetic_gpt2_has_real_tokenizer_and_peaked_distributions(pool):
    from nnbench.backends import BackendConfig

    raw = pool.get(BackendConfig("raw_hooks", "gpt2"))
    assert ensure_model("gpt2").synthetic
    assert raw.model.tokenizer("The Eiffel Tower is in the city of").input_ids == [464, 412, 733, 417, 8765, 318, 287, 262, 1748, 286]
    with torch.no_grad():
        top1 = [raw.model.forward([p.text]).logits[0, -1].softmax(-1).max().item() for p in FACTS]
    median = statistics.median(top1)
    print(f"synthetic GPT-2 median top-1 probability over {len(FACTS)} prompts: {median:.3f}")
    assert median >= 0.1
