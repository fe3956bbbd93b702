"""Attribution patching: gradient × activation difference, a linear estimate of what patching
each layer's residual at each position from clean into corrupt would do to the logit difference.

metric = logit(clean answer) − logit(rival) at the corrupt run's last position;
attribution[layer, pos] = Σ_h (clean − corrupt)[layer, pos, h] · ∂metric/∂corrupt[layer, pos, h].
Needs gradients, so there is no generation form (``generate`` runs without autograd).
"""

from __future__ import annotations

import torch

from nnbench.cells.common import answer_ids, real_lengths
from nnbench.cells.hooks import RawModel, forward_hooks
from nnbench.cells.registry import cell
from nnbench.cells.vlens import cannot_express
from nnbench.cells.vllm_trace import GREEDY, VllmTrace, per_invoke, texts_of
from nnbench.families import RESIDUAL_PAIR, Modules
from nnbench.jobs import CellJob, CellOutput, PromptOutput
from nnbench.prompts import Prompt
from nnbench.vocab import Family

FAMILIES = tuple(Family)
ONE_FORWARD = ("interactive", "batched")
RELIES_ON = ("read_output:decoder_layer", "grad:decoder_layer")


def _per_pair(scores: torch.Tensor, corrupt_logits: torch.Tensor, lengths: list[int]) -> CellOutput:
    """``scores [B, layers, S]`` and last-position logits → per pair, padding stripped."""
    outputs = []
    for b, n in enumerate(lengths):
        dists = {"corrupt_next_token": corrupt_logits[b : b + 1].detach().float().softmax(-1).cpu()}
        values = {"attribution": scores[b, :, -n:].detach().to("cpu", torch.float32)}
        outputs.append(PromptOutput(dists, values))
    return CellOutput(tuple(outputs))


@cell("attribution_patching", FAMILIES, "hf", ONE_FORWARD, relies_on=RELIES_ON)
def attribution_patching_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    answer, rival = answer_ids(model.tokenizer, job.prompts)
    rows = torch.arange(len(job.prompts))
    with model.trace(job.texts):
        clean = torch.stack([layer.output for layer in mods.layers], dim=1).save()  # [B, L, S, H]
    with torch.enable_grad(), model.trace(job.corrupt_texts):
        acts = [layer.output for layer in mods.layers]
        logits = mods.unembed.output[:, -1]
        metric = (logits[rows, answer] - logits[rows, rival]).sum()
        with metric.backward():
            grads = [act.grad for act in reversed(acts)]  # gradients arrive in reverse order
        corrupt = torch.stack([a.detach() for a in acts], dim=1).save()
        grad = torch.stack(grads[::-1], dim=1).save()
        last_logits = logits.detach().save()
    scores = ((clean - corrupt) * grad).sum(-1)  # [B, L, S]
    return _per_pair(scores, last_logits, real_lengths(model.tokenizer, job.corrupt_texts))


@cell("attribution_patching", FAMILIES, "raw_hooks", ONE_FORWARD, relies_on=RELIES_ON)
def attribution_patching_raw(model: RawModel, job: CellJob) -> CellOutput:
    mods = Modules.of(model.module, job.family)
    answer, rival = answer_ids(model.tokenizer, job.prompts)
    rows = torch.arange(len(job.prompts))
    clean: list[torch.Tensor] = []
    with forward_hooks(*((layer, lambda m, a, out: clean.append(out)) for layer in mods.layers)):
        model.forward(job.texts)
    acts: list[torch.Tensor] = []
    with torch.enable_grad(), forward_hooks(*((layer, lambda m, a, out: acts.append(out)) for layer in mods.layers)):
        logits = model.forward(job.corrupt_texts).logits[:, -1]
        metric = (logits[rows, answer] - logits[rows, rival]).sum()
        grads = torch.autograd.grad(metric, acts)
    scores = ((torch.stack(clean, 1) - torch.stack(acts, 1).detach()) * torch.stack(grads, 1)).sum(-1)
    return _per_pair(scores, logits, real_lengths(model.tokenizer, job.corrupt_texts))


# ---- vLLM: the HF recipe on vLLM's layout. vLLM runs its forward under torch.inference_mode,
# so the backward is expected to fail: the map records the real exception. ----
VLLM = ("vllm_sync", "vllm_async", "vllm_serve")


def _attribution(saves: dict) -> tuple[PromptOutput, ...]:
    return tuple(PromptOutput({"corrupt_next_token": logits.float().softmax(-1).cpu()},
                              {"attribution": scores.float().cpu()})
                 for logits, scores in zip(per_invoke(saves, "corrupt_logits"), per_invoke(saves, "scores")))


@cell("attribution_patching", RESIDUAL_PAIR, VLLM, ONE_FORWARD, relies_on=RELIES_ON, variant="aware")
def attribution_patching_vllm_llama(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    """Asks vLLM for the gradient, the half of the recipe it cannot give. Only the corrupt pass is
    traced, so were the backward to succeed the scores would lack the clean term and the oracle
    would flag them: this cell can reach SILENTLY_WRONG or ERROR, never a false SUPPORTED."""
    answers, rivals = (ids.tolist() for ids in answer_ids(model.tokenizer, prompts))
    texts = texts_of(prompts, corrupt=True)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for i, text in enumerate(texts):
            with tracer.invoke(text):
                acts = []
                for layer in model.model.layers:
                    mlp_out, residual = layer.output
                    acts.append(mlp_out + residual)
                logits = model.logits
                metric = logits[0, answers[i]] - logits[0, rivals[i]]
                with metric.backward():
                    grads = [act.grad for act in reversed(acts)]
                scores = (torch.stack(grads[::-1]) * torch.stack(acts)).sum(-1).save()
                corrupt_logits = logits.save()
    return VllmTrace(tracer, ("corrupt_logits", "scores"), _attribution)


@cell("attribution_patching", "gpt2", VLLM, ONE_FORWARD, relies_on=RELIES_ON, variant="aware")
def attribution_patching_vllm_gpt2(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    answers, rivals = (ids.tolist() for ids in answer_ids(model.tokenizer, prompts))
    texts = texts_of(prompts, corrupt=True)
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for i, text in enumerate(texts):
            with tracer.invoke(text):
                acts = [layer.output for layer in model.transformer.h]
                logits = model.logits
                metric = logits[0, answers[i]] - logits[0, rivals[i]]
                with metric.backward():
                    grads = [act.grad for act in reversed(acts)]
                scores = (torch.stack(grads[::-1]) * torch.stack(acts)).sum(-1).save()
                corrupt_logits = logits.save()
    return VllmTrace(tracer, ("corrupt_logits", "scores"), _attribution)


# ---- vLLM-Lens: no place for it ----
cell("attribution_patching", tuple(Family), "vllm_lens", ("interactive", "batched", "generation"), relies_on=RELIES_ON)(cannot_express(
    "it needs gradients through the model, and vLLM runs the forward pass only"))
