"""The primitives, written once for nnsight and once for plain hooks, over any module path.

Level 0 reads a value; Level 1 writes one and reads the next-token distribution it leads to.
A module whose output is a tuple (HF attention: ``(output, weights)``) is read and written
through its first element.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch

from nnbench.cells.common import family_config, steering_vector
from nnbench.cells.hooks import RawModel, forward_hooks, greedy_generate
from nnbench.cells.vllm_trace import VllmTrace
from nnbench.families import resolve
from nnbench.jobs import CellOutput, CellParams, PromptOutput
from nnbench.unprobed import NOT_PROBED  # noqa: F401 - re-exported for the probe map
from nnbench.vocab import Family

FORCED_TOKEN = 13  # any id both vocabularies have
EDIT_FACTOR = 3.0
"""edit in place multiplies the last position by this; at 2 SmolLM2's embedding edit moved the next
token by TV 0.049, under the 10x STRICT a write probe needs to certify anything"""
ADD_SCALE = 2.0
"""add a vector adds a seeded random direction of this many times each row's own norm, so every
module kind is moved well past 10x STRICT (least: SmolLM2's attention, TV 0.108; at 0.5 it was
0.033). The old fixed norm of 4 moved SmolLM2's layers by TV 0.03 and the synthetic GPT-2's final
norm (gain 12) by 0.02, and the constant it added to the logits moved nothing at all."""


class Primitive(StrEnum):
    READ_OUTPUT = "read_output"
    READ_OUTPUT_CLONED = "read_output_cloned"
    READ_INPUT = "read_input"
    READ_AT_STEP = "read_at_step"
    EDIT_IN_PLACE = "edit_in_place"
    REPLACE = "replace"
    ZERO = "zero"
    ADD_VECTOR = "add_vector"
    FORCE_TOKEN = "force_token"


LEVEL = {p: 0 for p in (Primitive.READ_OUTPUT, Primitive.READ_OUTPUT_CLONED, Primitive.READ_INPUT, Primitive.READ_AT_STEP)}
LEVEL |= {p: 1 for p in Primitive if p not in LEVEL}

_LLAMA_PATHS = {
    "embedding": "model.embed_tokens", "decoder_layer": "model.layers.{L}", "attention": "model.layers.{L}.self_attn",
    "attention_projection": "model.layers.{L}.self_attn.o_proj", "mlp": "model.layers.{L}.mlp",
    "mlp_projection": "model.layers.{L}.mlp.down_proj", "final_norm": "model.norm", "unembed": "lm_head",
    "logits": "lm_head",
}
MODULE_PATHS: dict[Family, dict[str, str]] = {
    Family.LLAMA: _LLAMA_PATHS,
    Family.QWEN2: _LLAMA_PATHS,  # the same tree in transformers 5 and in vLLM 0.26
    Family.GEMMA3: _LLAMA_PATHS,
    Family.GPT2: {
        "embedding": "transformer.wte", "decoder_layer": "transformer.h.{L}", "attention": "transformer.h.{L}.attn",
        "attention_projection": "transformer.h.{L}.attn.c_proj", "mlp": "transformer.h.{L}.mlp",
        "mlp_projection": "transformer.h.{L}.mlp.c_proj", "final_norm": "transformer.ln_f", "unembed": "lm_head",
        "logits": "lm_head",
    },
}
"""module kind → dotted path in each family's HF tree (``{L}``: the probed layer). "logits" is the
head's output on HF and ``model.logits`` on vLLM, whose lm_head is never called."""

LOGITS_PRIMITIVES = (Primitive.READ_OUTPUT, Primitive.READ_OUTPUT_CLONED, Primitive.READ_AT_STEP, Primitive.FORCE_TOKEN)


def applies(primitive: Primitive, module_kind: str) -> bool:
    """Forcing a token is a write to the logits; the logits are read and forced, nothing else."""
    if module_kind == "logits":
        return primitive in LOGITS_PRIMITIVES
    return primitive != Primitive.FORCE_TOKEN


@dataclass(frozen=True, slots=True)
class Probe:
    primitive: Primitive
    module_kind: str
    family: Family
    text: str
    layer: int = 6
    model: str = ""
    """as ``CellJob.model``: a built-in model's name or a directory; empty: the family's default"""

    @property
    def path(self) -> str:
        return MODULE_PATHS[self.family][self.module_kind].format(L=self.layer)

    @property
    def label(self) -> str:
        return f"{self.primitive}:{self.module_kind}"


def _first(x):
    return x[0] if isinstance(x, tuple) else x


def _read(value: torch.Tensor) -> CellOutput:
    return CellOutput((PromptOutput({}, {"read": value.detach().to("cpu", torch.float32)}),))


