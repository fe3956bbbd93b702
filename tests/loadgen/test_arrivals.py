import random

import pytest

from nnbench.loadgen.arrivals import Constant, Gamma, Poisson, dispersion, schedule


@pytest.mark.parametrize(("process", "cv"), [(Poisson(200.0), 1.0), (Gamma(200.0, 0.25), 2.0), (Constant(200.0), 0.0)])
def test_rate_and_dispersion_match_the_process(process, cv):
    offsets = schedule(process, random.Random(1), duration_s=50.0, max_requests=None)
    rate = len(offsets) / 50.0
    assert rate == pytest.approx(200.0, rel=0.05)
    assert dispersion(offsets) == pytest.approx(cv, abs=0.08)
    assert offsets == sorted(offsets) and offsets[0] == 0.0 and offsets[-1] < 50.0


def test_same_seed_same_trace_other_seed_other_trace():
    a = schedule(Poisson(10), random.Random("7/poisson@10"), 5.0, None)
    b = schedule(Poisson(10), random.Random("7/poisson@10"), 5.0, None)
    c = schedule(Poisson(10), random.Random("8/poisson@10"), 5.0, None)
    assert a == b and a != c


def test_max_requests_caps_the_schedule():
    assert len(schedule(Constant(100), random.Random(0), 10.0, max_requests=7)) == 7
    assert str(Gamma(4, 0.5)) == "gamma@4/k=0.5" and str(Poisson(2.5)) == "poisson@2.5"
