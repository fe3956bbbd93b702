import dataclasses

import torch

from nnbench.cells.job import CellJob, CellOutput, CellParams, PromptOutput
from nnbench.oracle import Failure, ReferenceStore, reference_key
from nnbench.prompts import FACTS

JOB = CellJob("steering", "llama", "interactive", FACTS[:1], CellParams())


def _out(x: float) -> CellOutput:
    return CellOutput((PromptOutput({"next_token": torch.tensor([[x, 1 - x]])}),))


def test_every_field_changes_the_key():
    base = reference_key(JOB, "abc", "float32", "cpu")
    variants = [
        reference_key(dataclasses.replace(JOB, params=CellParams(layer=7)), "abc", "float32", "cpu"),
        reference_key(dataclasses.replace(JOB, params=CellParams(seed=1)), "abc", "float32", "cpu"),
        reference_key(dataclasses.replace(JOB, prompts=FACTS[1:2]), "abc", "float32", "cpu"),
        reference_key(dataclasses.replace(JOB, workload="batched"), "abc", "float32", "cpu"),
        reference_key(JOB, "abd", "float32", "cpu"),
        reference_key(JOB, "abc", "bfloat16", "cpu"),
        reference_key(JOB, "abc", "float32", "cuda:0"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert reference_key(JOB, "abc", "float32", "cuda:0") == reference_key(JOB, "abc", "float32", "cuda:1")


def test_cache_hit_skips_the_computation(tmp_path):
    store, calls = ReferenceStore(tmp_path), []
    first = store.get_or_compute("k", "m", lambda: calls.append(1) or _out(0.25))
    again = store.get_or_compute("k", "m", lambda: calls.append(1) or _out(0.75))
    assert calls == [1]
    assert torch.equal(first.per_prompt[0].dists["next_token"], again.per_prompt[0].dists["next_token"])
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["k.pt"]  # no temporary files left


def test_failures_are_not_cached(tmp_path):
    store = ReferenceStore(tmp_path)
    assert isinstance(store.get_or_compute("k", "m", lambda: Failure("OSError", "flaky")), Failure)
    assert not isinstance(store.get_or_compute("k", "m", lambda: _out(0.5)), Failure)
