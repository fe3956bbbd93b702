"""Arrival processes: seeded, generated up front as intended send offsets (seconds from start).

The same seed gives the same schedule, so every backend compared in one run sees the identical
arrival trace.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Constant:
    """Evenly spaced: request i at i / rate."""

    rate: float

    def intended_offsets(self, rng: random.Random) -> Iterator[float]:
        i = 0
        while True:
            yield i / self.rate
            i += 1

    def __str__(self) -> str:
        return f"constant@{self.rate:g}"


@dataclass(frozen=True, slots=True)
class Poisson:
    """Exponential gaps of mean 1/rate: the memoryless open-loop arrival process."""

    rate: float

    def intended_offsets(self, rng: random.Random) -> Iterator[float]:
        t = 0.0
        while True:
            yield t
            t += rng.expovariate(self.rate)

    def __str__(self) -> str:
        return f"poisson@{self.rate:g}"


@dataclass(frozen=True, slots=True)
class Gamma:
    """Gamma gaps with shape k and mean 1/rate: k < 1 is burstier than Poisson (CV = 1/√k)."""

    rate: float
    burstiness: float

    def intended_offsets(self, rng: random.Random) -> Iterator[float]:
        scale = 1.0 / (self.rate * self.burstiness)
        t = 0.0
        while True:
            yield t
            t += rng.gammavariate(self.burstiness, scale)

    def __str__(self) -> str:
        return f"gamma@{self.rate:g}/k={self.burstiness:g}"


def schedule(process, rng: random.Random, duration_s: float, max_requests: int | None) -> list[float]:
    """Offsets in [0, duration_s), at most ``max_requests`` of them."""
    offsets: list[float] = []
    for offset in process.intended_offsets(rng):
        if offset >= duration_s or (max_requests is not None and len(offsets) >= max_requests):
            break
        offsets.append(offset)
    return offsets


def dispersion(offsets: list[float]) -> float:
    """Coefficient of variation of the gaps: 0 constant, 1 Poisson, 1/√k gamma."""
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / (len(gaps) - 1)
    return math.sqrt(var) / mean
