"""Open backends on first use and share them; close them all at the end."""

from __future__ import annotations

import time

from nnbench.backends import Backend, BackendConfig, open_backend


class BackendPool:
    """Keyed by ``BackendConfig``: the sweep's reference backend and its hf cells share one model.

    Examples:
        >>> with BackendPool() as pool:
        ...     hf = pool.get(BackendConfig("hf", "llama"))
    """

    def __init__(self) -> None:
        self._open: dict[BackendConfig, Backend] = {}
        self._failed: dict[BackendConfig, Exception] = {}
        """a backend that failed to open is not retried for every cell (an engine start costs a minute)"""
        self.open_seconds: dict[BackendConfig, float] = {}
        """how long each backend took to open (engine start-up), reported apart from warm timing"""

    def get(self, config: BackendConfig) -> Backend:
        if config in self._failed:
            raise self._failed[config]
        if config not in self._open:
            started = time.perf_counter()
            try:
                self._open[config] = open_backend(config)
            except Exception as exc:
                self._failed[config] = exc
                raise
            self.open_seconds[config] = time.perf_counter() - started
        return self._open[config]

    def release(self, config: BackendConfig) -> None:
        """Close one backend now (its GPU memory is needed by the next one); absent is fine."""
        backend = self._open.pop(config, None)
        if backend is not None:
            backend.close()

    def close_family(self, family: str) -> None:
        """Close one family's backends: the next family's engines need the GPU memory."""
        for config in [c for c in self._open if c.family == family]:
            self._open.pop(config).close()

    def close(self) -> None:
        for backend in self._open.values():
            backend.close()
        self._open.clear()

    def __enter__(self) -> BackendPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
