"""Every nnsight HF cell against its raw-hooks twin on the real models: they must agree.

And each intervention must actually move the output (twins that both silently do nothing would
agree too): the intervened distribution must differ from the plain model's by more than the
oracle's SUPPORTED tolerance, or a lost intervention would pass as SUPPORTED.
"""

import pytest

from nnbench.backends import BackendConfig
from nnbench.cells import CELLS, CellKey
from nnbench.cells.job import CellJob, CellParams
from nnbench.offline.grid import prompts_for
from nnbench.oracle import compare
from nnbench.oracle.metrics import total_variation
from nnbench.oracle.thresholds import STRICT
from nnbench.prompts import Prompt

HF_KEYS = [k for k in CELLS.keys() if k.backend == "hf"]
INTERVENING = {"steering", "activation_patching", "zero_ablation", "generation_steering"}


def _job(key: CellKey) -> CellJob:
    return CellJob(key.methodology, key.family, key.workload, prompts_for(key.methodology, key.workload, 2),
                   CellParams(new_tokens=2))


@pytest.mark.parametrize("key", HF_KEYS, ids=str)
def test_nnsight_cell_agrees_with_raw_hooks_twin(key, pool):
    job = _job(key)
    hf = pool.get(BackendConfig("hf", key.family)).run(job, CELLS.get(key))
    twin = CellKey(key.methodology, key.family, "raw_hooks", key.workload)
    raw = pool.get(BackendConfig("raw_hooks", key.family)).run(job, CELLS.get(twin))
    result = compare(hf, raw)
    assert result.within(STRICT), result


def _first_distribution(output):
    first = output.per_prompt[0]
    return next(iter(first.dists.values()))[:1]


@pytest.mark.parametrize("key", [k for k in HF_KEYS if k.methodology in INTERVENING and k.workload != "batched"], ids=str)
def test_intervention_moves_the_output(key, pool):
    """The first next-token distribution with the intervention against the same prompt without it
    (steering by a zero vector is the identity, so it serves as the plain run)."""
    backend = pool.get(BackendConfig("raw_hooks", key.family))
    job = _job(key)
    intervened = backend.run(job, CELLS.get(CellKey(key.methodology, key.family, "raw_hooks", key.workload)))
    texts = job.corrupt_texts if key.methodology == "activation_patching" else job.texts
    plain_job = CellJob("steering", key.family, "interactive", tuple(Prompt(t) for t in texts), CellParams(alpha=0.0))
    plain = backend.run(plain_job, CELLS.get(CellKey("steering", key.family, "raw_hooks", "interactive")))
    tv = total_variation(_first_distribution(intervened), _first_distribution(plain)).item()
    # the oracle can only catch an intervention that silently did not land if its effect is
    # well outside what STRICT lets through
    assert tv > 2 * STRICT.max_tv, f"{key}: the intervention moved the next-token distribution by TV {tv:.4f} only"
