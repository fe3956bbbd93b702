"""vLLM cells on the GPU (the kit installed): skipped on machines without CUDA and vLLM."""

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_pool():
    from nnbench.backends.pool import BackendPool

    with BackendPool() as shared:
        yield shared


@pytest.mark.parametrize("backend", ["vllm_sync", "vllm_async"])
@pytest.mark.parametrize("methodology", ["steering", "logit_lens", "zero_ablation"])
def test_aware_vllm_cell_matches_hf_at_matched_precision(backend, methodology, gpu_pool, tmp_path):
    from nnbench.offline.run import run_sweep
    from nnbench.offline.spec import SweepSpec
    from nnbench.oracle import ReferenceStore

    spec = SweepSpec.from_mapping({"methodologies": [methodology], "families": ["llama"], "backends": [backend],
                                   "workloads": ["interactive"], "dtypes": ["bfloat16"], "device": "cuda",
                                   "warmup": 0, "trials": 1})
    row = run_sweep(spec, store=ReferenceStore(tmp_path), pool=gpu_pool).rows[0]
    assert row["state"] in ("SUPPORTED", "SUPPORTED_DEGRADED"), row


def test_attribution_on_vllm_is_an_error_not_a_number(gpu_pool, tmp_path):
    from nnbench.offline.run import run_sweep
    from nnbench.offline.spec import SweepSpec
    from nnbench.oracle import ReferenceStore

    spec = SweepSpec.from_mapping({"methodologies": ["attribution_patching"], "families": ["llama"],
                                   "backends": ["vllm_sync"], "workloads": ["interactive"], "dtypes": ["bfloat16"],
                                   "device": "cuda", "warmup": 0, "trials": 1})
    row = run_sweep(spec, store=ReferenceStore(tmp_path), pool=gpu_pool).rows[0]
    assert row["state"] == "ERROR" and row["error"]["type"]
