"""``open_backend(config)``: imports a backend's module only when it is chosen.

Heavy or optional dependencies (vLLM above all) are imported on open, so ``import nnbench`` and
the test collection work on a machine without them.
"""

from __future__ import annotations

import importlib

from nnbench.backends.base import Backend, BackendConfig, VllmSettings
from nnbench.vocab import BackendName

_IMPLEMENTATIONS: dict[BackendName, tuple[str, str, str | None]] = {
    BackendName.HF: ("nnbench.backends.hf", "HFBackend", None),
    BackendName.RAW_HOOKS: ("nnbench.backends.raw_hooks", "RawHooksBackend", None),
    BackendName.NULL: ("nnbench.backends.null", "NullBackend", None),
    BackendName.VLLM_SERVE: ("nnbench.backends.vllm_serve", "ServeBackend", None),
    BackendName.TRANSFORMER_LENS: ("nnbench.backends.transformer_lens", "TransformerLensBackend",
                                   "transformer-lens (pip install -e '.[peers]')"),
    BackendName.PYVENE: ("nnbench.backends.pyvene", "PyveneBackend", "pyvene (pip install -e '.[peers]')"),
    BackendName.VLLM_SYNC: ("nnbench.backends.vllm_sync", "VLLMSyncBackend", "vllm (pip install -e '.[vllm]') and a GPU"),
    BackendName.VLLM_ASYNC: ("nnbench.backends.vllm_async", "VLLMAsyncBackend", "vllm (pip install -e '.[vllm]') and a GPU"),
    BackendName.VLLM_LENS: ("nnbench.backends.vllm_lens", "VllmLensBackend",
                            "vllm and vllm-lens (a wheel built from github.com/UKGovernmentBEIS/vllm-lens) and a GPU"),
}


def open_backend(config: BackendConfig, made: Backend | None = None, **kwargs) -> Backend:
    """Open the backend ``config.name``: ``made`` if given (constructed, perhaps started), else a new one."""
    backend = made if made is not None else make_backend(config, **kwargs)
    try:
        backend.open()
    except ImportError as exc:
        raise RuntimeError(f"backend {config.name} needs {_IMPLEMENTATIONS[config.name][2] or exc.name}: {exc}") from exc
    return backend


def make_backend(config: BackendConfig, **kwargs) -> Backend:
    """Construct the backend ``config.name`` without opening it."""
    return backend_class(config.name)(config, **kwargs)


def backend_class(name: BackendName) -> type[Backend]:
    """The implementation of backend ``name`` (its module imported now)."""
    if name not in _IMPLEMENTATIONS:
        allowed = ", ".join(_IMPLEMENTATIONS)
        raise ValueError(f"backend: {name!r} is not available in this build; allowed: {allowed}")
    module_name, class_name, needs = _IMPLEMENTATIONS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"backend {name} needs {needs or exc.name}: {exc}") from exc
    return getattr(module, class_name)


__all__ = ["Backend", "BackendConfig", "VllmSettings", "backend_class", "make_backend", "open_backend"]
