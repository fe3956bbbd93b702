import torch

from nnbench.oracle.metrics import all_finite, relative_error, top1_agreement, total_variation


def test_total_variation_is_half_the_l1_distance():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = torch.tensor([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
    assert total_variation(p, q).tolist() == [0.5, 0.0]


def test_top1_agreement_counts_rows():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    q = torch.tensor([[0.6, 0.4], [0.7, 0.3]])
    assert top1_agreement(p, q) == 0.5


def test_relative_error_and_finiteness():
    assert relative_error(torch.tensor([1.1, 0.0]), torch.tensor([1.0, 0.0])) == pytest_approx(0.1)
    assert not all_finite(torch.tensor([1.0, float("nan")]))


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-6)


def test_near_ties_count_as_agreement_only_with_a_margin():
    p = torch.tensor([[0.49, 0.51]])
    q = torch.tensor([[0.51, 0.49]])
    assert top1_agreement(p, q) == 0.0
    assert top1_agreement(p, q, tie_margin=0.05) == 1.0
