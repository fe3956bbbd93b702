"""vLLM cells on the GPU (the kit installed): skipped on machines without CUDA and vLLM.

Run on the device with ``bash scripts/gpu_run.sh tests``. Each test is one sweep row judged by
the real oracle against HF on the same GPU.
"""

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_pool():
    from nnbench.backends.pool import BackendPool

    with BackendPool() as shared:
        yield shared


def _rows(gpu_pool, tmp_path, **spec):
    from nnbench.offline.run import run_sweep
    from nnbench.offline.spec import SweepSpec
    from nnbench.oracle import ReferenceStore

    base = {"families": ["llama"], "workloads": ["interactive"], "dtypes": ["bfloat16"], "device": "cuda",
            "warmup": 0, "trials": 1}
    record = run_sweep(SweepSpec.from_mapping(base | spec), store=ReferenceStore(tmp_path), pool=gpu_pool)
    return {row.variant: row for row in record.rows}


@pytest.mark.parametrize("backend", ["vllm_sync", "vllm_async"])
@pytest.mark.parametrize("methodology", ["steering", "logit_lens", "zero_ablation"])
def test_aware_vllm_cell_matches_hf_at_matched_precision(backend, methodology, gpu_pool, tmp_path):
    row = _rows(gpu_pool, tmp_path, methodologies=[methodology], backends=[backend])["aware"]
    assert row.state in ("SUPPORTED", "SUPPORTED_DEGRADED"), row


def test_batched_patching_runs_as_invokes_of_one_trace_and_matches_hf(gpu_pool, tmp_path):
    rows = _rows(gpu_pool, tmp_path, methodologies=["activation_patching"], backends=["vllm_sync"],
                 workloads=["batched"])
    assert rows["aware"].state in ("SUPPORTED", "SUPPORTED_DEGRADED"), rows["aware"]
    assert rows["aware"].prompts == 4


def test_the_portable_logit_lens_reads_the_mlp_output_and_is_silently_wrong_on_llama(gpu_pool, tmp_path):
    rows = _rows(gpu_pool, tmp_path, methodologies=["logit_lens"], backends=["vllm_sync"])
    assert rows["portable"].state == "SILENTLY_WRONG", rows["portable"]
    assert rows["aware"].state in ("SUPPORTED", "SUPPORTED_DEGRADED"), rows["aware"]


def test_attribution_on_vllm_is_an_error_not_a_number(gpu_pool, tmp_path):
    row = _rows(gpu_pool, tmp_path, methodologies=["attribution_patching"], backends=["vllm_sync"])["aware"]
    assert row.state == "ERROR" and row.error.type


@pytest.mark.parametrize("methodology", ["steering", "activation_patching"])
def test_serve_runs_the_same_cells_over_http(methodology, gpu_pool, tmp_path):
    row = _rows(gpu_pool, tmp_path, methodologies=[methodology], backends=["vllm_serve"])["aware"]
    assert row.state in ("SUPPORTED", "SUPPORTED_DEGRADED"), row


def _book(gpu_pool, tmp_path):
    from nnbench.backends.engine import Engine
    from nnbench.evidence import EvidenceBook
    from nnbench.oracle import ReferenceStore

    return EvidenceBook(gpu_pool, ReferenceStore(tmp_path), "cuda", Engine("cuda", "bfloat16").backend_config)


def test_probes_run_through_every_vllm_backend_and_catch_the_uncloned_read(gpu_pool, tmp_path):
    from nnbench.backends.engine import Engine
    from nnbench.micro.probes import Primitive, Probe
    from nnbench.micro.run import _judge_probe
    from nnbench.prompts import FACTS

    backends = ("vllm_sync", "vllm_async", "vllm_serve")
    book = _book(gpu_pool, tmp_path)
    cloned = _judge_probe(Probe(Primitive.READ_OUTPUT_CLONED, "mlp", "llama", FACTS[0].text), backends, gpu_pool,
                          Engine("cuda", "bfloat16"), book)
    assert {r.state for r in cloned} <= {"SUPPORTED", "SUPPORTED_DEGRADED"}, cloned
    bare = _judge_probe(Probe(Primitive.READ_OUTPUT, "mlp", "llama", FACTS[0].text), ("vllm_sync",), gpu_pool,
                        Engine("cuda", "bfloat16"), book)
    assert bare[0].state == "SILENTLY_WRONG", bare  # vLLM's fused kernels reuse the buffer


@pytest.mark.parametrize("backend", ["vllm_sync", "vllm_async"])
@pytest.mark.parametrize("fault", ["lost edit", "sign flip", "wrong layer"])
def test_a_planted_steering_fault_on_vllm_is_silently_wrong_at_bf16(fault, backend, gpu_pool, tmp_path):
    """The faults the old oracle excused as precision at bf16, on vLLM's own steering cell."""
    import dataclasses

    from nnbench.backends.engine import Engine
    from nnbench.cells import CELLS, CellKey
    from nnbench.jobs import CellJob, CellParams
    from nnbench.oracle import judge
    from nnbench.prompts import FACTS

    config = Engine("cuda", "bfloat16").backend_config(backend, "llama")
    job = CellJob("steering", "llama", "interactive", FACTS[:1])
    norm = job.params.steering_norm("llama")
    planted = {"lost edit": CellParams(alpha=0.0), "sign flip": CellParams(alpha=-norm),
               "wrong layer": CellParams(layer=7)}[fault]
    entry = CELLS.get(CellKey("steering", "llama", backend, "interactive", "aware"))
    output = gpu_pool.get(config).run(dataclasses.replace(job, params=planted), entry)
    verdict = judge(output, _book(gpu_pool, tmp_path).evidence(job, config))
    assert verdict.state == "SILENTLY_WRONG", verdict.note


def test_closing_vllm_async_leaves_no_task_pending_on_its_loop():
    import asyncio

    from nnbench.backends import BackendConfig, VllmSettings
    from nnbench.backends.vllm_async import VLLMAsyncBackend

    backend = VLLMAsyncBackend(BackendConfig("vllm_async", "llama", "bfloat16", "cuda",
                                             vllm=VllmSettings(kv_cache_gib=1.0)))
    backend.open()
    tasks_while_open = asyncio.run_coroutine_threadsafe(_task_count(), backend.loop).result(60)
    backend.close()
    assert tasks_while_open > 1  # vLLM's output handler is running on the backend's loop
    assert backend.loop.is_closed() and not asyncio.all_tasks(backend.loop)


async def _task_count() -> int:
    import asyncio

    return len(asyncio.all_tasks())
