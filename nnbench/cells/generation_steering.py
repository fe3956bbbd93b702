"""Generation-time steering: greedy decoding with the steering vector added at every step.

At step 0 the vector goes onto every prompt position; at each later step onto the one new token,
so the whole sequence ends up steered (as with a hook that stays installed for ``generate``).
"""

from __future__ import annotations

from functools import partial

import torch

from nnbench.cells.common import family_hidden_size, hidden_size, steering_vector
from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.lens import greedy_logits, resid_post, text_input
from nnbench.cells.registry import cell
from nnbench.cells.vlens import LensLLM
from nnbench.cells.vllm_trace import GREEDY, VllmTrace, next_token_rows, texts_of
from nnbench.families import RESIDUAL_PAIR, Modules
from nnbench.jobs import CellJob, CellOutput, per_prompt
from nnbench.prompts import Prompt
from nnbench.vocab import Family

FAMILIES = tuple(Family)
WORKLOADS = ("interactive", "batched")
RELIES_ON = ("add_vector_at_step:decoder_layer", "read_at_step:logits")


@cell("generation_steering", FAMILIES, "hf", WORKLOADS, relies_on=RELIES_ON)
def generation_steering_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    vector = steering_vector(hidden_size(model.config), job.params, job.family, job.model)
    steps = job.params.new_tokens
    with model.generate(job.texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False) as tracer:
        per_step = list().save()
        for _ in tracer.iter[:steps]:
            layer = mods.layers[job.params.layer]
            layer.output = layer.output + vector.to(layer.output.device, layer.output.dtype)
            per_step.append(mods.unembed.output[:, -1])
    probs = torch.stack(list(per_step), dim=1).softmax(-1)  # [B, steps, V]
    return per_prompt({"next_token": probs}, steps=job.params.new_tokens)


@cell("generation_steering", FAMILIES, "raw_hooks", WORKLOADS, relies_on=RELIES_ON)
def generation_steering_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    vector = steering_vector(hidden_size(model.config), job.params, job.family, job.model)
    add = lambda module, args, out: out + vector.to(out.device, out.dtype)
    with forward_hooks((mods.layers[job.params.layer], add)):
        logits = greedy_generate(model, model.encode(job.texts), job.params.new_tokens)
    return per_prompt({"next_token": logits.softmax(-1)}, steps=job.params.new_tokens)


# ---- TransformerLens: a hook installed for the bridge's ``generate``. Portable: its defaults,
# KV cache on, which TransformerLens 4.3.0 gets wrong from the second token; aware: without the
# cache (every step re-runs the whole, wholly steered, sequence: the same result as HF's). ----
def _tl_generation_steering(model, job: CellJob, use_cache: bool) -> CellOutput:
    vector = steering_vector(model.cfg.d_model, job.params, job.family, job.model)
    add = lambda resid, hook: resid + vector.to(resid.device, resid.dtype)
    steps = job.params.new_tokens
    with model.hooks(fwd_hooks=[(resid_post(job.params.layer), add)]):
        if use_cache:
            out = model.generate(list(job.texts), max_new_tokens=steps, stop_at_eos=False, do_sample=False,
                                 output_logits=True, return_type="tokens", verbose=False, **text_input(job))
            logits = torch.stack(out.logits, dim=1)
        else:
            logits = greedy_logits(model, job, steps)
    return per_prompt({"next_token": logits.softmax(-1)}, steps=steps)


@cell("generation_steering", FAMILIES, "transformer_lens", WORKLOADS, relies_on=RELIES_ON, variant="portable")
def generation_steering_tl_portable(model, job: CellJob) -> CellOutput:
    return _tl_generation_steering(model, job, use_cache=True)


@cell("generation_steering", FAMILIES, "transformer_lens", WORKLOADS, relies_on=RELIES_ON, variant="aware")
def generation_steering_tl(model, job: CellJob) -> CellOutput:
    return _tl_generation_steering(model, job, use_cache=False)


# ---- vLLM: the vector goes onto every prompt token at step 0, then onto each new token. The
# portable form (HF's ``out[0]`` of a tuple) is this same code on Llama, so there is one variant. ----
VLLM = ("vllm_sync", "vllm_async", "vllm_serve")


@cell("generation_steering", RESIDUAL_PAIR, VLLM, WORKLOADS, relies_on=RELIES_ON, variant="aware")
def generation_steering_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    mlp_out, residual = model.model.layers[layer].output  # [tokens this step, H]
                    mlp_out[:] += vector.to(mlp_out.device, mlp_out.dtype)
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()  # [steps, V]
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


@cell("generation_steering", "gpt2", VLLM, WORKLOADS, relies_on=RELIES_ON, variant="aware")
def generation_steering_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    hidden = model.transformer.h[layer].output
                    hidden[:] += vector.to(hidden.device, hidden.dtype)
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


# ---- vLLM-Lens: a SteeringVector applies on every forward of its request, prompt and decode ----
@cell("generation_steering", FAMILIES, "vllm_lens", WORKLOADS, relies_on=RELIES_ON)
def generation_steering_vllm_lens(model: LensLLM, job: CellJob) -> CellOutput:
    vector = steering_vector(family_hidden_size(job.family, job.model), job.params, job.family, job.model)
    steer = model.steering_vector(activations=vector[None], layer_indices=[job.params.layer], scale=1.0)
    probs = model.next_token(job.texts, [{"apply_steering_vectors": [steer]} for _ in job.texts], steps=job.params.new_tokens)
    return per_prompt({"next_token": probs}, steps=job.params.new_tokens)
