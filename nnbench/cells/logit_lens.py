"""Logit lens: decode every layer's residual stream through the final norm and the unembedding."""

from __future__ import annotations

from functools import partial

import torch

from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.lens import resid_post, text_input
from nnbench.cells.registry import cell
from nnbench.cells.vene import VeneModel
from nnbench.cells.vlens import LensLLM, saved
from nnbench.cells.vllm_trace import GREEDY, VllmTrace, per_invoke, texts_of
from nnbench.families import RESIDUAL_PAIR, Modules
from nnbench.jobs import CellJob, CellOutput, PromptOutput, per_prompt
from nnbench.prompts import Prompt
from nnbench.vocab import Family

FAMILIES = tuple(Family)
ONE_FORWARD = ("interactive", "batched")
RELIES_ON = ("read_output:decoder_layer", "call:final_norm", "call:unembed")


@cell("logit_lens", FAMILIES, "hf", ONE_FORWARD, relies_on=RELIES_ON)
def logit_lens_hf(model, job: CellJob) -> CellOutput:
    """Every layer's last-position residual → final norm → unembedding → softmax."""
    mods = Modules.of(model, job.family)
    with model.trace(job.texts):
        lens = []
        for layer in mods.layers:
            resid = layer.output[:, -1]  # [B, H]: the last real token (left padding)
            lens.append(mods.unembed(mods.final_norm(resid)))
        probs = torch.stack(lens, dim=1).softmax(-1).save()  # [B, layers, V]
    return per_prompt({"lens": probs})


@cell("logit_lens", FAMILIES, "hf", "generation", relies_on=RELIES_ON + ("read_at_step:decoder_layer",))
def logit_lens_generation_hf(model, job: CellJob) -> CellOutput:
    """The lens at every layer, at every greedy decoding step."""
    mods = Modules.of(model, job.family)
    steps = job.params.new_tokens
    with model.generate(job.texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False) as tracer:
        per_step = list().save()
        for _ in tracer.iter[:steps]:
            lens = [mods.unembed(mods.final_norm(layer.output[:, -1])) for layer in mods.layers]
            per_step.append(torch.stack(lens, dim=1))  # [B, layers, V]
    probs = torch.stack(list(per_step), dim=1).softmax(-1)  # [B, steps, layers, V]
    return per_prompt({"lens": probs}, steps=job.params.new_tokens)


@cell("logit_lens", FAMILIES, "raw_hooks", ONE_FORWARD, relies_on=RELIES_ON)
def logit_lens_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    resids: list[torch.Tensor] = []
    keep_last = lambda module, args, out: resids.append(out[:, -1])
    with forward_hooks(*((layer, keep_last) for layer in mods.layers)):
        model.forward(job.texts)
    lens = [mods.unembed(mods.final_norm(r)) for r in resids]
    return per_prompt({"lens": torch.stack(lens, dim=1).softmax(-1)})


@cell("logit_lens", FAMILIES, "raw_hooks", "generation", relies_on=RELIES_ON)
def logit_lens_generation_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    resids: list[torch.Tensor] = []  # layer-major within each forward call (one call per step)
    keep_last = lambda module, args, out: resids.append(out[:, -1])
    with forward_hooks(*((layer, keep_last) for layer in mods.layers)):
        greedy_generate(model, model.encode(job.texts), job.params.new_tokens)
    n_layers = len(mods.layers)
    lens = torch.stack([mods.unembed(mods.final_norm(r)) for r in resids], dim=1)  # [B, steps*layers, V]
    lens = lens.reshape(lens.shape[0], -1, n_layers, lens.shape[-1])
    return per_prompt({"lens": lens.softmax(-1)}, steps=job.params.new_tokens)


