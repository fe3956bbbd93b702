"""Shared fixtures: real small models (built once per machine into the nnbench cache), one
session-wide backend pool, and a fresh reference store per test session."""

from __future__ import annotations

import importlib.util

import pytest

from nnbench.backends import BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.oracle import ReferenceStore


def pytest_collection_modifyitems(config, items):
    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    has_vllm = importlib.util.find_spec("vllm") is not None
    skip = pytest.mark.skip(reason="needs CUDA and vLLM (the GPU kit)")
    for item in items:
        if "gpu" in item.keywords and not (has_cuda and has_vllm):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pool():
    with BackendPool() as shared:
        yield shared


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> ReferenceStore:
    return ReferenceStore(tmp_path_factory.mktemp("references"))


@pytest.fixture(scope="session")
def hf_llama(pool):
    return pool.get(BackendConfig("hf", "llama"))


@pytest.fixture(scope="session")
def raw_llama(pool):
    return pool.get(BackendConfig("raw_hooks", "llama"))


@pytest.fixture(scope="session")
def book(pool, store):
    """One EvidenceBook for the session: each (backend, dtype) noise floor is measured once."""
    from nnbench.backends.engine import Engine
    from nnbench.evidence import EvidenceBook
    from nnbench.jobs import CellParams

    return EvidenceBook(pool, store, "cpu", Engine().backend_config, floor_params=CellParams(new_tokens=3))


def require_model(family, model: str = "") -> None:
    """Skip, naming the pip command, when the model's weight packages are not installed here
    (qwen2 and gemma3: the README's model table; CI installs only SmolLM2's and GPT-2's)."""
    from nnbench.provision import missing

    reason = missing(family, model)
    if reason is not None:
        pytest.skip(reason)
