"""The backend protocol: one lifecycle, several implementations (one file each).

A backend owns a loaded model (or engine, or server connection) of one family at one precision and
runs cells on it. ``run`` is for the offline sweep. The load generator calls ``prepare`` for every
request before the clock starts (an HTTP backend serialises its payload there), then awaits
``submit`` on the hot path. Backends that hold one in-process model serialise ``submit`` on a lock
in a worker thread, so the event loop never blocks on a forward pass.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from nnbench.vocab import DTYPES, BackendName, Family

if TYPE_CHECKING:  # the cells pull torch in: a bad scenario field is refused without it
    from nnbench.cells.registry import CellEntry
    from nnbench.jobs import CellJob, CellOutput

T = TypeVar("T")


DEFAULT_GPU_MEMORY_UTILIZATION = 0.15
"""a share small enough that a family's vllm_sync, vllm_async and nnsight-serve engines fit at once"""

Concurrency = Literal["serialised", "concurrent"]


@dataclass(frozen=True, slots=True)
class VllmSettings:
    """The vLLM engine's and nnsight-serve's settings; hf, raw_hooks and null ignore them."""

    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int = 512
    kv_cache_gib: float | None = None
    """a fixed KV cache per GPU instead of one vLLM measures while starting (see ``Engine``)"""
    api_key: str | None = None
    """vllm_serve: the server's key, sent with every request"""
    health_timeout_s: float = 300.0
    """vllm_serve: how long to wait for GET /health (engine start-up included)"""
    request_timeout_s: float = 600.0
    """vllm_serve: the HTTP session's own limit on one request (the load generator sets a shorter one)"""
    name_each_block: bool = True
    """vllm_serve: name each trace block's file in the request (see ``SerializedTrace``)"""
    taps: tuple[str, ...] = ()
    """vllm_sync: CUDA-graph replay with nnsight served only at these module paths (benchmarks/taps.py)"""


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Everything needed to open a backend; hashable, so a pool can share open backends."""

    name: BackendName
    family: Family
    dtype: str = "float32"
    device: str = "cpu"
    tensor_parallel_size: int = 1
    """vLLM backends only; hf and raw_hooks refuse anything but 1"""
    serve_url: str | None = None
    """vllm_serve: an already running nnsight-serve; None starts one"""
    vllm: VllmSettings = VllmSettings()
    model: str = ""
    """a built-in model's name or a local HF directory; empty: the family's default model"""


class Backend(Protocol):
    """Every capability a backend has, declared: callers never probe for a method."""

    config: BackendConfig
    concurrency: Concurrency
    """how concurrent requests are handled (reported in results)"""
    starts_in_background: bool
    """``start()`` launches something that boots on its own (nnsight-serve's process), so a pool
    starts it early; for the others ``start()`` does nothing and ``open()`` does the work"""
    plain_engine: bool
    """``run_plain`` runs the engine with no nnsight at all (vLLM's own generate)"""

    def __init__(self, config: BackendConfig, **extra: Any) -> None:
        """Construct without loading anything (``extra``: a backend's own test hooks)."""

    def start(self) -> None:
        """Begin what takes long to boot, without waiting for it."""

    def open(self) -> None:
        """Load the model or connect (waiting for what ``start`` began); seconds to minutes."""

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        """Run one cell to completion and return its outputs."""

    def prepare(self, job: CellJob, entry: CellEntry | None) -> Any:
        """Everything ``submit`` needs, built ahead of time (off the hot path)."""

    async def submit(self, prepared: Any) -> CellOutput | None:
        """Run one prepared request; the load generator puts a deadline around it."""

    def run_baseline(self, job: CellJob) -> None:
        """The same prompts with no intervention: the denominator of the overhead figure."""

    def run_plain(self, job: CellJob) -> None:
        """The same prompts on the bare engine (only where ``plain_engine``)."""

    async def quiesce(self, timeout_s: float) -> int:
        """Wait until no cancelled (cut-off) request is still running on this process's model;
        how many still are at ``timeout_s``. The next step's references use the same model."""

    async def aclose(self) -> None:
        """Close what belongs to the running event loop (an HTTP session); safe to call twice."""

    def close(self) -> None:
        """Free the model; safe to call twice."""


class BackendDefaults:
    """What a backend without the optional capabilities does: the Protocol's defaults, once."""

    starts_in_background = False
    plain_engine = False
    config: BackendConfig

    def start(self) -> None:
        return None

    def run_plain(self, job: CellJob) -> None:
        raise NotImplementedError(f"{self.config.name} has no engine without nnsight")

    async def quiesce(self, timeout_s: float) -> int:
        return 0  # an engine or a server of its own: nothing of ours runs on it after a cancel

    async def aclose(self) -> None:
        return None


async def in_worker_thread(lock: threading.Lock, fn: Callable[..., T], *args) -> T:
    """Run ``fn`` in a thread while holding ``lock``: one forward at a time on a shared model."""

    def locked() -> T:
        with lock:
            return fn(*args)

    return await asyncio.to_thread(locked)


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ValueError(f"dtype: unknown value {name!r}; allowed: {', '.join(DTYPES)}")
    return getattr(torch, name)  # the Dtype names are torch's own
