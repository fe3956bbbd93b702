"""Engine settings reach vLLM the same way on both paths: the in-process ``VLLM(...)`` keyword
arguments and the ``nnsight-serve`` command line. The engines themselves need a GPU
(``tests/test_gpu_vllm.py``); here the arguments they are given are checked."""

import pytest

from nnbench.backends.base import VllmSettings
from nnbench.backends.engine import Engine
from nnbench.backends.vllm_engine import engine_kwargs
from nnbench.backends.vllm_serve import serve_command
from nnbench.loadgen.scenario import parse_engine
from nnbench.validate import SpecError


def _serve_flags(engine: Engine) -> dict[str, str]:
    command = serve_command(engine.backend_config("vllm_serve", "llama"), "/models/smollm2", 6677, "/bin/nnsight-serve")
    flags = command[2:]  # after the executable and the model path
    return dict(zip(flags[::2], flags[1::2]))


def test_a_fixed_kv_cache_reaches_both_paths_in_bytes():
    engine = Engine(device="cuda", dtype="bfloat16", kv_cache_gib=1.5)
    assert engine_kwargs(engine.backend_config("vllm_sync", "llama"))["kv_cache_memory_bytes"] == 1_610_612_736
    assert _serve_flags(engine)["--kv-cache-memory-bytes"] == "1610612736"


def test_without_a_fixed_kv_cache_vllm_profiles_within_its_memory_share():
    engine = Engine(device="cuda", dtype="bfloat16", gpu_memory_utilization=0.2)
    kwargs = engine_kwargs(engine.backend_config("vllm_async", "gpt2"))
    assert "kv_cache_memory_bytes" not in kwargs and kwargs["gpu_memory_utilization"] == 0.2
    flags = _serve_flags(engine)
    assert "--kv-cache-memory-bytes" not in flags and flags["--gpu-memory-utilization"] == "0.2"


def test_plain_torch_backends_take_no_engine_options():
    assert Engine(device="cuda", kv_cache_gib=2.0).backend_config("hf", "llama").vllm == VllmSettings()


@pytest.mark.parametrize("value", [0, -1.0, "4GiB", True])
def test_a_bad_kv_cache_size_is_refused_by_name(value):
    with pytest.raises(SpecError, match="engine.kv_cache_gib"):
        parse_engine({"kv_cache_gib": value})


def test_kv_cache_size_is_read_from_a_scenario_engine_table():
    assert parse_engine({"kv_cache_gib": 4}).kv_cache_gib == 4.0
