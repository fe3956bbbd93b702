"""What a vLLM cell returns, and how each vLLM backend gets its saves back.

One vLLM cell body serves vllm_sync, vllm_async and vllm_serve. It is called with the prompts of
one trace, ``fn(model, prompts, job, trace_kwargs)``, opens ``model.trace(**trace_kwargs)`` with
one ``tracer.invoke`` per prompt, saves one tensor per name inside each invoke (a sync trace
with several invokes returns each name as a list in submission order; nnsight-serve runs the
trace-level code outside any trace, so nothing is saved there), and returns a ``VllmTrace``
that names what it saved (``saves``) and whose ``decode`` turns those saves into one
``PromptOutput`` per prompt. vllm_sync passes a whole batch (one trace, several invokes: one
engine ``generate``); vllm_async and vllm_serve pass one prompt per trace and run several traces
at once (async traces take one invoke; serve merges same-name saves of several invokes).

The backends differ only in ``trace_kwargs`` and in where the saves arrive:

* vllm_sync: ``backend=PushedSaves()`` runs the trace in place; nnsight pushes the saves into a
  stand-in for the cell's frame, never into the cell's own locals;
* vllm_async: the default async backend submits on exit; ``await tracer.backend`` has ``.saves``;
* vllm_serve: ``backend=SerializedTrace()`` keeps nnsight's serialized request, sent over HTTP.

Whatever the path, nnsight returns saves by the name they were bound to in the block, so a cell
declares those names where it returns the trace (``VllmTrace(tracer, ("next_token",), decode)``)
and ``take`` hands the decoder exactly those: a declared name that did not come back is a loud
``MissingSave`` naming it (a deleted or renamed save line fails there, not as a wrong number), and
anything else that came back (a registered edit's values, the residual-risk extra keys of
``notes/nnsight-0.8.1-vllm.md`` §4) is dropped. A linter sees the save lines as unused
assignments (F841); ``tests/cells/test_vllm_saves.py`` checks statically that every cell saves
exactly the names it declares.

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


class MissingSave(KeyError):
    """A vLLM trace came back without a name its cell declared."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class VllmTrace:
    tracer: Any
    saves: tuple[str, ...]
    """the names the block saved (``name = ... .save()``): what the decoder (or ``then``) reads"""
    decode: Callable[[Saves], tuple[PromptOutput, ...]] | None
    """the saves of this trace → one output per prompt, in invoke order (None if ``then`` follows)"""
    then: Callable[[Saves, dict], VllmTrace] | None = None
    """builds the next trace from this one's saves and the backend's trace kwargs, if any"""

    def __post_init__(self) -> None:
        if not self.saves:
            raise TypeError("a vLLM trace must declare the names it saves")

    def take(self, returned: Saves) -> Saves:
        """The declared saves out of what the backend got back; a missing one is named."""
        missing = [name for name in self.saves if name not in returned]
        if missing:
            got = sorted(k for k in returned if not k.startswith("_"))
            raise MissingSave(f"the vLLM trace returned no {', '.join(map(repr, missing))}: "
                              f"it declared {list(self.saves)} and returned {got}")
        return {name: returned[name] for name in self.saves}


Build = Callable[[dict], VllmTrace]
"""a cell bound to its model, prompts and job: trace kwargs → the traced (or submitted) trace"""


def run_chain(build: Build, execute: Callable[[Build], tuple[VllmTrace, Saves]]) -> tuple[PromptOutput, ...]:
    """Run a cell's traces in order (``execute`` runs one and returns what came back); decode
    the last one's declared saves."""
    traced, returned = execute(build)
    while traced.then is not None:
        traced, returned = execute(partial(traced.then, traced.take(returned)))
    return _decode(traced, returned)


async def arun_chain(build: Build, execute: Callable[[Build], Awaitable[tuple[VllmTrace, Saves]]]
                     ) -> tuple[PromptOutput, ...]:
    """``run_chain`` for backends whose traces are awaited."""
    traced, returned = await execute(build)
    while traced.then is not None:
        traced, returned = await execute(partial(traced.then, traced.take(returned)))
    return _decode(traced, returned)


def _decode(traced: VllmTrace, returned: Saves) -> tuple[PromptOutput, ...]:
    if traced.decode is None:
        raise TypeError("the last trace of a cell must say how to decode its saves")
    return traced.decode(traced.take(returned))


class PushedSaves:
    """A sync backend that runs the trace in place and keeps what nnsight pushes back.

    nnsight ends a trace by pushing its saved values into the frame the block was written in
    (``tracing/util.py::push``, which also accepts a stand-in whose ``f_locals`` is a plain
    dict). The trace runs against such a stand-in: the block sees the cell's locals, the cell's
    own frame is neither read after the run nor written, and the saves are the names the push
    bound or rebound.
    """

    def __init__(self) -> None:
        self.saves: Saves = {}

    def __call__(self, tracer: Any) -> None:
        frame = tracer.info.frame
        stand_in = StandInFrame(frame)
        before = dict(stand_in.f_locals)
        tracer.info.frame = stand_in
        try:
            tracer.execute(tracer.info.code)
        finally:
            tracer.info.frame = frame
        self.saves = {k: v for k, v in stand_in.f_locals.items() if k not in before or v is not before[k]}


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
            tracer.info.frame = StandInFrame(frame, f"{frame.f_code.co_filename}:{tracer.node.lineno}")
        try:
            self.blob = RequestModel.serialize(tracer, compress=False)
        finally:
            tracer.info.frame = frame


class StandInFrame:
    """A trace's frame as nnsight reads it (a copy of its locals, its globals, its code's file,
    name and first line), optionally under another file name; nnsight's push writes its plain
    ``f_locals`` dict instead of the real frame."""

    def __init__(self, frame: Any, filename: str | None = None) -> None:
        self.f_locals, self.f_globals = dict(frame.f_locals), frame.f_globals
        code = frame.f_code
        self.f_code = SimpleNamespace(co_filename=filename or code.co_filename, co_firstlineno=code.co_firstlineno,
                                      co_name=code.co_name)


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
