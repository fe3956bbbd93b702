"""Activation patching: copy one layer's residual at the differing token from the clean run into
the corrupt run (IOI pairs), and read the patched next-token distribution.

Two traces, clean then corrupt: that form is portable (vLLM has no cross-invoke barrier).
Generation workload: patch on the prompt's forward pass, then read every decoded step.
"""

from __future__ import annotations

import torch

from nnbench.cells.common import patch_positions
from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.job import CellJob, CellOutput, per_prompt
from nnbench.cells.registry import cell
from nnbench.families import Modules

FAMILIES = ("gpt2", "llama")
ONE_FORWARD = ("interactive", "batched")
RELIES_ON = ("read_output:decoder_layer", "edit_in_place:decoder_layer", "read:logits")


@cell("activation_patching", FAMILIES, "hf", ONE_FORWARD, relies_on=RELIES_ON)
def activation_patching_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    positions = patch_positions(model.tokenizer, job.prompts)  # [B], counted from the end
    rows = torch.arange(len(job.prompts))
    with model.trace(job.texts):
        clean = mods.layers[job.params.layer].output[rows, positions].save()  # [B, H]
    with model.trace(job.corrupt_texts):
        layer = mods.layers[job.params.layer]
        patched = layer.output.clone()
        patched[rows, positions] = clean
        layer.output = patched
        probs = mods.unembed.output[:, -1].softmax(-1).save()
    return per_prompt({"next_token": probs})


@cell("activation_patching", FAMILIES, "hf", "generation", relies_on=RELIES_ON + ("read_at_step:logits",))
def activation_patching_generation_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    positions = patch_positions(model.tokenizer, job.prompts)
    rows = torch.arange(len(job.prompts))
    steps = job.params.new_tokens
    with model.trace(job.texts):
        clean = mods.layers[job.params.layer].output[rows, positions].save()
    with model.generate(job.corrupt_texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False) as tracer:
        per_step = list().save()
        for step in tracer.iter[:steps]:
            if step == 0:
                layer = mods.layers[job.params.layer]
                patched = layer.output.clone()
                patched[rows, positions] = clean
                layer.output = patched
            per_step.append(mods.unembed.output[:, -1])
    return per_prompt({"next_token": torch.stack(list(per_step), dim=1).softmax(-1)}, steps=job.params.new_tokens)


def _clean_and_patch_hooks(model: RawModel, job: CellJob):
    """Run the clean prompts and return a hook that writes their residual into the first corrupt pass."""
    mods = Modules.of(model.module, job.family)
    layer = mods.layers[job.params.layer]
    positions = patch_positions(model.tokenizer, job.prompts)
    rows = torch.arange(len(job.prompts))
    saved: list[torch.Tensor] = []
    with forward_hooks((layer, lambda module, args, out: saved.append(out[rows, positions].clone()))):
        model.forward(job.texts)
    calls = [0]

    def patch_first_pass(module, args, out):
        calls[0] += 1
        if calls[0] > 1:
            return out
        patched = out.clone()
        patched[rows, positions] = saved[0]
        return patched

    return layer, patch_first_pass


@cell("activation_patching", FAMILIES, "raw_hooks", ONE_FORWARD, relies_on=RELIES_ON)
def activation_patching_raw(model: RawModel, job: CellJob) -> CellOutput:
    layer, patch = _clean_and_patch_hooks(model, job)
    with forward_hooks((layer, patch)):
        logits = model.forward(job.corrupt_texts).logits
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


@cell("activation_patching", FAMILIES, "raw_hooks", "generation", relies_on=RELIES_ON)
def activation_patching_generation_raw(model: RawModel, job: CellJob) -> CellOutput:
    layer, patch = _clean_and_patch_hooks(model, job)
    with forward_hooks((layer, patch)):
        logits = greedy_generate(model, model.encode(job.corrupt_texts), job.params.new_tokens)
    return per_prompt({"next_token": logits.softmax(-1)}, steps=job.params.new_tokens)
