"""Steering (activation addition): add a seeded vector to one layer's residual stream.

Interactive/batched: the vector is added at every prompt position; the oracle reads the
last-position next-token distribution. Generation workload: the vector is added on the prompt
(the prefill step) only, and the distributions of every decoded step are read; steering at every
step is the separate ``generation_steering`` methodology.
"""

from __future__ import annotations

from functools import partial

import torch

from nnbench.cells.common import family_hidden_size, hidden_size, steering_vector
from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.lens import logits_with_hooks, resid_post
from nnbench.cells.registry import cell
from nnbench.cells.vene import VeneModel
from nnbench.cells.vlens import LensLLM
from nnbench.cells.vllm_trace import GREEDY, VllmTrace, next_token_rows, texts_of
from nnbench.families import RESIDUAL_PAIR, Modules
from nnbench.jobs import CellJob, CellOutput, per_prompt
from nnbench.prompts import Prompt
from nnbench.vocab import Family

FAMILIES = tuple(Family)
ONE_FORWARD = ("interactive", "batched")
RELIES_ON = ("add_vector:decoder_layer", "read_output:logits")


@cell("steering", FAMILIES, "hf", ONE_FORWARD, relies_on=RELIES_ON)
def steering_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    vector = steering_vector(hidden_size(model.config), job.params, job.family, job.model)
    with model.trace(job.texts):
        layer = mods.layers[job.params.layer]
        layer.output = layer.output + vector.to(layer.output.device, layer.output.dtype)
        probs = mods.unembed.output[:, -1].softmax(-1).save()  # [B, V]
    return per_prompt({"next_token": probs})


@cell("steering", FAMILIES, "hf", "generation", relies_on=RELIES_ON + ("read_at_step:logits",))
def steering_generation_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    vector = steering_vector(hidden_size(model.config), job.params, job.family, job.model)
    steps = job.params.new_tokens
    with model.generate(job.texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False) as tracer:
        per_step = list().save()
        for step in tracer.iter[:steps]:
            if step == 0:  # the prompt's forward pass only
                layer = mods.layers[job.params.layer]
                layer.output = layer.output + vector.to(layer.output.device, layer.output.dtype)
            per_step.append(mods.unembed.output[:, -1])
    probs = torch.stack(list(per_step), dim=1).softmax(-1)  # [B, steps, V]
    return per_prompt({"next_token": probs}, steps=job.params.new_tokens)


@cell("steering", FAMILIES, "raw_hooks", ONE_FORWARD, relies_on=RELIES_ON)
def steering_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    vector = steering_vector(hidden_size(model.config), job.params, job.family, job.model)
    add = lambda module, args, out: out + vector.to(out.device, out.dtype)
    with forward_hooks((mods.layers[job.params.layer], add)):
        logits = model.forward(job.texts).logits
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


@cell("steering", FAMILIES, "raw_hooks", "generation", relies_on=RELIES_ON)
def steering_generation_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    vector = steering_vector(hidden_size(model.config), job.params, job.family, job.model)
    calls = [0]

    def add_on_prefill(module, args, out):
        calls[0] += 1
        return out + vector.to(out.device, out.dtype) if calls[0] == 1 else out

    with forward_hooks((mods.layers[job.params.layer], add_on_prefill)):
        logits = greedy_generate(model, model.encode(job.texts), job.params.new_tokens)
    return per_prompt({"next_token": logits.softmax(-1)}, steps=job.params.new_tokens)


# ---- TransformerLens: the same edit as a hook on the block's residual output ----
@cell("steering", FAMILIES, "transformer_lens", ONE_FORWARD, relies_on=RELIES_ON)
def steering_tl(model, job: CellJob) -> CellOutput:
    vector = steering_vector(model.cfg.d_model, job.params, job.family, job.model)
    add = lambda resid, hook: resid + vector.to(resid.device, resid.dtype)
    logits = logits_with_hooks(model, job, job.texts, (resid_post(job.params.layer), add))
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


