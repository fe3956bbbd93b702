"""What a vLLM cell returns, and how each vLLM backend gets its saves back.

One vLLM cell body serves vllm_sync, vllm_async and vllm_serve. It is called with the prompts of
one trace, ``fn(model, prompts, job, trace_kwargs)``, opens ``model.trace(**trace_kwargs)`` with
one ``tracer.invoke`` per prompt, saves one tensor per name inside each invoke (a sync trace
with several invokes returns each name as a list in submission order; nnsight-serve runs the
trace-level code outside any trace, so nothing is saved there), and returns a ``VllmTrace``
whose ``decode`` turns the saves into one ``PromptOutput`` per prompt. vllm_sync passes a whole batch (one trace, several invokes: one
engine ``generate``); vllm_async and vllm_serve pass one prompt per trace and run several traces
at once (async traces take one invoke; serve merges same-name saves of several invokes).

The backends differ only in ``trace_kwargs`` and in where the saves arrive:

* vllm_sync: ``backend=FrameSaves()`` runs the trace in place and keeps the names it pushed;
* vllm_async: the default async backend submits on exit; ``await tracer.backend`` has ``.saves``;
* vllm_serve: ``backend=SerializedTrace()`` keeps nnsight's serialized request, sent over HTTP.

A cell that needs a second trace built from the first one's results (activation patching: the
clean run, then the patched run; vLLM has no cross-invoke barrier) returns ``then``; every backend
runs the chain through ``run_chain`` / ``arun_chain``.

Everything a block uses is a string, a tensor, a number or the model: the block runs in vLLM's
engine process (and, for serve, in another program), so it holds no nnbench objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any

from nnbench.jobs import PromptOutput

GREEDY = {"temperature": 0.0}
"""vLLM samples at temperature 1 by default: every trace is greedy, with an explicit max_tokens"""

Saves = dict[str, Any]


@dataclass(frozen=True)
class VllmTrace:
    tracer: Any
    decode: Callable[[Saves], tuple[PromptOutput, ...]] | None
    """the saves of this trace → one output per prompt, in invoke order (None if ``then`` follows)"""
    then: Callable[[Saves, dict], VllmTrace] | None = None
    """builds the next trace from this one's saves and the backend's trace kwargs, if any"""


Build = Callable[[dict], VllmTrace]
"""a cell bound to its model, prompts and job: trace kwargs → the traced (or submitted) trace"""


def run_chain(build: Build, execute: Callable[[Build], tuple[VllmTrace, Saves]]) -> tuple[PromptOutput, ...]:
    """Run a cell's traces in order (``execute`` runs one and returns its saves); decode the last."""
    traced, saves = execute(build)
    while traced.then is not None:
        traced, saves = execute(partial(traced.then, saves))
    return _decode(traced, saves)


async def arun_chain(build: Build, execute: Callable[[Build], Awaitable[tuple[VllmTrace, Saves]]]
                     ) -> tuple[PromptOutput, ...]:
    """``run_chain`` for backends whose traces are awaited."""
    traced, saves = await execute(build)
    while traced.then is not None:
        traced, saves = await execute(partial(traced.then, saves))
    return _decode(traced, saves)


def _decode(traced: VllmTrace, saves: Saves) -> tuple[PromptOutput, ...]:
    if traced.decode is None:
        raise TypeError("the last trace of a cell must say how to decode its saves")
    return traced.decode(saves)


class FrameSaves:
    """A sync backend that runs the trace in place and keeps what it pushed into the caller."""

    def __init__(self) -> None:
        self.saves: Saves = {}

    def __call__(self, tracer: Any) -> None:
        tracer.execute(tracer.info.code)
        self.saves = dict(tracer.info.frame.f_locals)


class SerializedTrace:
    """A backend that runs nothing: it keeps nnsight's serialized request for nnsight-serve.

    ``name_each_block``: nnsight-serve compiles each request's block under the client's file
    name, and nnsight caches a file's source by that name for the process's life, so once one
    block of a file has run, a different block from the same file that opens a nested ``with``
    (``tracer.invoke``, ``tracer.iter``) fails with WithBlockNotFoundError (nnsight 0.8.1, seen
    on the GPU). Naming the file ``<path>:<line of the block>`` in the request gives every block
    its own cache entry. False sends exactly what nnsight's own serve client sends.
    """

    def __init__(self, name_each_block: bool = True) -> None:
        self.blob: bytes | None = None
        self.name_each_block = name_each_block

    def __call__(self, tracer: Any) -> None:
        from nnsight.schema.request import RequestModel

        frame = tracer.info.frame
        if self.name_each_block:
            tracer.info.frame = _RenamedFrame(frame, f"{frame.f_code.co_filename}:{tracer.node.lineno}")
        try:
            self.blob = RequestModel.serialize(tracer, compress=False)
        finally:
            tracer.info.frame = frame


class _RenamedFrame:
    """The trace's frame as serialization reads it (its scope, its code's name and first line),
    under another file name."""

    def __init__(self, frame: Any, filename: str) -> None:
        self.f_locals, self.f_globals = frame.f_locals, frame.f_globals
        code = frame.f_code
        self.f_code = SimpleNamespace(co_filename=filename, co_firstlineno=code.co_firstlineno, co_name=code.co_name)


def per_invoke(saves: Saves, name: str) -> list[Any]:
    """One value per invoke of a name each invoke saved for itself: a list in submission order
    when a sync trace had several invokes, the value itself when it had one (and always on
    async and serve, whose traces carry one prompt)."""
    if name not in saves:
        raise KeyError(f"the trace saved no {name!r}; it saved {sorted(k for k in saves if not k.startswith('_'))}")
    value = saves[name]
    return list(value) if isinstance(value, list) else [value]


def next_token_rows(saves: Saves, steps: int = 1, name: str = "next_token") -> tuple[PromptOutput, ...]:
    """Decode the common case: per invoke, ``[steps, V]`` next-token probabilities."""
    return tuple(PromptOutput({"next_token": t.float().cpu()}, steps=steps) for t in per_invoke(saves, name))


def texts_of(prompts: Sequence[Any], corrupt: bool = False) -> list[str]:
    """The strings a block invokes on (a block holds no nnbench objects)."""
    if corrupt:
        missing = [p.text for p in prompts if p.corrupt is None]
        if missing:
            raise ValueError(f"needs clean/corrupt prompt pairs; got plain prompts {missing}")
        return [p.corrupt for p in prompts]
    return [p.text for p in prompts]
