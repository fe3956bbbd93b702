"""Zero-ablation: knock out one layer's MLP output and read the next-token distribution.

Generation workload: the MLP stays knocked out at every decoding step.
"""

from __future__ import annotations

from functools import partial

import torch

from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.lens import logits_with_hooks, mlp_out
from nnbench.cells.registry import cell
from nnbench.cells.vene import VeneModel
from nnbench.cells.vlens import cannot_express
from nnbench.cells.vllm_trace import GREEDY, VllmTrace, next_token_rows, texts_of
from nnbench.families import RESIDUAL_PAIR, Modules
from nnbench.jobs import CellJob, CellOutput, per_prompt
from nnbench.prompts import Prompt
from nnbench.vocab import Family

FAMILIES = tuple(Family)
ONE_FORWARD = ("interactive", "batched")
RELIES_ON = ("zero:mlp", "read_output:logits")


@cell("zero_ablation", FAMILIES, "hf", ONE_FORWARD, relies_on=RELIES_ON)
def zero_ablation_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    with model.trace(job.texts):
        mlp = mods.mlp(job.params.layer)
        mlp.output = torch.zeros_like(mlp.output)
        probs = mods.unembed.output[:, -1].softmax(-1).save()
    return per_prompt({"next_token": probs})


@cell("zero_ablation", FAMILIES, "hf", "generation", relies_on=RELIES_ON + ("zero_at_step:mlp",))
def zero_ablation_generation_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    steps = job.params.new_tokens
    with model.generate(job.texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False) as tracer:
        per_step = list().save()
        for _ in tracer.iter[:steps]:
            mlp = mods.mlp(job.params.layer)
            mlp.output = torch.zeros_like(mlp.output)
            per_step.append(mods.unembed.output[:, -1])
    return per_prompt({"next_token": torch.stack(list(per_step), dim=1).softmax(-1)}, steps=job.params.new_tokens)


def _zero(module, args, out):
    return torch.zeros_like(out)


@cell("zero_ablation", FAMILIES, "raw_hooks", ONE_FORWARD, relies_on=RELIES_ON)
def zero_ablation_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    with forward_hooks((mods.mlp(job.params.layer), _zero)):
        logits = model.forward(job.texts).logits
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


@cell("zero_ablation", FAMILIES, "raw_hooks", "generation", relies_on=RELIES_ON)
def zero_ablation_generation_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    with forward_hooks((mods.mlp(job.params.layer), _zero)):
        logits = greedy_generate(model, model.encode(job.texts), job.params.new_tokens)
    return per_prompt({"next_token": logits.softmax(-1)}, steps=job.params.new_tokens)


# ---- TransformerLens: the MLP's output hook returns zeros ----
@cell("zero_ablation", FAMILIES, "transformer_lens", ONE_FORWARD, relies_on=RELIES_ON)
def zero_ablation_tl(model, job: CellJob) -> CellOutput:
    zero = lambda out, hook: torch.zeros_like(out)
    logits = logits_with_hooks(model, job, job.texts, (mlp_out(job.params.layer), zero))
    return per_prompt({"next_token": logits[:, -1].softmax(-1)})


# ---- pyvene: a zero intervention on the MLP's output ----
@cell("zero_ablation", FAMILIES, "pyvene", ONE_FORWARD, relies_on=RELIES_ON)
def zero_ablation_pyvene(model: VeneModel, job: CellJob) -> CellOutput:
    ablate = model.intervenable(job.params.layer, "mlp_output", model.pv.ZeroIntervention)
    _, out = ablate(model.batch(job.texts))
    return per_prompt({"next_token": out.logits[:, -1].softmax(-1)})


# ---- vLLM: both families' MLP returns one [tokens, hidden] tensor. The aware form zeroes vLLM's
# buffer in place; the portable form is HF's assignment of a new tensor. ----
VLLM = ("vllm_sync", "vllm_async", "vllm_serve")
AT_STEP = ("zero_at_step:mlp",)


@cell("zero_ablation", RESIDUAL_PAIR, VLLM, ONE_FORWARD, relies_on=RELIES_ON, variant="aware")
def zero_ablation_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                model.model.layers[layer].mlp.output[:] = 0  # in place: vLLM hands out views of its buffers
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=1))


@cell("zero_ablation", RESIDUAL_PAIR, VLLM, ONE_FORWARD, relies_on=("replace:mlp", "read_output:logits"), variant="portable")
def zero_ablation_vllm_llama_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                      trace_kwargs: dict) -> VllmTrace:
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                mlp = model.model.layers[layer].mlp
                mlp.output = torch.zeros_like(mlp.output)  # HF's form: a new tensor in its place
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=1))


@cell("zero_ablation", "gpt2", VLLM, ONE_FORWARD, relies_on=RELIES_ON, variant="aware")
def zero_ablation_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                model.transformer.h[layer].mlp.output[:] = 0
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=1))


@cell("zero_ablation", "gpt2", VLLM, ONE_FORWARD, relies_on=("replace:mlp", "read_output:logits"), variant="portable")
def zero_ablation_vllm_gpt2_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                     trace_kwargs: dict) -> VllmTrace:
    layer, texts = job.params.layer, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                mlp = model.transformer.h[layer].mlp
                mlp.output = torch.zeros_like(mlp.output)
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=1))


@cell("zero_ablation", RESIDUAL_PAIR, VLLM, "generation", relies_on=RELIES_ON + AT_STEP, variant="aware")
def zero_ablation_generation_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob,
                                        trace_kwargs: dict) -> VllmTrace:
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    model.model.layers[layer].mlp.output[:] = 0
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


@cell("zero_ablation", RESIDUAL_PAIR, VLLM, "generation", relies_on=("replace:mlp", "read_output:logits") + AT_STEP,
      variant="portable")
def zero_ablation_generation_vllm_llama_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                                 trace_kwargs: dict) -> VllmTrace:
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    mlp = model.model.layers[layer].mlp
                    mlp.output = torch.zeros_like(mlp.output)
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


@cell("zero_ablation", "gpt2", VLLM, "generation", relies_on=RELIES_ON + AT_STEP, variant="aware")
def zero_ablation_generation_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob,
                                       trace_kwargs: dict) -> VllmTrace:
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    model.transformer.h[layer].mlp.output[:] = 0
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


@cell("zero_ablation", "gpt2", VLLM, "generation", relies_on=("replace:mlp", "read_output:logits") + AT_STEP,
      variant="portable")
def zero_ablation_generation_vllm_gpt2_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                                trace_kwargs: dict) -> VllmTrace:
    layer, steps, texts = job.params.layer, job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    mlp = model.transformer.h[layer].mlp
                    mlp.output = torch.zeros_like(mlp.output)
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


# ---- vLLM-Lens: no place for it ----
cell("zero_ablation", tuple(Family), "vllm_lens", ("interactive", "batched", "generation"), relies_on=RELIES_ON)(cannot_express(
    "its hooks see a decoder layer's input and output (the residual stream); the MLP's output inside the layer is neither"))
