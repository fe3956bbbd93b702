"""The response checker on SmolLM2: a response carrying another in-flight request's intervention
is blamed on that request (the nearest reference, not the first close one), also between
requests on the same prompt, at fp32 and at bf16; and each check counts the pairs it could tell
apart (the detector's power)."""

import dataclasses

import pytest

from nnbench.backends.engine import Engine
from nnbench.cells import CELLS, CellKey
from nnbench.jobs import CellJob, CellOutput, CellParams
from nnbench.loadgen.checker import ResponseChecker
from nnbench.prompts import FACTS
from nnbench.vocab import State

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them

ENTRY = CELLS.get(CellKey("steering", "llama", "hf", "interactive"))


def _job(seed: int, alpha: float | None = None) -> CellJob:
    return CellJob("steering", "llama", "interactive", FACTS[:1], CellParams(seed=seed, alpha=alpha))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_swapped_response_is_blamed_on_its_true_partner(dtype, book, pool):
    config = Engine().backend_config("hf", "llama", dtype)
    checker = ResponseChecker(lambda job: book.evidence(job, config))
    ours, partner = _job(0), _job(3)
    near_partner = _job(3, alpha=0.8 * partner.params.steering_norm("llama"))  # close to the partner, not it
    response = pool.get(config).run(partner, ENTRY)  # what request 13 should have received
    overlapping = [(11, near_partner), (12, _job(1)), (13, partner), (14, _job(2)), (15, ours)]
    check = checker.check(ours, response, overlapping)
    assert check.state == State.SILENTLY_WRONG and check.isolation_with == 13, check.note
    assert (check.pairs, check.told_apart) == (4, 4)  # request 15 carries our own job: harmless


def test_a_correct_response_is_not_blamed_and_still_counts_its_pairs(book, pool):
    config = Engine().backend_config("hf", "llama", "float32")
    checker = ResponseChecker(lambda job: book.evidence(job, config))
    ours = _job(0)
    check = checker.check(ours, pool.get(config).run(ours, ENTRY), [(1, _job(1)), (2, _job(2))])
    assert check.state == State.SUPPORTED and check.isolation_with is None
    assert (check.pairs, check.told_apart) == (2, 2)


def test_references_closer_than_the_noise_are_not_told_apart(book, pool):
    """Two interventions whose references differ by less than 3 tolerances: a leak between them
    cannot be told from rounding, so the pair is counted as not distinguishable (and no blame)."""
    config = Engine().backend_config("hf", "llama", "float32")
    checker = ResponseChecker(lambda job: book.evidence(job, config))
    ours = _job(0)
    twin = dataclasses.replace(ours, params=dataclasses.replace(ours.params, new_tokens=5))  # same outputs
    response = pool.get(config).run(ours, ENTRY)
    check = checker.check(ours, response, [(1, twin)])
    assert (check.pairs, check.told_apart) == (1, 0) and check.isolation_with is None


def test_saves_the_request_did_not_ask_for_are_an_isolation_failure(book, pool):
    config = Engine().backend_config("hf", "llama", "float32")
    checker = ResponseChecker(lambda job: book.evidence(job, config))
    ours = _job(0)
    prompt = pool.get(config).run(ours, ENTRY).per_prompt[0]
    extra = CellOutput((dataclasses.replace(prompt, dists={**prompt.dists, "lens": prompt.dists["next_token"]}),))
    check = checker.check(ours, extra, [])
    assert check.state == State.SILENTLY_WRONG and check.isolation_with == -1
