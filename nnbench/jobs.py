"""What a cell is given (``CellJob``) and what it returns (``CellOutput``).

A floor module: it imports no cell, and torch only where a tensor is made (``per_prompt``), so
the specs, scenarios, records and reports that name jobs load without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from nnbench.prompts import Prompt
from nnbench.vocab import Family, Methodology, Workload


@dataclass(frozen=True, slots=True)
class CellParams:
    """Knobs of the interventions; all are part of every reference's cache key."""

    layer: int = 6
    """the decoder layer that is steered, patched, ablated or read"""
    alpha: float | None = None
    """norm of the steering vector; None: the family's calibrated norm (``STEERING_NORM``)"""
    seed: int = 0
    """seeds the steering vector: two requests with different seeds carry different interventions"""
    new_tokens: int = 4
    """greedy tokens decoded by generation workloads"""

    def as_dict(self) -> dict:
        return asdict(self)

    def steering_norm(self, family: Family, model: str = "") -> float:
        """``alpha`` if given, else the model's calibrated norm (``MODEL_STEERING_NORM``), else
        its family's (``STEERING_NORM``)."""
        if self.alpha is not None:
            return self.alpha
        return MODEL_STEERING_NORM.get(model, STEERING_NORM[Family(family)])


STEERING_NORM: dict[Family, float] = {Family.GPT2: 2.0, Family.LLAMA: 64.0, Family.QWEN2: 16.0, Family.GEMMA3: 64.0}
"""The steering vector's norm per family, chosen so that every built-in prompt's next-token
distribution moves by at least 10x the SUPPORTED tolerance, and so that steering one layer late or
at half strength moves it too (raw hooks, fp32, CPU, docs/findings.md "Discrimination"). At 8 the
synthetic GPT-2 saturates (TV 0.90-1.00 on every prompt, so a wrong layer barely shows) while
SmolLM2 moved two prompts by TV 0.004 and 0.005, below what SUPPORTED itself allows. Qwen2.5-Coder
0.5B: at 64 every prompt saturates (TV 0.97-1.00); at 16 the smallest move is 0.22. Gemma-3-270M
(embeddings scaled by sqrt(640)): at 16 the smallest is 0.021, below the 0.05 needed; at 64, 0.126."""

MODEL_STEERING_NORM: dict[str, float] = {"qwen2.5-coder-1.5b-instruct": 48.0}
"""Built-in models their family's norm does not move (by ``CellJob.model`` name; a directory of
yours gets its family's): Qwen2.5-Coder-1.5B at the family's 16 moves the first factual prompt by
TV 0.016 (NO_REFERENCE); at 32 by 0.029; at 48 every prompt by 0.11-0.92; at 64 three saturate
(0.97-0.99)."""


@dataclass(frozen=True, slots=True)
class CellJob:
    """One cell invocation: a methodology applied to some prompts of one family."""

    methodology: Methodology
    family: Family
    workload: Workload
    prompts: tuple[Prompt, ...]
    params: CellParams = field(default_factory=CellParams)
    model: str = ""
    """a built-in model's name or a local HF directory; empty: the family's default model"""

    @property
    def generates(self) -> bool:
        """Whether the job decodes tokens (its no-intervention baseline must generate too)."""
        return self.workload == Workload.GENERATION or self.methodology == Methodology.GENERATION_STEERING

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.prompts]

    @property
    def corrupt_texts(self) -> list[str]:
        missing = [p.text for p in self.prompts if p.corrupt is None]
        if missing:
            raise ValueError(f"{self.methodology} needs clean/corrupt prompt pairs; got plain prompts {missing}")
        return [p.corrupt for p in self.prompts]  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class PromptOutput:
    """What one prompt produced.

    ``dists`` hold probability rows ``[rows, classes]`` (next-token distributions, attention rows),
    judged by top-1 agreement and total variation; ``values`` hold other tensors, judged by
    relative error.
    """

    dists: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 1
    """greedy decoding steps the dist rows are grouped in (step-major); the last row of a step's
    group is the distribution its token was taken from. Lets the oracle stop comparing where two
    runs decoded different tokens: later steps see different prefixes."""


@dataclass(frozen=True, slots=True)
class CellOutput:
    per_prompt: tuple[PromptOutput, ...]

    def to_payload(self) -> list[dict]:
        return [{"dists": p.dists, "values": p.values, "steps": p.steps} for p in self.per_prompt]

    @classmethod
    def from_payload(cls, payload: list[dict]) -> CellOutput:
        return cls(tuple(PromptOutput(p["dists"], p["values"], p.get("steps", 1)) for p in payload))


def per_prompt(dists: dict[str, torch.Tensor], values: dict[str, torch.Tensor] | None = None,
               steps: int = 1) -> CellOutput:
    """Split batched tensors (prompt on dim 0) into one ``PromptOutput`` per prompt, float32 on CPU.

    Each tensor's remaining dims are flattened to ``[rows, classes]`` for dists; ``steps`` > 1
    marks generation outputs whose rows are grouped by decoding step.
    """
    values = values or {}
    n = next(iter(dists.values())).shape[0]
    outputs = []
    for i in range(n):
        d = {k: _cpu(v[i]).reshape(-1, v.shape[-1]) for k, v in dists.items()}
        vals = {k: _cpu(v[i]) for k, v in values.items()}
        outputs.append(PromptOutput(d, vals, steps))
    return CellOutput(tuple(outputs))


def _cpu(t: torch.Tensor) -> torch.Tensor:
    import torch

    return t.detach().to("cpu", torch.float32)
