"""Activation patching: copy one layer's residual at the differing token from the clean run into
the corrupt run (IOI pairs), and read the patched next-token distribution.

Two traces, clean then corrupt: that form carries over to vLLM, which has no barrier between
invokes. Generation workload: patch on the prompt's forward pass, then read every decoded step.
"""

from __future__ import annotations

from functools import partial

import torch

from nnbench.cells.common import family_tokenizer, patch_positions
from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.lens import logits_with_hooks, resid_post, text_input
from nnbench.cells.registry import cell
from nnbench.cells.vene import VeneModel
from nnbench.cells.vlens import LensLLM
from nnbench.cells.vllm_trace import GREEDY, VllmTrace, next_token_rows, per_invoke, texts_of
from nnbench.families import RESIDUAL_PAIR, Modules
from nnbench.jobs import CellJob, CellOutput, per_prompt
from nnbench.prompts import Prompt
from nnbench.vocab import Family

FAMILIES = tuple(Family)
ONE_FORWARD = ("interactive", "batched")
RELIES_ON = ("read_output:decoder_layer", "edit_in_place:decoder_layer", "read_output:logits")


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


# ---- TransformerLens: cache the clean run's residual, then patch it in with a hook ----
@cell("activation_patching", FAMILIES, "transformer_lens", ONE_FORWARD, relies_on=RELIES_ON)
def activation_patching_tl(model, job: CellJob) -> CellOutput:
    name = resid_post(job.params.layer)
    positions = patch_positions(family_tokenizer(job.family, job.model), job.prompts)  # from the end
    rows = torch.arange(len(job.prompts))
    _, cache = model.run_with_cache(list(job.texts), names_filter=name, **text_input(job))
    clean = cache[name][rows, positions]  # [B, H]

    def patch(resid, hook):
        resid = resid.clone()
        resid[rows, positions] = clean.to(resid.dtype)
        return resid

    logits = logits_with_hooks(model, job, job.corrupt_texts, (name, patch))
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


# ---- pyvene: an interchange intervention, the clean run as source, at the differing token ----
@cell("activation_patching", FAMILIES, "pyvene", ONE_FORWARD, relies_on=RELIES_ON)
def activation_patching_pyvene(model: VeneModel, job: CellJob) -> CellOutput:
    base, source = model.batch(job.corrupt_texts), model.batch(job.texts)
    width = base["input_ids"].shape[1]  # pairs tokenize to equal lengths: one padding for both
    positions = (patch_positions(family_tokenizer(job.family, job.model), job.prompts) + width).tolist()
    at = [[[p] for p in positions]]  # [interventions][batch][positions]
    patch = model.intervenable(job.params.layer, "block_output", model.pv.VanillaIntervention)
    _, out = patch(base, [source], unit_locations={"sources->base": (at, at)})
    return per_prompt({"next_token": out.logits[:, -1].softmax(-1)})


# ---- vLLM: two traces (vLLM has no barrier between invokes): the clean run saves the stream at
# the differing token, and its saves build the patched run. One body serves all three workloads:
# the patch lands on the prompt's forward (step 0), then every decoded step is read. ----
VLLM = ("vllm_sync", "vllm_async", "vllm_serve")
WORKLOADS = ("interactive", "batched", "generation")
STEPS = ("read_at_step:logits",)


def _steps(job: CellJob) -> int:
    return job.params.new_tokens if job.generates else 1


@cell("activation_patching", RESIDUAL_PAIR, VLLM, WORKLOADS, relies_on=RELIES_ON + ("sum:dual_residual",) + STEPS,
      variant="aware")
def activation_patching_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """The stream is mlp_out + residual: save their sum, then write it into mlp_out and zero
    residual at that token, so the next layer's fused add sees exactly the clean stream."""
    layer, steps = job.params.layer, _steps(job)
    positions = patch_positions(family_tokenizer(job.family, job.model), prompts).tolist()
    texts, corrupt_texts = texts_of(prompts), texts_of(prompts, corrupt=True)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for i, text in enumerate(texts):
            with tracer.invoke(text):
                mlp_out, residual = model.model.layers[layer].output
                clean = (mlp_out[positions[i]] + residual[positions[i]]).save()  # [H], a fresh tensor

    def patched(saves: dict, trace_kwargs: dict) -> VllmTrace:
        clean = per_invoke(saves, "clean")
        with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
            for i, text in enumerate(corrupt_texts):
                with tracer.invoke(text):
                    rows = []
                    for step in tracer.iter[:steps]:
                        if step == 0:  # the prompt's forward pass
                            mlp_out, residual = model.model.layers[layer].output
                            mlp_out[positions[i]] = clean[i].to(mlp_out.device, mlp_out.dtype)
                            residual[positions[i]] = 0
                        rows.append(model.logits)
                    next_token = torch.cat(rows).softmax(-1).save()  # [steps, V]
        return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))

    return VllmTrace(tracer, ("clean",), None, then=patched)


