"""Open backends on first use and share them; close them all at the end."""

from __future__ import annotations

import time

from nnbench.backends import Backend, BackendConfig, backend_class, make_backend, open_backend


class BackendPool:
    """Keyed by ``BackendConfig``: the sweep's reference backend and its hf cells share one model.

    Examples:
        >>> with BackendPool() as pool:
        ...     hf = pool.get(BackendConfig("hf", "llama"))
    """

    def __init__(self) -> None:
        self._open: dict[BackendConfig, Backend] = {}
        self._starting: dict[BackendConfig, tuple[Backend, float]] = {}
        """started in the background (``prestart``), not yet waited for"""
        self._failed: dict[BackendConfig, Exception] = {}
        """a backend that failed to open is not retried for every cell (an engine start costs a minute)"""
        self.open_seconds: dict[BackendConfig, float] = {}
        """how long each backend took to open (engine start-up), reported apart from warm timing"""

    def prestart(self, config: BackendConfig) -> None:
        """Start a backend that can start in the background (``start()``: nnsight-serve's process,
        whose ~45 s of imports then overlap other work); others are opened on first ``get``."""
        if config in self._open or config in self._starting or config in self._failed:
            return
        try:
            if not backend_class(config.name).starts_in_background:
                return
            started = time.perf_counter()
            backend = make_backend(config)
            backend.start()
        except Exception as exc:  # noqa: BLE001 - reported by the first get, like any failed open
            self._failed[config] = exc
            return
        self._starting[config] = (backend, started)

    def get(self, config: BackendConfig) -> Backend:
        if config in self._failed:
            raise self._failed[config]
        if config not in self._open:
            made, started = self._starting.pop(config, (None, time.perf_counter()))
            try:
                self._open[config] = open_backend(config, made)
            except Exception as exc:
                self._failed[config] = exc
                if made is not None:
                    made.close()
                raise
            self.open_seconds[config] = time.perf_counter() - started  # from its start, overlapped or not
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
        for config in [c for c in self._starting if c.family == family]:
            self._starting.pop(config)[0].close()

    def close(self) -> None:
        for backend in [*self._open.values(), *(b for b, _ in self._starting.values())]:
            backend.close()
        self._open.clear()
        self._starting.clear()

    def __enter__(self) -> BackendPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
