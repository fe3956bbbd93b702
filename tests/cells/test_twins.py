"""Every nnsight HF cell against its raw-hooks twin on the real models: they must agree.

(Twins that both silently do nothing would agree too: tests/cells/test_discrimination.py checks
that every intervention moves every built-in prompt.)
"""

import pytest
import torch

from nnbench.backends import BackendConfig
from nnbench.cells import CELLS, CellKey
from nnbench.jobs import CellJob, CellParams
from nnbench.offline.grid import prompts_for
from nnbench.oracle import compare
from nnbench.oracle.thresholds import STRICT
from tests.conftest import require_model

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them

HF_KEYS = [k for k in CELLS if k.backend == "hf"]


def _job(key: CellKey) -> CellJob:
    return CellJob(key.methodology, key.family, key.workload, prompts_for(key.methodology, key.workload, 2),
                   CellParams(new_tokens=2))


@pytest.mark.parametrize("key", HF_KEYS, ids=str)
def test_nnsight_cell_agrees_with_raw_hooks_twin(key, pool):
    require_model(key.family)
    job = _job(key)
    hf = pool.get(BackendConfig("hf", key.family)).run(job, CELLS.get(key))
    twin = CellKey(key.methodology, key.family, "raw_hooks", key.workload)
    raw = pool.get(BackendConfig("raw_hooks", key.family)).run(job, CELLS.get(twin))
    result = compare(hf, raw)
    assert result.within(STRICT), result
    differing = [(i, name) for i, (a, b) in enumerate(zip(hf.per_prompt, raw.per_prompt))
                 for name in a.dists if not torch.equal(a.dists[name], b.dists[name])]
    assert not differing, f"fp32 twins differ bit for bit in {differing}"
