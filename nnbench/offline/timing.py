"""Warm timing: warm-up runs, then N timed trials, CUDA-synchronised; median ± std; peak memory."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from nnbench.records import TimingRow


@dataclass(frozen=True, slots=True)
class Timing:
    median_s: float
    std_s: float
    trials: int
    peak_memory_bytes: int | None
    """peak CUDA memory this process allocated during the trials; None on CPU. vLLM's engine runs
    in its own process, so for vLLM backends this is the client's share only: see device_used_bytes"""
    device_used_bytes: int | None = None
    """memory in use on the whole GPU after the trials (all processes; vLLM preallocates its KV cache)"""

    def as_dict(self) -> dict:
        return asdict(self)

    def row(self) -> TimingRow:
        return TimingRow(self.median_s, self.std_s, self.trials, self.peak_memory_bytes, self.device_used_bytes)


def measure(fn: Callable[[], object], warmup: int, trials: int, device: str) -> Timing:
    cuda = device.startswith("cuda")
    if cuda:
        import torch
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    samples = []
    for _ in range(trials):
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    used = None
    if cuda:
        free, total = torch.cuda.mem_get_info()
        used = total - free
    std = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return Timing(statistics.median(samples), std, trials, peak, used)
