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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from nnbench.vocab import BackendName, Family

if TYPE_CHECKING:  # the cells pull torch in: a bad scenario field is refused without it
    from nnbench.cells.job import CellJob, CellOutput
    from nnbench.cells.registry import CellEntry

T = TypeVar("T")


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
    options: tuple[tuple[str, Any], ...] = ()
    """engine options as (name, value) pairs (gpu_memory_utilization, max_model_len, api_key, …)"""

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


class Backend(Protocol):
    config: BackendConfig
    concurrency: str
    """how concurrent requests are handled: "serialised" or "concurrent" (reported in results)"""

    def open(self) -> None:
        """Load the model or connect; may take seconds to minutes."""

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        """Run one cell to completion and return its outputs."""

    def prepare(self, job: CellJob, entry: CellEntry) -> Any:
        """Everything ``submit`` needs, built ahead of time (off the hot path)."""

    async def submit(self, prepared: Any) -> CellOutput:
        """Run one prepared request; the load generator puts a deadline around it."""

    def run_baseline(self, job: CellJob) -> None:
        """The same prompts with no intervention: the denominator of the overhead figure."""

    def close(self) -> None:
        """Free the model; safe to call twice."""


async def in_worker_thread(lock: threading.Lock, fn: Callable[..., T], *args) -> T:
    """Run ``fn`` in a thread while holding ``lock``: one forward at a time on a shared model."""

    def locked() -> T:
        with lock:
            return fn(*args)

    return await asyncio.to_thread(locked)


def torch_dtype(name: str):
    import torch

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ValueError(f"dtype: unknown value {name!r}; allowed: {', '.join(dtypes)}")
    return dtypes[name]
