"""The evidence every response is checked against, computed before the clock starts."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nnbench.backends import BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.cells.registry import CELLS, CellRegistry
from nnbench.evidence import EvidenceBook
from nnbench.jobs import CellJob, CellParams
from nnbench.loadgen.scenario import Scenario
from nnbench.oracle import Evidence, Outcome, ReferenceStore
from nnbench.records import FloorFailure, FloorRow


class ReferenceBook:
    """The run's references, controls and floors (``nnbench.evidence``) for one backend at a time."""

    def __init__(self, scenario: Scenario, pool: BackendPool, store: ReferenceStore,
                 registry: CellRegistry = CELLS) -> None:
        self.scenario = scenario
        engine = scenario.engine
        self.book = EvidenceBook(pool, store, engine.device, engine.backend_config, registry,
                                 CellParams(new_tokens=max((m.new_tokens for m in scenario.mix), default=4)))
        self._config: BackendConfig | None = None
        self._memo: dict[tuple[BackendConfig, CellJob], Evidence] = {}

    def use(self, config: BackendConfig) -> None:
        """Judge the next responses as coming from ``config``'s backend."""
        self._config = config

    def reference(self, job: CellJob) -> Outcome:
        return self.book.reference(job)

    def evidence(self, job: CellJob) -> Evidence:
        if self._config is None:
            raise RuntimeError("ReferenceBook.use(config) names the backend before evidence is asked for")
        key = (self._config, job)
        if key not in self._memo:
            self._memo[key] = self.book.evidence(job, self._config)
        return self._memo[key]

    def prefetch(self, jobs: Iterable[CellJob], on_each: Callable[[], None] | None = None) -> None:
        """Compute every distinct job's evidence now (the backend's own unintervened runs
        included), so the checks after the step only look them up."""
        for job in dict.fromkeys(jobs):
            evidence = self.evidence(job)
            if evidence.matched is not None:
                evidence.matched()
            if evidence.effect is not None:
                evidence.effect.control()
            if on_each:
                on_each()

    def floor_rows(self) -> list[FloorRow | FloorFailure]:
        return self.book.floor_rows()

