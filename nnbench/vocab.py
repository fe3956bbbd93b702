"""The words of nnbench: every string a scenario, spec or result may carry, as a StrEnum.

Names in code equal the strings in TOML and JSON (``Methodology.LOGIT_LENS == "logit_lens"``),
so a result file reads the same as the code that produced it.
"""

from __future__ import annotations

from enum import StrEnum


class Methodology(StrEnum):
    LOGIT_LENS = "logit_lens"
    STEERING = "steering"
    ACTIVATION_PATCHING = "activation_patching"
    ZERO_ABLATION = "zero_ablation"
    ATTENTION_PATTERN = "attention_pattern"
    ATTRIBUTION_PATCHING = "attribution_patching"
    GENERATION_STEERING = "generation_steering"


class Family(StrEnum):
    GPT2 = "gpt2"
    LLAMA = "llama"
    QWEN2 = "qwen2"
    GEMMA3 = "gemma3"


DEFAULT_FAMILIES: tuple[Family, ...] = (Family.GPT2, Family.LLAMA)
"""What a sweep, suite or probe map runs unless told: the two families whose models the install
command brings (qwen2 and gemma3 need their weight packages: see the README's model table)."""


class BackendName(StrEnum):
    HF = "hf"
    RAW_HOOKS = "raw_hooks"
    VLLM_SYNC = "vllm_sync"
    VLLM_ASYNC = "vllm_async"
    VLLM_SERVE = "vllm_serve"
    TRANSFORMER_LENS = "transformer_lens"
    """a peer system: TransformerLens 4's TransformerBridge over the same HF model (``[peers]`` extra)"""
    PYVENE = "pyvene"
    """a peer system: pyvene's IntervenableModel over the same HF model (``[peers]`` extra)"""
    VLLM_LENS = "vllm_lens"
    """a peer system on the GPU: vLLM with the vllm-lens plugin (its own process; no PyPI release here)"""
    NULL = "null"


class Dtype(StrEnum):
    """The precisions a backend runs at; float32 is the reference's."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


DTYPES: tuple[str, ...] = tuple(d.value for d in Dtype)


def is_device(name: object) -> bool:
    """``cpu``, ``cuda`` or ``cuda:N``: the device names every spec, scenario and flag accepts."""
    if not isinstance(name, str):
        return False
    return name in ("cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


class Workload(StrEnum):
    INTERACTIVE = "interactive"
    BATCHED = "batched"
    GENERATION = "generation"


class Variant(StrEnum):
    """Which form of a methodology a vLLM cell runs; hf and raw_hooks cells have just one (NONE).

    PORTABLE is the HF cell's code with only its loud failures fixed the way HF habits suggest
    (``model.logits`` for the head, ``x[-1]`` for the flat token axis, ``out[0]`` where a layer
    returns a tuple); AWARE is written for vLLM's layouts. Both exist where they differ, so the
    map shows what a user who ports naively gets.
    """

    NONE = ""
    PORTABLE = "portable"
    AWARE = "aware"


class State(StrEnum):
    """The one verdict every cell, probe and load-generator response ends in."""

    SUPPORTED = "SUPPORTED"
    SUPPORTED_DEGRADED = "SUPPORTED_DEGRADED"
    SILENTLY_WRONG = "SILENTLY_WRONG"
    ERROR = "ERROR"
    NO_REFERENCE = "NO_REFERENCE"


def parse(enum: type[StrEnum], value: object, field: str) -> StrEnum:
    """Turn ``value`` into a member of ``enum`` or raise one line naming the field and the choices."""
    try:
        return enum(value)  # type: ignore[arg-type]  # a non-string is refused by the enum itself
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise ValueError(f"{field}: unknown value {value!r}; allowed: {allowed}") from None
