import dataclasses

import torch

from nnbench.jobs import CellJob, CellOutput, CellParams, PromptOutput
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


def test_non_finite_outputs_are_not_cached(tmp_path):
    """A NaN reference is reported (NO_REFERENCE) and recomputed next time, never kept."""
    store, calls = ReferenceStore(tmp_path), []
    store.get_or_compute("k", "m", lambda: calls.append(1) or _out(float("nan")))
    again = store.get_or_compute("k", "m", lambda: calls.append(1) or _out(0.5))
    assert calls == [1, 1] and float(again.per_prompt[0].dists["next_token"][0, 0]) == 0.5


def test_the_key_follows_the_cells_code_and_the_helpers_it_calls():
    from nnbench.cells.steering import steering_hf, steering_raw
    from nnbench.oracle.references import _reached, code_hash

    same = reference_key(JOB, "abc", "float32", "cpu", steering_hf)
    assert same == reference_key(JOB, "abc", "float32", "cpu", steering_hf)
    assert same != reference_key(JOB, "abc", "float32", "cpu", steering_raw)
    assert same != reference_key(JOB, "abc", "float32", "cpu", steering_hf, kind="control")
    seen: dict = {}
    _reached(steering_hf, seen)
    assert {"nnbench.cells.common.steering_vector", "nnbench.families.Modules", "nnbench.jobs.per_prompt"} <= set(seen)
    assert code_hash(steering_hf) != code_hash(steering_raw)


def test_the_key_follows_library_versions(monkeypatch):
    from nnbench.oracle import references

    assert [name for name, _ in references.library_versions()] == ["torch", "transformers", "nnsight"]
    before = reference_key(JOB, "abc", "float32", "cpu")
    monkeypatch.setattr(references, "library_versions", lambda: (("torch", "0.0"),))
    assert reference_key(JOB, "abc", "float32", "cpu") != before


def test_a_revised_hf_cell_body_recomputes_its_reference(pool, tmp_path):
    """Same job, same parameters, a different HF body: the second body's outputs, not the first's."""
    from nnbench.backends.engine import Engine
    from nnbench.cells import CellRegistry
    from nnbench.cells.steering import steering_hf
    from nnbench.evidence import EvidenceBook
    from nnbench.families import Modules

    def steering_revised(model, job):  # reads the distribution one position earlier
        mods = Modules.of(model, job.family)
        with model.trace(job.texts):
            probs = mods.unembed.output[:, -2].softmax(-1).save()
        return CellOutput((PromptOutput({"next_token": probs[0:1]}),))

    store = ReferenceStore(tmp_path)
    outputs = []
    for body in (steering_hf, steering_revised):
        registry = CellRegistry()
        registry.cell("steering", "llama", "hf", "interactive")(body)
        outputs.append(EvidenceBook(pool, store, "cpu", Engine().backend_config, registry).reference(JOB))
    first, second = (o.per_prompt[0].dists["next_token"] for o in outputs)
    assert not torch.equal(first, second)
