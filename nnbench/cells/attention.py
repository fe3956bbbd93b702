"""Attention-pattern read: one layer's attention probabilities, every head, real tokens only.

Needs eager attention on HF (SDPA and flash kernels return no weights). Interactive/batched: the
full causal pattern ``[heads·n, n]`` of each prompt's n real tokens (padding stripped, so backends
that do not pad compare row for row). Generation: the last query's row at every decoding step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnbench.cells.common import family_attention_shape, family_tokenizer, real_lengths
from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.lens import attention_pattern, text_input
from nnbench.cells.registry import cell
from nnbench.cells.vlens import cannot_express
from nnbench.cells.vllm_trace import GREEDY, VllmTrace, per_invoke, texts_of
from nnbench.families import RESIDUAL_PAIR, Modules
from nnbench.jobs import CellJob, CellOutput, PromptOutput
from nnbench.prompts import Prompt
from nnbench.vocab import Family

FAMILIES = tuple(Family)
ONE_FORWARD = ("interactive", "batched")
RELIES_ON = ("read_output:attention_weights",)


def _full_patterns(weights: torch.Tensor, lengths: list[int]) -> CellOutput:
    """``weights [B, heads, S, S]`` (left-padded) → per prompt ``[heads·n, n]`` over real tokens."""
    outputs = []
    for b, n in enumerate(lengths):
        pattern = weights[b, :, -n:, -n:].detach().to("cpu", torch.float32)
        outputs.append(PromptOutput({"pattern": pattern.reshape(-1, n)}))
    return CellOutput(tuple(outputs))


def _step_rows(rows: list[torch.Tensor], lengths: list[int]) -> CellOutput:
    """Per step ``[B, heads, keys]`` last-query rows → per prompt one dist per step, padding stripped."""
    outputs = []
    for b, n in enumerate(lengths):
        dists = {}
        for step, row in enumerate(rows):
            dists[f"pattern.step{step}"] = row[b, :, -(n + step):].detach().to("cpu", torch.float32)
        outputs.append(PromptOutput(dists))
    return CellOutput(tuple(outputs))


@cell("attention_pattern", FAMILIES, "hf", ONE_FORWARD, relies_on=RELIES_ON)
def attention_pattern_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    with model.trace(job.texts):
        weights = mods.attention(job.params.layer).output[1].save()  # [B, heads, S, S] (eager only)
    return _full_patterns(weights, real_lengths(model.tokenizer, job.texts))


@cell("attention_pattern", FAMILIES, "hf", "generation", relies_on=RELIES_ON + ("read_at_step:attention_weights",))
def attention_pattern_generation_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    steps = job.params.new_tokens
    with model.generate(job.texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False) as tracer:
        rows = list().save()
        for _ in tracer.iter[:steps]:
            rows.append(mods.attention(job.params.layer).output[1][:, :, -1])  # [B, heads, keys]
    return _step_rows(list(rows), real_lengths(model.tokenizer, job.texts))


@cell("attention_pattern", FAMILIES, "raw_hooks", ONE_FORWARD, relies_on=RELIES_ON)
def attention_pattern_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    seen: list[torch.Tensor] = []
    with forward_hooks((mods.attention(job.params.layer), lambda module, args, out: seen.append(out[1]))):
        model.forward(job.texts)
    return _full_patterns(seen[0], real_lengths(model.tokenizer, job.texts))


@cell("attention_pattern", FAMILIES, "raw_hooks", "generation", relies_on=RELIES_ON)
def attention_pattern_generation_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    rows: list[torch.Tensor] = []
    with forward_hooks((mods.attention(job.params.layer), lambda module, args, out: rows.append(out[1][:, :, -1]))):
        greedy_generate(model, model.encode(job.texts), job.params.new_tokens)
    return _step_rows(rows, real_lengths(model.tokenizer, job.texts))


# ---- TransformerLens: the pattern hook point, read from the cache ----
@cell("attention_pattern", FAMILIES, "transformer_lens", ONE_FORWARD, relies_on=RELIES_ON)
def attention_pattern_tl(model, job: CellJob) -> CellOutput:
    name = attention_pattern(job.params.layer)
    _, cache = model.run_with_cache(list(job.texts), names_filter=name, **text_input(job))
    return _full_patterns(cache[name], real_lengths(family_tokenizer(job.family, job.model), job.texts))


# ---- vLLM. Portable: the HF read, run unchanged; vLLM's paged/flash attention keeps no
# probabilities and its attention block returns one tensor. Aware: recompute softmax(q·kᵀ/√d)
# from the query and key the attention kernel is handed (its inputs: rotated q, k, flat). ----
VLLM = ("vllm_sync", "vllm_async", "vllm_serve")
AWARE_RELIES_ON = ("read_input:attention_kernel",)
STEP = ("read_at_step:attention_kernel",)


def _patterns(saves: dict) -> tuple[PromptOutput, ...]:
    """Per invoke, a pattern tensor → ``[rows, keys]`` (whatever shape it came back in)."""
    return tuple(PromptOutput({"pattern": p.float().cpu().reshape(-1, p.shape[-1])})
                 for p in per_invoke(saves, "pattern"))


def _step_patterns(saves: dict) -> tuple[PromptOutput, ...]:
    """Per invoke, ``[steps, ...]`` → one ``[rows, keys]`` block per decoding step, the NaN
    padding (keys a step did not have yet) stripped."""
    outputs = []
    for steps in per_invoke(saves, "pattern"):
        dists = {}
        for s, row in enumerate(steps.float().cpu()):
            row = row.reshape(-1, row.shape[-1])
            dists[f"pattern.step{s}"] = row[:, ~row[0].isnan()]
        outputs.append(PromptOutput(dists))
    return tuple(outputs)


@cell("attention_pattern", RESIDUAL_PAIR, VLLM, ONE_FORWARD, relies_on=RELIES_ON, variant="portable")
def attention_pattern_vllm_llama_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                          trace_kwargs: dict) -> VllmTrace:
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                pattern = model.model.layers[layer].self_attn.output[1].clone().save()  # HF: (output, weights)
    return VllmTrace(tracer, ("pattern",), _patterns)


@cell("attention_pattern", "gpt2", VLLM, ONE_FORWARD, relies_on=RELIES_ON, variant="portable")
def attention_pattern_vllm_gpt2_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                         trace_kwargs: dict) -> VllmTrace:
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                pattern = model.transformer.h[layer].attn.output[1].clone().save()
    return VllmTrace(tracer, ("pattern",), _patterns)


@cell("attention_pattern", RESIDUAL_PAIR, VLLM, "generation", relies_on=RELIES_ON, variant="portable")
def attention_pattern_generation_vllm_llama_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                                     trace_kwargs: dict) -> VllmTrace:
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    rows.append(model.model.layers[layer].self_attn.output[1].clone())
                pattern = torch.stack(rows).save()
    return VllmTrace(tracer, ("pattern",), _step_patterns)


@cell("attention_pattern", "gpt2", VLLM, "generation", relies_on=RELIES_ON, variant="portable")
def attention_pattern_generation_vllm_gpt2_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                                    trace_kwargs: dict) -> VllmTrace:
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    rows.append(model.transformer.h[layer].attn.output[1].clone())
                pattern = torch.stack(rows).save()
    return VllmTrace(tracer, ("pattern",), _step_patterns)


@cell("attention_pattern", RESIDUAL_PAIR, VLLM, ONE_FORWARD, relies_on=AWARE_RELIES_ON, variant="aware")
def attention_pattern_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """Queries and keys as vLLM's attention kernel receives them (after rotary), flat
    ``[tokens, heads·d]``; grouped-query keys are repeated to the query heads."""
    heads, kv_heads, d = family_attention_shape(job.family, job.model)
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                (q, k, v), _ = model.model.layers[layer].self_attn.attn.inputs
                n = q.shape[0]
                q = q.float().view(n, heads, d).transpose(0, 1)  # [heads, n, d]
                k = k.float().view(n, kv_heads, d).transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
                scores = q @ k.transpose(1, 2) / d**0.5
                future = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)
                pattern = scores.masked_fill(future, float("-inf")).softmax(-1).save()  # [heads, n, n]
    return VllmTrace(tracer, ("pattern",), _patterns)


@cell("attention_pattern", "gpt2", VLLM, ONE_FORWARD, relies_on=AWARE_RELIES_ON, variant="aware")
def attention_pattern_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    heads, _, d = family_attention_shape(job.family, job.model)
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                (q, k, v), _ = model.transformer.h[layer].attn.attn.inputs
                n = q.shape[0]
                q = q.float().view(n, heads, d).transpose(0, 1)
                k = k.float().view(n, heads, d).transpose(0, 1)
                scores = q @ k.transpose(1, 2) / d**0.5
                future = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)
                pattern = scores.masked_fill(future, float("-inf")).softmax(-1).save()
    return VllmTrace(tracer, ("pattern",), _patterns)


@cell("attention_pattern", RESIDUAL_PAIR, VLLM, "generation", relies_on=AWARE_RELIES_ON + STEP, variant="aware")
def attention_pattern_generation_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob,
                                            trace_kwargs: dict) -> VllmTrace:
    """Each step's last query against every key so far: the keys of earlier steps are kept
    (vLLM's own cache is paged and not exposed), the new token's key is appended."""
    heads, kv_heads, d = family_attention_shape(job.family, job.model)
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows, keys = [], []
                for _ in tracer.iter[:steps]:
                    (q, k, v), _ = model.model.layers[layer].self_attn.attn.inputs
                    n = k.shape[0]
                    keys.append(k.float().view(n, kv_heads, d).transpose(0, 1).repeat_interleave(heads // kv_heads, 0))  # a copy
                    last_q = q[-1:].float().view(1, heads, d).transpose(0, 1)  # [heads, 1, d]
                    scores = last_q @ torch.cat(keys, 1).transpose(1, 2) / d**0.5  # [heads, 1, keys]
                    rows.append(scores.softmax(-1)[:, 0])  # [heads, keys]
                width = rows[-1].shape[-1]  # one saved tensor: rows padded to the last step's keys
                pattern = torch.stack([F.pad(r, (0, width - r.shape[-1]), value=float("nan")) for r in rows]).save()
    return VllmTrace(tracer, ("pattern",), _step_patterns)


@cell("attention_pattern", "gpt2", VLLM, "generation", relies_on=AWARE_RELIES_ON + STEP, variant="aware")
def attention_pattern_generation_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob,
                                           trace_kwargs: dict) -> VllmTrace:
    heads, _, d = family_attention_shape(job.family, job.model)
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows, keys = [], []
                for _ in tracer.iter[:steps]:
                    (q, k, v), _ = model.transformer.h[layer].attn.attn.inputs
                    n = k.shape[0]
                    keys.append(k.float().clone().view(n, heads, d).transpose(0, 1))  # kept across steps: copy
                    last_q = q[-1:].float().view(1, heads, d).transpose(0, 1)
                    scores = last_q @ torch.cat(keys, 1).transpose(1, 2) / d**0.5
                    rows.append(scores.softmax(-1)[:, 0])
                width = rows[-1].shape[-1]  # one saved tensor: rows padded to the last step's keys
                pattern = torch.stack([F.pad(r, (0, width - r.shape[-1]), value=float("nan")) for r in rows]).save()
    return VllmTrace(tracer, ("pattern",), _step_patterns)


# ---- vLLM-Lens: no place for it ----
cell("attention_pattern", tuple(Family), "vllm_lens", ("interactive", "batched", "generation"), relies_on=RELIES_ON)(cannot_express(
    "its hooks see the residual stream only, and vLLM's attention kernels never form the pattern"))
