"""The trace backends of vllm_sync and vllm_serve on a real nnsight trace (HF model on CPU, no GPU
needed): the saves nnsight pushes back, and nnsight's own serialization of the request."""

import torch

from nnbench.cells.vllm_trace import PushedSaves, SerializedTrace


def test_pushed_saves_are_the_saved_names_and_the_cells_frame_is_left_alone(hf_llama):
    model, pushed = hf_llama.model, PushedSaves()
    with torch.no_grad(), model.trace("The capital of France is", backend=pushed):
        hidden = model.model.norm.output  # bound in the block, not saved
        logits = model.lm_head.output.save()
    assert sorted(pushed.saves) == ["logits"] and pushed.saves["logits"].shape[-1] == model.config.vocab_size
    assert "logits" not in locals() and "hidden" not in locals()  # pushed to the stand-in only


def test_pushed_saves_match_the_default_backends_values(hf_llama):
    model, pushed = hf_llama.model, PushedSaves()
    with torch.no_grad(), model.trace("The capital of France is"):
        expected = model.lm_head.output.save()
    with torch.no_grad(), model.trace("The capital of France is", backend=pushed):
        logits = model.lm_head.output.save()
    assert torch.equal(pushed.saves["logits"], expected)


def _filename(model, blob: bytes) -> str:
    """The file name a server compiles the block under (nnsight's own deserializer)."""
    from nnsight.schema.request import RequestModel

    tracer = RequestModel.deserialize(blob, model._remoteable_persistent_objects())
    return tracer.info.code.co_filename


def _two_blocks(model, name_each_block: bool):
    first, second = SerializedTrace(name_each_block), SerializedTrace(name_each_block)
    with model.trace("The capital of France is", backend=first):
        a = model.lm_head.output.save()
    with model.trace("The capital of France is", backend=second):
        b = model.model.norm.output.save()
    return first.blob, second.blob


def test_each_block_gets_its_own_file_name_in_the_request(hf_llama):
    with torch.no_grad():
        first, second = _two_blocks(hf_llama.model, name_each_block=True)
    names = _filename(hf_llama.model, first), _filename(hf_llama.model, second)
    assert names[0] != names[1] and all(n.startswith(__file__ + ":") for n in names)


def test_without_naming_both_blocks_carry_the_file_name_as_nnsight_sends_it(hf_llama):
    with torch.no_grad():
        first, second = _two_blocks(hf_llama.model, name_each_block=False)
    assert _filename(hf_llama.model, first) == _filename(hf_llama.model, second) == __file__