def _next(logits: torch.Tensor, steps: int = 1) -> CellOutput:
    return CellOutput((PromptOutput({"next_token": logits.detach().float().softmax(-1).cpu()}, steps=steps),))


def _direction(width: int) -> torch.Tensor:
    """A seeded unit direction of ``width`` (the module output's last dim), float32 on CPU."""
    return steering_vector(width, CellParams(alpha=1.0), Family.LLAMA)  # the norm is given: the family is not used


def _width(family: Family, module_kind: str, model: str = "") -> int:
    """The last dim of a probed module's output: the vocabulary for the head, else the hidden size."""
    config = family_config(family, model)
    return int(config.vocab_size) if module_kind in ("unembed", "logits") else int(config.hidden_size)


def run_nnsight(model, probe: Probe) -> CellOutput:
    """The primitive through nnsight (``hf`` backend)."""
    module = resolve(model, probe.path)
    p = probe.primitive
    if p in (Primitive.READ_OUTPUT, Primitive.READ_OUTPUT_CLONED):
        with model.trace(probe.text):
            value = _first(module.output)[0, -1]
            value = (value.clone() if p == Primitive.READ_OUTPUT_CLONED else value).save()
        return _read(value)
    if p == Primitive.READ_INPUT:
        with model.trace(probe.text):
            value = module.input[0, -1].save()
        return _read(value)
    if p == Primitive.READ_AT_STEP:
        with model.generate(probe.text, max_new_tokens=2, min_new_tokens=2, do_sample=False) as tracer:
            for step in tracer.iter[:2]:
                if step == 1:
                    value = _first(module.output)[0, -1].clone().save()
        return _read(value)
    if p == Primitive.FORCE_TOKEN:
        with model.generate(probe.text, max_new_tokens=2, min_new_tokens=2, do_sample=False) as tracer:
            rows = list().save()
            for step in tracer.iter[:2]:
                if step == 0:
                    forced = torch.full_like(model.lm_head.output[:, -1], -1e4)
                    forced[:, FORCED_TOKEN] = 1e4
                    model.lm_head.output[:, -1] = forced
                rows.append(model.lm_head.output[0, -1])
        return _next(torch.stack(list(rows)), steps=2)
    vector = _direction(_width(probe.family, probe.module_kind, probe.model))
    with model.trace(probe.text):
        out = _first(module.output)
        if p == Primitive.EDIT_IN_PLACE:
            out[:, -1] *= EDIT_FACTOR
        elif p == Primitive.REPLACE:
            new = out * 0.5
            if isinstance(module.output, tuple):
                module.output = (new, *module.output[1:])
            else:
                module.output = new
        elif p == Primitive.ZERO:
            out[:] = 0
        elif p == Primitive.ADD_VECTOR:
            out += ADD_SCALE * out.norm(dim=-1, keepdim=True) * vector.to(out.device, out.dtype)
        logits = model.lm_head.output[0, -1:].save()
    return _next(logits)


def run_hooks(model: RawModel, probe: Probe) -> CellOutput:
    """The same primitive with plain forward hooks (``raw_hooks`` backend)."""
    module = resolve(model.module, probe.path)
    p = probe.primitive
    seen: list = []
    if p == Primitive.READ_INPUT:
        # the first argument, positional or not (HF attention is called with keywords only)
        def keep_input(m, args, kwargs):
            seen.append((args[0] if args else next(iter(kwargs.values())))[0, -1])

        handle = module.register_forward_pre_hook(keep_input, with_kwargs=True)
        try:
            model.forward([probe.text])
        finally:
            handle.remove()
        return _read(seen[0])
    if p in (Primitive.READ_OUTPUT, Primitive.READ_OUTPUT_CLONED):
        with forward_hooks((module, lambda m, args, out: seen.append(_first(out)[0, -1].clone()))):
            model.forward([probe.text])
        return _read(seen[0])
    if p == Primitive.READ_AT_STEP:
        with forward_hooks((module, lambda m, a, out: seen.append(_first(out)[0, -1].clone()))):
            greedy_generate(model, model.encode([probe.text]), 2)
        return _read(seen[1])
    if p == Primitive.FORCE_TOKEN:
        calls = [0]

        def force(m, a, out):
            calls[0] += 1
            if calls[0] == 1:
                out = out.clone()
                out[:, -1] = -1e4
                out[:, -1, FORCED_TOKEN] = 1e4
            return out

        with forward_hooks((model.module.lm_head, force)):
            logits = greedy_generate(model, model.encode([probe.text]), 2)
        return _next(logits[0], steps=2)
    vector = _direction(_width(probe.family, probe.module_kind, probe.model))

    def write(m, a, out):
        first = _first(out)
        if p == Primitive.EDIT_IN_PLACE:
            first[:, -1] *= EDIT_FACTOR
            return out
        if p == Primitive.REPLACE:
            new = first * 0.5
            return (new, *out[1:]) if isinstance(out, tuple) else new
        if p == Primitive.ZERO:
            first[:] = 0
            return out
        first += ADD_SCALE * first.norm(dim=-1, keepdim=True) * vector.to(first.device, first.dtype)
        return out

    with forward_hooks((module, write)):
        logits = model.forward([probe.text]).logits
    return _next(logits[0, -1:])