@cell("activation_patching", RESIDUAL_PAIR, VLLM, WORKLOADS, relies_on=RELIES_ON + STEPS, variant="portable")
def activation_patching_vllm_llama_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                            trace_kwargs: dict) -> VllmTrace:
    """HF's patch with the tuple read as ``out[0]`` (transformers 4.x's habit): on vLLM that is
    the MLP's output, so only that part of the stream is copied and the residual stays corrupt."""
    layer, steps = job.params.layer, _steps(job)
    positions = patch_positions(family_tokenizer(job.family, job.model), prompts).tolist()
    texts, corrupt_texts = texts_of(prompts), texts_of(prompts, corrupt=True)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for i, text in enumerate(texts):
            with tracer.invoke(text):
                clean = model.model.layers[layer].output[0][positions[i]].clone().save()

    def patched(saves: dict, trace_kwargs: dict) -> VllmTrace:
        clean = per_invoke(saves, "clean")
        with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
            for i, text in enumerate(corrupt_texts):
                with tracer.invoke(text):
                    rows = []
                    for step in tracer.iter[:steps]:
                        if step == 0:
                            hidden = model.model.layers[layer].output[0]  # HF habit: out[0]
                            hidden[positions[i]] = clean[i].to(hidden.device, hidden.dtype)
                        rows.append(model.logits)
                    next_token = torch.cat(rows).softmax(-1).save()
        return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))

    return VllmTrace(tracer, ("clean",), None, then=patched)


@cell("activation_patching", "gpt2", VLLM, WORKLOADS, relies_on=RELIES_ON + STEPS, variant="aware")
def activation_patching_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """vLLM's GPT-2 block returns the stream itself (so the portable form is this code)."""
    layer, steps = job.params.layer, _steps(job)
    positions = patch_positions(family_tokenizer(job.family, job.model), prompts).tolist()
    texts, corrupt_texts = texts_of(prompts), texts_of(prompts, corrupt=True)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for i, text in enumerate(texts):
            with tracer.invoke(text):
                clean = model.transformer.h[layer].output[positions[i]].clone().save()

    def patched(saves: dict, trace_kwargs: dict) -> VllmTrace:
        clean = per_invoke(saves, "clean")
        with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
            for i, text in enumerate(corrupt_texts):
                with tracer.invoke(text):
                    rows = []
                    for step in tracer.iter[:steps]:
                        if step == 0:
                            hidden = model.transformer.h[layer].output
                            hidden[positions[i]] = clean[i].to(hidden.device, hidden.dtype)
                        rows.append(model.logits)
                    next_token = torch.cat(rows).softmax(-1).save()
        return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))

    return VllmTrace(tracer, ("clean",), None, then=patched)


# ---- vLLM-Lens: capture the clean residual (``output_residual_stream``), then a Hook per corrupt
# request that writes it at the differing position on the prompt's pass ----
def _patch_hook(model: LensLLM, layer: int, clean: torch.Tensor, position: int):
    def patch(ctx, h):  # h: this request's [tokens, H] residual; a decode step's is one token
        if h.shape[0] == 1:
            return None
        h = h.clone()
        h[position] = clean.to(h.device, h.dtype)
        return h

    return model.hook(fn=patch, layer_indices=[layer])


@cell("activation_patching", FAMILIES, "vllm_lens", WORKLOADS, relies_on=RELIES_ON)
def activation_patching_vllm_lens(model: LensLLM, job: CellJob) -> CellOutput:
    layer, steps = job.params.layer, _steps(job)
    positions = [int(p) for p in patch_positions(family_tokenizer(job.family, job.model), job.prompts)]  # from the end
    clean_runs = model.generate(job.texts, [{"output_residual_stream": [layer]} for _ in job.texts])
    cleans = [run.activations["residual_stream"][0, len(run.prompt_token_ids) + pos]  # [H]
              for run, pos in zip(clean_runs, positions)]
    hooks = [{"apply_hooks": [_patch_hook(model, layer, clean, pos)]} for clean, pos in zip(cleans, positions)]
    probs = model.next_token(job.corrupt_texts, hooks, steps=steps)
    return per_prompt({"next_token": probs}, steps=steps)
