"""How busy the machine was while a step ran, apart from this run itself.

Latency measured on a shared machine is not the backend's latency: on a 2-core machine the p50 of
the same 2 req/s step moved 254–1003 ms across runs (issue 18). ``LoadMeter`` reads the machine's CPU
time (``/proc/stat``: busy, and stolen by the hypervisor) and this run's own (this process and its
children: vLLM's engine process, an nnsight-serve the run started) at the start and end of a step;
what is left over is other processes'. A step is marked busy when they took more than
``BUSY_OTHERS`` of the machine or the hypervisor stole more than ``BUSY_STEAL``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

BUSY_OTHERS = 0.25
"""a quarter of all cores used by processes not of this run"""
BUSY_STEAL = 0.05


@dataclass(frozen=True, slots=True)
class MachineLoad:
    cpus: int
    others_cpu: float | None
    """mean share of all cores that processes other than this run's used during the step"""
    steal: float | None
    """share of CPU time the hypervisor took (a shared VM's noisy neighbour)"""
    load1: float | None
    """1-minute load average at the step's end"""
    busy: bool


def _machine_jiffies() -> tuple[int, int, int] | None:
    """(total, idle, steal) jiffies over all cores, or None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    total = sum(fields[:8])  # guest time is already counted in user
    return total, idle, steal


def _own_cpu_s() -> float:
    """CPU seconds of this process and of every living child (an engine core, a server we started)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


class LoadMeter:
    """``start()`` before a step, ``stop()`` after it: the step's ``MachineLoad``."""

    def __init__(self) -> None:
        self._start: tuple[float, float, tuple[int, int, int] | None] | None = None

    def start(self) -> LoadMeter:
        self._start = (time.monotonic(), _own_cpu_s(), _machine_jiffies())
        return self

    def stop(self) -> MachineLoad:
        if self._start is None:
            raise RuntimeError("LoadMeter.stop() before start()")
        wall0, own0, jiffies0 = self._start
        wall, own, jiffies = time.monotonic() - wall0, _own_cpu_s() - own0, _machine_jiffies()
        cpus = os.cpu_count() or 1
        try:
            load1: float | None = os.getloadavg()[0]
        except (OSError, AttributeError):  # not on this platform
            load1 = None
        if jiffies0 is None or jiffies is None or wall <= 0:
            return MachineLoad(cpus, None, None, load1, False)
        total, idle, steal = (b - a for a, b in zip(jiffies0, jiffies, strict=True))
        if total <= 0:
            return MachineLoad(cpus, None, None, load1, False)
        tick = os.sysconf("SC_CLK_TCK")  # /proc/stat exists, so this is Linux
        busy_s = (total - idle - steal) / tick
        others = max(0.0, busy_s - own) / (wall * cpus)
        stolen = steal / total
        return MachineLoad(cpus, round(min(others, 1.0), 4), round(stolen, 4),
                           None if load1 is None else round(load1, 2), others > BUSY_OTHERS or stolen > BUSY_STEAL)
