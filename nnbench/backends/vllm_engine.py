"""What the in-process vLLM backends share: engine arguments and the per-prompt trace loop."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from nnbench.backends.base import BackendConfig
from nnbench.backends.engine import vllm_engine_args
from nnbench.cells.registry import CellEntry
from nnbench.cells.vllm_trace import Build, PushedSaves, Saves, VllmTrace, run_chain
from nnbench.jobs import CellJob, CellOutput
from nnbench.provision import ensure_model


def engine_kwargs(config: BackendConfig) -> dict[str, Any]:
    """nnsight ``VLLM(...)`` keyword arguments: the engine arguments, and ``taps`` if given."""
    kwargs = vllm_engine_args(config)
    if config.vllm.taps:  # CUDA-graph replay with nnsight served only at these locations
        kwargs["taps"] = list(config.vllm.taps)
    return kwargs


def load_vllm(config: BackendConfig, mode: str) -> Any:
    os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    from nnsight.modeling.vllm import VLLM

    path = str(ensure_model(config.family, config.model).path)
    return VLLM(path, mode=mode, dispatch=True, **engine_kwargs(config))


def run_sync(model: Any, job: CellJob, entry: CellEntry) -> CellOutput:
    """All prompts as invokes of one trace (one engine ``generate``); the saves are what nnsight
    pushes back at the end of the trace (into a stand-in frame: ``PushedSaves``)."""

    def execute(build: Build) -> tuple[VllmTrace, Saves]:
        saves = PushedSaves()
        traced = build({"backend": saves})
        return traced, saves.saves

    return CellOutput(run_chain(lambda trace_kwargs: entry.fn(model, job.prompts, job, trace_kwargs), execute))


def baseline_kwargs(job: CellJob) -> dict[str, Any]:
    """Sampling arguments of the no-intervention run matching ``job``."""
    steps = job.params.new_tokens if job.generates else 1
    return {"temperature": 0.0, "max_tokens": steps, "ignore_eos": True}


def shutdown_engine(model: Any) -> None:
    """Free the engine's GPU memory now rather than at garbage collection (best effort)."""
    shutdown_llm(getattr(model, "vllm_entrypoint", None))


def shutdown_llm(entry: Any) -> None:
    """``shutdown_engine`` for a bare vLLM ``LLM``."""
    for target in (entry, getattr(getattr(entry, "llm_engine", None), "engine_core", None)):
        shutdown = getattr(target, "shutdown", None)
        if callable(shutdown):
            with contextlib.suppress(Exception):  # closing must not fail the run
                shutdown()
            return
