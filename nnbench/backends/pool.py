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
        self.open_seconds: dict[BackendConfig, float] = {}
        """how long each backend took to open (engine start-up), reported apart from warm timing"""

    def get(self, config: BackendConfig) -> Backend:
        if config not in self._open:
            started = time.perf_counter()
            self._open[config] = open_backend(config)
            self.open_seconds[config] = time.perf_counter() - started
        return self._open[config]

    def close(self) -> None:
        for backend in self._open.values():
            backend.close()
        self._open.clear()

    def __enter__(self) -> "BackendPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
