"""Where and how backends run: one settings object for every part that opens one.

The sweep, the probes and the load generator all turn an ``Engine`` into ``BackendConfig``s the
same way, so a pool shared between them (``nnbench.suite``) opens each vLLM engine once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nnbench.backends.base import DEFAULT_GPU_MEMORY_UTILIZATION, BackendConfig, VllmSettings
from nnbench.vocab import BackendName, Family

IN_PROCESS_TORCH = (BackendName.HF, BackendName.RAW_HOOKS, BackendName.TRANSFORMER_LENS, BackendName.PYVENE)
"""in-process PyTorch backends: one device, no engine options"""


@dataclass(frozen=True, slots=True)
class Engine:
    """Device, precision and vLLM engine settings; vLLM-only fields are ignored by hf and null."""

    device: str = "cpu"
    dtype: str = "float32"
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int = 512
    tensor_parallel_size: int = 1
    kv_cache_gib: float | None = None
    """vLLM: a fixed KV-cache size per GPU instead of one measured at start-up. vLLM sizes the cache
    from the device's free memory while it profiles; an engine starting beside another (the suite's
    nnsight-serve) counts the neighbour's allocations as its own and gets a smaller cache (0.88
    against 10.4 GiB measured). Unset: vLLM's profiling, bounded by gpu_memory_utilization."""
    serve_url: str | None = None
    """vllm_serve: an nnsight-serve already running; unset starts one for the run"""
    api_key: str | None = None
    health_timeout_s: float = 300.0
    """vllm_serve: how long to wait for GET /health before giving up (engine start-up included)"""
    serve_name_each_block: bool = True
    """vllm_serve: name each trace block's file in the request (false: exactly what nnsight sends,
    which stock nnsight-serve 0.8.1 mis-handles once a second block of one file arrives)"""
    null_latency_ms: float = 0.0
    """null backend: how long each request takes"""

    def vllm(self) -> VllmSettings:
        return VllmSettings(gpu_memory_utilization=self.gpu_memory_utilization, max_model_len=self.max_model_len,
                            kv_cache_gib=self.kv_cache_gib, api_key=self.api_key,
                            health_timeout_s=self.health_timeout_s, name_each_block=self.serve_name_each_block)

    def backend_config(self, name: BackendName | str, family: str, dtype: str | None = None,
                       model: str = "") -> BackendConfig:
        """The config of backend ``name`` for ``family`` (at ``dtype``, default this engine's), on
        ``model`` (a built-in model's name or a directory; empty: the family's default)."""
        dtype = dtype or self.dtype
        if name in IN_PROCESS_TORCH:  # they refuse tensor parallelism and take no engine options
            return BackendConfig(BackendName(name), Family(family), dtype, self.device, model=model)
        return BackendConfig(BackendName(name), Family(family), dtype, self.device, self.tensor_parallel_size,
                             self.serve_url, self.vllm(), model)


def vllm_engine_args(config: BackendConfig) -> dict[str, Any]:
    """vLLM's engine arguments for ``config``, the same for ``VLLM(...)`` in process and for the
    nnsight-serve command line: explicit dtype (vLLM's "auto" would down-cast fp32 checkpoints), a
    small memory share so several engines fit, the KV cache pinned when ``kv_cache_gib`` is set."""
    args: dict[str, Any] = {
        "dtype": config.dtype,
        "gpu_memory_utilization": config.vllm.gpu_memory_utilization,
        "max_model_len": config.vllm.max_model_len,
        "tensor_parallel_size": config.tensor_parallel_size,
    }
    if config.vllm.kv_cache_gib is not None:
        args["kv_cache_memory_bytes"] = int(config.vllm.kv_cache_gib * 2**30)
    if config.dtype == "float32":
        args["attention_backend"] = "TRITON_ATTN"  # FlashAttention is bf16/fp16 only
    return args
