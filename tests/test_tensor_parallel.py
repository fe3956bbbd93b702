"""Tensor-parallel plumbing (issue 5): the vLLM backends get ``tensor_parallel_size``, one-device
backends refuse anything else by name. The TP=2 runs themselves need a two-GPU machine."""

import pytest

from nnbench.backends import BackendConfig, VllmSettings
from nnbench.backends.hf import HFBackend
from nnbench.backends.raw_hooks import RawHooksBackend
from nnbench.backends.vllm_serve import serve_command
from nnbench.loadgen import scenario as scenario_mod
from nnbench.offline.grid import expand
from nnbench.offline.run import SweepContext
from nnbench.offline.spec import SweepSpec


@pytest.mark.parametrize("cls", [HFBackend, RawHooksBackend])
def test_one_device_backends_refuse_tp(cls):
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        cls(BackendConfig("hf", "llama", tensor_parallel_size=2))


def test_serve_command_carries_tp_and_stays_on_loopback():
    config = BackendConfig("vllm_serve", "llama", "bfloat16", "cuda", 2, vllm=VllmSettings(api_key="k"))
    command = serve_command(config, "/models/smollm2", 6677, "/usr/bin/nnsight-serve")
    joined = " ".join(command)
    assert "--tensor-parallel-size 2" in joined and "--host 127.0.0.1" in joined and "--api-key k" in joined
    assert "-tp" not in command


def test_sweep_gives_tp_to_vllm_backends_only(pool, store):
    spec = SweepSpec.from_mapping({"backends": ["hf", "vllm_sync"], "tensor_parallel_size": 2,
                                   "methodologies": ["steering"], "families": ["llama"], "workloads": ["interactive"]})
    ctx = SweepContext(spec, pool, store, registry=None)
    run = expand(spec)[0]
    assert ctx.backend_config("vllm_sync", run, "bfloat16").tensor_parallel_size == 2
    assert ctx.backend_config("hf", run, "float32").tensor_parallel_size == 1


def test_load_scenario_takes_tp():
    scenario = scenario_mod.parse({"name": "tp", "family": "llama", "backends": ["vllm_async"],
                                   "mix": [{"methodology": "steering"}], "engine": {"tensor_parallel_size": 2}})
    assert scenario.engine.tensor_parallel_size == 2
