"""Attention-pattern read: one layer's attention probabilities, every head, real tokens only.

Needs eager attention on HF (SDPA and flash kernels return no weights). Interactive/batched: the
full causal pattern ``[heads·n, n]`` of each prompt's n real tokens (padding stripped, so backends
that do not pad compare row for row). Generation: the last query's row at every decoding step.
"""

from __future__ import annotations

import torch

from nnbench.cells.common import real_lengths
from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.job import CellJob, CellOutput, PromptOutput
from nnbench.cells.registry import cell
from nnbench.cells.vllm_trace import GREEDY, VllmTrace
from nnbench.prompts import Prompt
from nnbench.families import Modules

FAMILIES = ("gpt2", "llama")
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


# ---- vLLM: the HF read, run unchanged. vLLM's paged/flash attention keeps no probabilities and
# its attention module returns one tensor, so this shows what a user porting the read gets. ----
VLLM = ("vllm_sync", "vllm_async", "vllm_serve")


def _pattern(saves: dict) -> PromptOutput:
    pattern = saves["pattern"].float().cpu()
    return PromptOutput({"pattern": pattern.reshape(-1, pattern.shape[-1])})


@cell("attention_pattern", "llama", VLLM, ONE_FORWARD, relies_on=RELIES_ON)
def attention_pattern_vllm_llama(model, prompt: Prompt, job: CellJob, trace_kwargs: dict) -> VllmTrace:
    layer = job.params.layer
    with model.trace(prompt.text, max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        pattern = model.model.layers[layer].self_attn.output[1].clone().save()  # HF: (output, weights)
    return VllmTrace(tracer, _pattern)


@cell("attention_pattern", "gpt2", VLLM, ONE_FORWARD, relies_on=RELIES_ON)
def attention_pattern_vllm_gpt2(model, prompt: Prompt, job: CellJob, trace_kwargs: dict) -> VllmTrace:
    layer = job.params.layer
    with model.trace(prompt.text, max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        pattern = model.transformer.h[layer].attn.output[1].clone().save()
    return VllmTrace(tracer, _pattern)