def vllm_probe(model, prompts: tuple, job, trace_kwargs: dict, *, probe: Probe) -> VllmTrace:
    """The primitive on nnsight's ``VLLM``, as a one-prompt vLLM cell, so every vLLM backend
    (sync, async, serve) runs it through its own trace driver.

    Written the HF way for vLLM's flat ``[tokens, hidden]`` layout: ``x[-1]`` for ``x[0, -1]``,
    ``model.logits`` for the head's output, a tuple output through its first element (Llama's
    decoder layer: ``(mlp_out, residual)``, so the read is what a naive port reads). Nothing is
    cloned unless the primitive says so: READ_OUTPUT against READ_OUTPUT_CLONED is the
    in-place-buffer question.
    """
    text, parts, p = prompts[0].text, probe.path.split("."), probe.primitive
    logits_kind = probe.module_kind == "logits"
    if p in (Primitive.READ_OUTPUT, Primitive.READ_OUTPUT_CLONED, Primitive.READ_INPUT):
        clone, read_input = p == Primitive.READ_OUTPUT_CLONED, p == Primitive.READ_INPUT
        with model.trace(text, max_tokens=1, temperature=0.0, **trace_kwargs) as tracer:
            module = model
            for part in parts:
                module = getattr(module, part)
            if read_input:
                value = module.input[-1]
            elif logits_kind:
                value = model.logits[-1]
            else:
                out = module.output
                value = (out[0] if isinstance(out, tuple) else out)[-1]
            value = value.clone() if clone else value
            value.save()
        return VllmTrace(tracer, ("value",), lambda saves: (_read(saves["value"]).per_prompt[0],))
    if p == Primitive.READ_AT_STEP:
        with model.trace(text, max_tokens=2, temperature=0.0, ignore_eos=True, **trace_kwargs) as tracer:
            module = model
            for part in parts:
                module = getattr(module, part)
            for step in tracer.iter[:2]:
                out = model.logits if logits_kind else module.output
                if step == 1:
                    value = (out[0] if isinstance(out, tuple) else out)[-1].clone().save()
        return VllmTrace(tracer, ("value",), lambda saves: (_read(saves["value"]).per_prompt[0],))
    if p == Primitive.FORCE_TOKEN:
        with model.trace(text, max_tokens=2, temperature=0.0, ignore_eos=True, **trace_kwargs) as tracer:
            rows = []
            for step in tracer.iter[:2]:
                logits = model.logits  # [1, V]: the last position, before sampling
                if step == 0:
                    logits[:] = -1e4
                    logits[:, FORCED_TOKEN] = 1e4
                rows.append(logits.clone())
            forced = torch.cat(rows).save()  # one tensor: a saved list does not come back from serve
        return VllmTrace(tracer, ("forced",), lambda saves: (_next(saves["forced"], steps=2).per_prompt[0],))
    vector, factor, scale = _direction(_width(probe.family, probe.module_kind, probe.model)), EDIT_FACTOR, ADD_SCALE
    with model.trace(text, max_tokens=1, temperature=0.0, **trace_kwargs) as tracer:
        module = model
        for part in parts:
            module = getattr(module, part)
        out = module.output
        first = out[0] if isinstance(out, tuple) else out
        if p == Primitive.EDIT_IN_PLACE:
            first[-1] *= factor
        elif p == Primitive.REPLACE:
            module.output = (first * 0.5, *out[1:]) if isinstance(out, tuple) else first * 0.5
        elif p == Primitive.ZERO:
            first[:] = 0
        elif p == Primitive.ADD_VECTOR:
            first += scale * first.norm(dim=-1, keepdim=True) * vector.to(first.device, first.dtype)
        logits = model.logits.clone().save()
    return VllmTrace(tracer, ("logits",), lambda saves: (_next(saves["logits"]).per_prompt[0],))


def labels() -> set[str]:
    """Every probe label ``primitive:module_kind`` the map can hold."""
    kinds = {kind for paths in MODULE_PATHS.values() for kind in paths}
    return {f"{p}:{kind}" for p in Primitive for kind in kinds if applies(p, kind)}


"""Primitives cells rely on that have no probe of their own, with what they are."""
