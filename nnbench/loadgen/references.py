"""The HF references every response is checked against, computed before the clock starts."""

from __future__ import annotations

from nnbench.backends import BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.cells.job import CellJob
from nnbench.cells.registry import CELLS, CellKey, CellRegistry
from nnbench.loadgen.scenario import Scenario
from nnbench.offline.run import REFERENCE_DTYPE, attempt
from nnbench.oracle import Failure, Outcome, ReferenceStore, reference_key
from nnbench.provision import ensure_model
from nnbench.vocab import BackendName


class ReferenceBook:
    """In-memory references of the run's distinct jobs, backed by the on-disk cache."""

    def __init__(self, scenario: Scenario, pool: BackendPool, store: ReferenceStore,
                 registry: CellRegistry = CELLS) -> None:
        self.scenario = scenario
        self.pool = pool
        self.store = store
        self.registry = registry
        self.model_hash = ensure_model(scenario.family).content_hash
        self._memo: dict[tuple[CellJob, str], Outcome] = {}

    def _compute(self, job: CellJob, dtype: str) -> Outcome:
        key = CellKey(job.methodology, job.family, BackendName.HF, job.workload)
        if key not in self.registry:
            return Failure("NotImplementedError", f"no HF cell registered for {key}")
        config = BackendConfig(BackendName.HF, job.family, dtype, self.scenario.engine.device)
        return attempt(lambda: self.pool.get(config).run(job, self.registry.get(key)))

    def get(self, job: CellJob, dtype: str = REFERENCE_DTYPE) -> Outcome:
        memo_key = (job, dtype)
        if memo_key not in self._memo:
            cache_key = reference_key(job, self.model_hash, dtype, self.scenario.engine.device)
            self._memo[memo_key] = self.store.get_or_compute(cache_key, self.model_hash, lambda: self._compute(job, dtype))
        return self._memo[memo_key]

    def reference(self, job: CellJob) -> Outcome:
        return self.get(job, REFERENCE_DTYPE)

    def matched(self, job: CellJob) -> Outcome:
        return self.get(job, self.scenario.engine.dtype)

    def prefetch(self, jobs, on_each=None) -> None:
        """Compute every distinct reference now, so the hot path only looks them up."""
        needs_matched = self.scenario.engine.dtype != REFERENCE_DTYPE
        for job in dict.fromkeys(jobs):
            self.reference(job)
            if needs_matched:
                self.matched(job)
            if on_each:
                on_each()