# ---- pyvene: an addition intervention on the block's output ----
@cell("steering", FAMILIES, "pyvene", ONE_FORWARD, relies_on=RELIES_ON)
def steering_pyvene(model: VeneModel, job: CellJob) -> CellOutput:
    vector = steering_vector(hidden_size(model.module.config), job.params, job.family, job.model)
    steer = model.intervenable(job.params.layer, "block_output", model.pv.AdditionIntervention)
    _, out = steer(model.batch(job.texts), source_representations=vector.to(model.device))
    return per_prompt({"next_token": out.logits[:, -1].softmax(-1)})


# ---- vLLM: one invoke per prompt; edits are in place on flat [tokens, hidden] views. The portable
# form (HF's ``out[0]`` of a tuple output) is this same code on Llama, so there is one variant. ----
VLLM = ("vllm_sync", "vllm_async", "vllm_serve")


@cell("steering", RESIDUAL_PAIR, VLLM, ONE_FORWARD, relies_on=("add_vector:decoder_layer", "read_output:logits"), variant="aware")
def steering_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """Add to mlp_out of vLLM's (mlp_out, residual) pair: the next layer sums the two."""
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                mlp_out, residual = model.model.layers[layer].output
                mlp_out[:] += vector.to(mlp_out.device, mlp_out.dtype)
                next_token = model.logits.softmax(-1).save()  # [1, V], last position
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=1))


@cell("steering", "gpt2", VLLM, ONE_FORWARD, relies_on=("add_vector:decoder_layer", "read_output:logits"), variant="aware")
def steering_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                hidden = model.transformer.h[layer].output  # [tokens, H], the residual stream
                hidden[:] += vector.to(hidden.device, hidden.dtype)
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=1))


@cell("steering", RESIDUAL_PAIR, VLLM, "generation", relies_on=("add_vector:decoder_layer", "read_at_step:logits"),
      variant="aware")
def steering_generation_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for step in tracer.iter[:steps]:
                    if step == 0:  # the prompt's forward pass only
                        mlp_out, residual = model.model.layers[layer].output
                        mlp_out[:] += vector.to(mlp_out.device, mlp_out.dtype)
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()  # [steps, V]
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


@cell("steering", "gpt2", VLLM, "generation", relies_on=("add_vector:decoder_layer", "read_at_step:logits"),
      variant="aware")
def steering_generation_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for step in tracer.iter[:steps]:
                    if step == 0:
                        hidden = model.transformer.h[layer].output
                        hidden[:] += vector.to(hidden.device, hidden.dtype)
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


# ---- vLLM-Lens: a SteeringVector in each request's extra_args (its README's form); on the
# generation workload the prompt's pass only, which a SteeringVector cannot say: a Hook that adds
# where the request's slice is the whole prompt (a decode step's is one token) ----
@cell("steering", FAMILIES, "vllm_lens", ONE_FORWARD, relies_on=RELIES_ON)
def steering_vllm_lens(model: LensLLM, job: CellJob) -> CellOutput:
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)
    steer = model.steering_vector(activations=vector[None], layer_indices=[job.params.layer], scale=1.0)
    probs = model.next_token(job.texts, [{"apply_steering_vectors": [steer]} for _ in job.texts])
    return per_prompt({"next_token": probs})


@cell("steering", FAMILIES, "vllm_lens", "generation", relies_on=RELIES_ON + ("read_at_step:logits",))
def steering_generation_vllm_lens(model: LensLLM, job: CellJob) -> CellOutput:
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)

    def add_on_prefill(ctx, h):  # h: this request's [tokens, H] residual at the layer's output
        return h + vector.to(h.device, h.dtype) if h.shape[0] > 1 else None

    hook = model.hook(fn=add_on_prefill, layer_indices=[job.params.layer])
    probs = model.next_token(job.texts, [{"apply_hooks": [hook]} for _ in job.texts], steps=job.params.new_tokens)
    return per_prompt({"next_token": probs}, steps=job.params.new_tokens)
