"""Planted faults: copies of the shipped HF and raw-hooks cells with one thing wrong each.

Faults that a parameter expresses (a lost steering edit is alpha 0, a sign flip is -alpha, a wrong
layer is layer 7) run the shipped cells on a changed job; a lost patch or ablation is the
backend's own unintervened run (exactly what a cell whose edit never landed returns). The bodies
below are the faults no parameter reaches: a write at the wrong position, a patch of the wrong
sign, an edit at one decoding step only.
"""

from __future__ import annotations

import torch

from nnbench.cells.common import hidden_size, patch_positions, steering_vector
from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.families import Modules
from nnbench.jobs import CellJob, CellOutput, per_prompt


# ---- steering at the last position only (the cell steers every position) ----
def steering_last_position_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    vector = steering_vector(hidden_size(model.config), job.params, job.family)
    with model.trace(job.texts):
        layer = mods.layers[job.params.layer]
        steered = layer.output.clone()
        steered[:, -1] = steered[:, -1] + vector.to(steered.device, steered.dtype)
        layer.output = steered
        probs = mods.unembed.output[:, -1].softmax(-1).save()
    return per_prompt({"next_token": probs})


def steering_last_position_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    vector = steering_vector(hidden_size(model.config), job.params, job.family)

    def add_last(module, args, out):
        out = out.clone()
        out[:, -1] += vector.to(out.device, out.dtype)
        return out

    with forward_hooks((mods.layers[job.params.layer], add_last)):
        logits = model.forward(job.texts).logits
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


# ---- zero-ablation of the last position only (the cell zeroes every position) ----
def ablation_last_position_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    with model.trace(job.texts):
        mlp = mods.mlp(job.params.layer)
        out = mlp.output.clone()
        out[:, -1] = 0
        mlp.output = out
        probs = mods.unembed.output[:, -1].softmax(-1).save()
    return per_prompt({"next_token": probs})


def ablation_last_position_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)

    def zero_last(module, args, out):
        out = out.clone()
        out[:, -1] = 0
        return out

    with forward_hooks((mods.mlp(job.params.layer), zero_last)):
        logits = model.forward(job.texts).logits
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


# ---- zero-ablation on the prompt's pass only, in generation (the cell ablates every step) ----
def ablation_first_step_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    steps = job.params.new_tokens
    with model.generate(job.texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False) as tracer:
        per_step = list().save()
        for step in tracer.iter[:steps]:
            if step == 0:
                mlp = mods.mlp(job.params.layer)
                mlp.output = torch.zeros_like(mlp.output)
            per_step.append(mods.unembed.output[:, -1])
    return per_prompt({"next_token": torch.stack(list(per_step), dim=1).softmax(-1)}, steps=steps)


def ablation_first_step_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    calls = [0]

    def zero_first(module, args, out):
        calls[0] += 1
        return torch.zeros_like(out) if calls[0] == 1 else out

    with forward_hooks((mods.mlp(job.params.layer), zero_first)):
        logits = greedy_generate(model, model.encode(job.texts), job.params.new_tokens)
    return per_prompt({"next_token": logits.softmax(-1)}, steps=job.params.new_tokens)


# ---- activation patching: the wrong sign (corrupt + (corrupt - clean)) or the token after the
# differing one (before it, clean and corrupt agree and the patch would be a no-op) ----
def _patch_target(positions: torch.Tensor, mode: str) -> torch.Tensor:
    return positions + 1 if mode == "position" else positions


def patching_fault_hf(model, job: CellJob, mode: str) -> CellOutput:
    mods = Modules.of(model, job.family)
    positions = _patch_target(patch_positions(model.tokenizer, job.prompts), mode)
    rows = torch.arange(len(job.prompts))
    with model.trace(job.texts):
        clean = mods.layers[job.params.layer].output[rows, positions].save()
    with model.trace(job.corrupt_texts):
        layer = mods.layers[job.params.layer]
        patched = layer.output.clone()
        if mode == "sign":
            patched[rows, positions] = 2 * patched[rows, positions] - clean
        else:
            patched[rows, positions] = clean
        layer.output = patched
        probs = mods.unembed.output[:, -1].softmax(-1).save()
    return per_prompt({"next_token": probs})


def patching_fault_raw(model: RawModel, job: CellJob, mode: str) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    layer = mods.layers[job.params.layer]
    positions = _patch_target(patch_positions(model.tokenizer, job.prompts), mode)
    rows = torch.arange(len(job.prompts))
    saved: list[torch.Tensor] = []
    with forward_hooks((layer, lambda module, args, out: saved.append(out[rows, positions].clone()))):
        model.forward(job.texts)

    def patch(module, args, out):
        patched = out.clone()
        if mode == "sign":
            patched[rows, positions] = 2 * out[rows, positions] - saved[0]
        else:
            patched[rows, positions] = saved[0]
        return patched

    with forward_hooks((layer, patch)):
        logits = model.forward(job.corrupt_texts).logits
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})
