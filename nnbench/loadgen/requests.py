"""The request plan: which trace each request sends, and its cached HF reference.

Everything here happens before the clock starts: methodology, prompt and intervention seed of
every request are drawn from the scenario's seed, references are computed (or read from the
cache), and payloads are prepared by the backend, so the hot path only sends, awaits and records.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nnbench.jobs import CellJob, CellParams
from nnbench.loadgen.scenario import MixEntry, Scenario
from nnbench.prompt_sets import pool


@dataclass(frozen=True, slots=True)
class LoadRequest:
    id: int
    offset_s: float
    """intended send time, seconds from the step's start (closed loop: 0, set when sent)"""
    job: CellJob


def job_for(entry: MixEntry, scenario: Scenario, rng: random.Random) -> CellJob:
    """A one-prompt trace: this entry's methodology on a drawn prompt with a drawn intervention."""
    drawn = pool(entry.methodology, entry.workload, scenario.prompts, scenario.family)
    prompt = drawn[rng.randrange(len(drawn))]
    seed = rng.randrange(scenario.interventions)
    params = CellParams(layer=entry.layer, alpha=entry.alpha, seed=seed, new_tokens=entry.new_tokens)
    return CellJob(entry.methodology, scenario.family, entry.workload, (prompt,), params, scenario.model)


def plan(scenario: Scenario, offsets: list[float], rng: random.Random, first_id: int = 0) -> list[LoadRequest]:
    weights = [e.weight for e in scenario.mix]
    entries = rng.choices(scenario.mix, weights=weights, k=len(offsets))
    return [LoadRequest(first_id + i, offset, job_for(entry, scenario, rng))
            for i, (offset, entry) in enumerate(zip(offsets, entries))]