# ---- TransformerLens: run_with_cache over every block's residual, then ln_final and unembed ----
@cell("logit_lens", FAMILIES, "transformer_lens", ONE_FORWARD, relies_on=RELIES_ON)
def logit_lens_tl(model, job: CellJob) -> CellOutput:
    names = [resid_post(layer) for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(list(job.texts), names_filter=names, **text_input(job))
    lens = [model.unembed(model.ln_final(cache[name][:, -1:]))[:, 0] for name in names]  # [B, V] each
    return per_prompt({"lens": torch.stack(lens, dim=1).softmax(-1)})


# ---- pyvene: a collect intervention on every block's output at the last position ----
@cell("logit_lens", FAMILIES, "pyvene", ONE_FORWARD, relies_on=RELIES_ON)
def logit_lens_pyvene(model: VeneModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    layers = range(model.module.config.num_hidden_layers)
    config = model.pv.IntervenableConfig(
        [{"layer": layer, "component": "block_output", "intervention_type": model.pv.CollectIntervention} for layer in layers])
    collect = model.pv.IntervenableModel(config, model.module)
    batch = model.batch(job.texts)
    last = [[[batch["input_ids"].shape[1] - 1]] * len(job.texts)] * len(layers)  # [layers][batch][positions]
    (_, resids), _ = collect(batch, unit_locations={"base": last})  # per layer [B, 1, H]
    lens = [mods.unembed(mods.final_norm(r[:, 0])) for r in resids]
    return per_prompt({"lens": torch.stack(lens, dim=1).softmax(-1)})


# ---- vLLM: one invoke per prompt; flat [tokens, hidden] activations; lm_head cannot be called, so
# the unembedding is a matmul with its weight (and GPT-2's rows are padded past the vocabulary) ----
VLLM = ("vllm_sync", "vllm_async", "vllm_serve")
VLLM_RELIES_ON = ("read_output:decoder_layer", "call:final_norm", "read:unembed_weight")
STEP = ("read_at_step:decoder_layer",)


def _lens(saves: dict, steps: int = 1) -> tuple[PromptOutput, ...]:
    return tuple(PromptOutput({"lens": t.float().cpu()}, steps=steps) for t in per_invoke(saves, "lens"))


@cell("logit_lens", RESIDUAL_PAIR, VLLM, ONE_FORWARD, relies_on=VLLM_RELIES_ON + ("sum:dual_residual",), variant="aware")
def logit_lens_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """vLLM's Llama layer returns (mlp_out, residual); the residual stream is their sum."""
    texts = texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for layer in model.model.layers:
                    mlp_out, residual = layer.output  # each [tokens, H]
                    resid = mlp_out[-1:] + residual[-1:]  # a fresh tensor: the fused norm must not touch the pair
                    rows.append(model.model.norm(resid) @ model.lm_head.weight.T)
                lens = torch.cat(rows).softmax(-1).save()  # [layers, V]
    return VllmTrace(tracer, ("lens",), _lens)


@cell("logit_lens", RESIDUAL_PAIR, VLLM, ONE_FORWARD, relies_on=VLLM_RELIES_ON, variant="portable")
def logit_lens_vllm_llama_portable(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """The HF lens with its loud failures fixed the HF way: a tuple layer output is read as
    ``out[0]`` (transformers 4.x's habit), which on vLLM is the MLP's output, not the stream."""
    texts = texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for layer in model.model.layers:
                    resid = layer.output[0][-1:]  # HF habit: out[0] of a tuple
                    rows.append(model.model.norm(resid.clone()) @ model.lm_head.weight.T)
                lens = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("lens",), _lens)


@cell("logit_lens", "gpt2", VLLM, ONE_FORWARD, relies_on=VLLM_RELIES_ON, variant="aware")
def logit_lens_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """vLLM's GPT-2 block returns the residual stream itself (so the portable form is this code)."""
    vocab, texts = model.tokenizer.vocab_size, texts_of(prompts)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for layer in model.transformer.h:
                    resid = layer.output[-1:]  # [1, H]
                    rows.append((model.transformer.ln_f(resid) @ model.lm_head.weight.T)[:, :vocab])
                lens = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("lens",), _lens)


@cell("logit_lens", RESIDUAL_PAIR, VLLM, "generation", relies_on=VLLM_RELIES_ON + ("sum:dual_residual",) + STEP,
      variant="aware")
def logit_lens_generation_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """The lens at every layer at every decoding step (each step's last token)."""
    steps, texts = job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    for layer in model.model.layers:
                        mlp_out, residual = layer.output
                        resid = mlp_out[-1:] + residual[-1:]
                        rows.append(model.model.norm(resid) @ model.lm_head.weight.T)
                lens = torch.cat(rows).softmax(-1).save()  # [steps·layers, V], step-major
    return VllmTrace(tracer, ("lens",), partial(_lens, steps=steps))


@cell("logit_lens", RESIDUAL_PAIR, VLLM, "generation", relies_on=VLLM_RELIES_ON + STEP, variant="portable")
def logit_lens_generation_vllm_llama_portable(model, prompts: tuple[Prompt, ...], job: CellJob,
                                              trace_kwargs: dict) -> VllmTrace:
    steps, texts = job.params.new_tokens, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    for layer in model.model.layers:
                        resid = layer.output[0][-1:]  # HF habit: out[0] of a tuple
                        rows.append(model.model.norm(resid.clone()) @ model.lm_head.weight.T)
                lens = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("lens",), partial(_lens, steps=steps))


@cell("logit_lens", "gpt2", VLLM, "generation", relies_on=VLLM_RELIES_ON + STEP, variant="aware")
def logit_lens_generation_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    steps, vocab, texts = job.params.new_tokens, model.tokenizer.vocab_size, texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    for layer in model.transformer.h:
                        resid = layer.output[-1:]
                        rows.append((model.transformer.ln_f(resid) @ model.lm_head.weight.T)[:, :vocab])
                lens = torch.cat(rows).softmax(-1).save()
    return VllmTrace(tracer, ("lens",), partial(_lens, steps=steps))


# ---- vLLM-Lens: its own example's form, a Hook on every layer that projects the residual through
# the model's final norm and unembedding weight on the GPU and saves the result in ``ctx.saved`` ----
@cell("logit_lens", FAMILIES, "vllm_lens", ("interactive", "batched", "generation"), relies_on=RELIES_ON)
def logit_lens_vllm_lens(model: LensLLM, job: CellJob) -> CellOutput:
    steps = job.params.new_tokens if job.generates else 1
    hook = model.lens_hook(range(model.layers), "lens")
    runs = model.generate(job.texts, [{"apply_hooks": [hook]} for _ in job.texts], steps=steps)
    lens = [torch.stack([torch.stack(saved(run, f"lens_{i}")[:steps]) for i in range(model.layers)], dim=1)  # [steps, layers, V]
            for run in runs]
    return per_prompt({"lens": torch.stack(lens)}, steps=steps)
