"""What a vLLM cell returns, and how each vLLM backend gets its saves back.

One vLLM cell body serves vllm_sync, vllm_async and vllm_serve: it traces one prompt,
``model.trace(prompt, **trace_kwargs)``, and returns a ``VllmTrace`` whose ``decode`` turns the
saves into that prompt's outputs (a batched job is one trace per prompt: several in flight on
async and serve, one after another on sync). The backends differ only in ``trace_kwargs`` and in
where the saves arrive:

* vllm_sync: ``backend=FrameSaves()`` runs the trace in place and keeps the names it pushed;
* vllm_async: the default async backend submits on exit; ``await tracer.backend`` has ``.saves``;
* vllm_serve: ``backend=SerializedTrace()`` keeps nnsight's serialized request, sent over HTTP.

Everything a block uses is a tensor, a number or the model: the block runs in vLLM's engine
process (and, for serve, in another program), so it holds no nnbench objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nnbench.cells.job import PromptOutput

GREEDY = {"temperature": 0.0}
"""vLLM samples at temperature 1 by default: every trace is greedy, with an explicit max_tokens"""


@dataclass(frozen=True)
class VllmTrace:
    tracer: Any
    decode: Callable[[dict[str, Any]], PromptOutput]


class FrameSaves:
    """A sync backend that runs the trace in place and keeps what it pushed into the caller."""

    def __init__(self) -> None:
        self.saves: dict[str, Any] = {}

    def __call__(self, tracer: Any) -> None:
        tracer.execute(tracer.info.code)
        self.saves = dict(tracer.info.frame.f_locals)


class SerializedTrace:
    """A backend that runs nothing: it keeps nnsight's serialized request for nnsight-serve."""

    def __init__(self) -> None:
        self.blob: bytes | None = None

    def __call__(self, tracer: Any) -> None:
        from nnsight.schema.request import RequestModel

        self.blob = RequestModel.serialize(tracer, compress=False)


def next_token_rows(saves: dict[str, Any], steps: int = 1) -> PromptOutput:
    """Decode the common case: a saved ``next_token`` of ``[steps, V]`` probabilities."""
    return PromptOutput({"next_token": saves["next_token"].float().cpu()}, steps=steps)
