"""The load generator on SmolLM2 with the HF backend: every response checked, every file written;
and a backend planted to cross wires between concurrent requests is caught."""

import asyncio
import gzip
import json
import time

import pytest

from nnbench.backends.base import BackendDefaults
from nnbench.loadgen import scenario as scenario_mod
from nnbench.loadgen.run import run_scenario

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them


def _scenario(**patch) -> scenario_mod.Scenario:
    return scenario_mod.parse({
        "name": "e2e", "family": "llama", "backends": ["hf"], "seed": 3, "interventions": 4,
        "mix": [{"methodology": "steering"}, {"methodology": "logit_lens", "weight": 0.5}],
        "arrivals": {"process": "constant", "rates": [4.0]},
        "stop": {"duration_s": 2.0, "warmup_s": 0.25, "drain_s": 30.0},
        "limits": {"timeout_s": 30.0},
        "slo": {"latency_ms": 5000.0},
        "max_send_lag_p99_ms": 50.0,
    } | patch)


async def test_every_response_is_checked_and_every_file_written(tmp_path):
    record = await run_scenario(_scenario(), tmp_path, show_progress=False)
    row = record.rows[0]
    assert record.status == "success" and row.requests == 7 and row.warmup_requests == 1
    assert row.states["SUPPORTED"] == row.requests
    assert row.goodput_rps > 0 and not row.isolation_failures and row.concurrency == "serialised"
    (run_dir,) = tmp_path.iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"loadgen-e2e.json", "loadgen-e2e.md", "loadgen-e2e-requests.jsonl.gz", "loadgen-e2e-latency.png",
            "loadgen-e2e-curves.png", "loadgen-e2e-hf-constant_at_4.hgrm", "manifest.json"} <= names
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "success" and {f["path"] for f in manifest["files"]} == names - {"manifest.json"}
    hgrm = (run_dir / "loadgen-e2e-hf-constant_at_4.hgrm").read_text()
    assert "Value     Percentile TotalCount" in hgrm
    log = gzip.decompress((run_dir / "loadgen-e2e-requests.jsonl.gz").read_bytes()).decode()
    lines = [json.loads(line) for line in log.splitlines()]
    assert {line["methodology"] for line in lines} <= {"steering", "logit_lens"}
    assert all(line["latency_s"] >= line["service_s"] for line in lines)


class CrossedWires(BackendDefaults):
    """Planted fault: pairs consecutive requests and hands each the other's result. It notes
    which job's answer each job was given, so the test can check the blame without timing."""

    concurrency = "planted"

    def __init__(self, inner) -> None:
        self.inner = inner
        self.config = inner.config
        self.waiting = None
        self.job_of: dict[int, object] = {}
        self.given: set[tuple[object, object]] = set()
        """(job asked, job whose answer it got)"""

    def prepare(self, job, entry):
        prepared = self.inner.prepare(job, entry)
        self.job_of[id(prepared)] = job
        return prepared

    async def submit(self, prepared):
        if self.waiting is None:
            partner = asyncio.get_running_loop().create_future()
            self.waiting = (prepared, partner)
            theirs = await asyncio.wait_for(partner, 10)
            self.given.add((self.job_of[id(prepared)], self.job_of[id(theirs)]))
            return await self.inner.submit(theirs)
        first, partner = self.waiting
        self.waiting = None
        partner.set_result(prepared)
        self.given.add((self.job_of[id(prepared)], self.job_of[id(first)]))
        return await self.inner.submit(first)


async def test_crossed_wires_are_counted_as_isolation_failures(tmp_path, pool):
    from nnbench.backends import BackendConfig
    from nnbench.loadgen.steps import StepPlan, step_requests

    planted = CrossedWires(pool.get(BackendConfig("hf", "llama")))
    scenario = _scenario(mix=[{"methodology": "steering"}], interventions=8, stop={"duration_s": 2.0, "drain_s": 30.0})
    record = await run_scenario(scenario, tmp_path, show_progress=False, backend_override=planted)
    row = record.rows[0]
    failures = row.isolation_failures
    assert failures, row.states
    assert row.states["SILENTLY_WRONG"] >= len(failures)
    # the request blamed carries the intervention whose answer was handed over (which one of the
    # requests in flight with that intervention is named depends on timing; the job does not)
    job = {r.id: r.job for r in step_requests(scenario, next(iter(StepPlan(scenario))))}
    assert all((job[f.request], job[f.other]) in planted.given for f in failures), failures
    assert "matches request" in failures[0].note


class Timed:
    """Wraps the real checker: records when each check ran; the check of ``slow_job`` is slow."""

    def __init__(self, inner, slow_job, slow_s) -> None:
        self.inner, self.slow_job, self.slow_s = inner, slow_job, slow_s
        self.calls: list[float] = []

    def check(self, job, outcome, others):
        self.calls.append(time.perf_counter())
        if job == self.slow_job:
            time.sleep(self.slow_s)
        return self.inner.check(job, outcome, others)


async def test_checks_run_after_the_clock_stops_and_an_unfinished_one_is_an_error(hf_llama):
    from concurrent.futures import ThreadPoolExecutor

    from nnbench.cells.registry import CELLS, CellKey
    from nnbench.jobs import CellJob, CellParams
    from nnbench.loadgen.checker import ResponseChecker
    from nnbench.loadgen.requests import LoadRequest
    from nnbench.loadgen.steps import Completed, Driven, check
    from nnbench.oracle import Evidence
    from nnbench.prompts import FACTS

    quick, slow = (CellJob("steering", "llama", "interactive", FACTS[:1], CellParams(seed=s)) for s in (0, 1))
    output = hf_llama.run(quick, CELLS.get(CellKey("steering", "llama", "hf", "interactive")))
    clock_stopped = time.perf_counter()
    driven = Driven((Completed(LoadRequest(0, 0.0, quick), output, 0.0, 0.0, 0.1, ()),
                     Completed(LoadRequest(1, 0.0, slow), output, 0.0, 0.0, 0.1, ())),
                    {0: quick, 1: slow}, 1.0, interrupted=False)
    checker = Timed(ResponseChecker(lambda job: Evidence(output)), slow_job=slow, slow_s=1.5)
    with ThreadPoolExecutor(2) as pool:
        outcomes = await check(driven, checker, pool, 0.5)
    assert len(checker.calls) == 2 and min(checker.calls) >= clock_stopped
    checks = {o.id: o for o in outcomes}
    assert checks[0].state == "SUPPORTED" and checks[1].state == "ERROR"  # recorded, not dropped
    assert "not finished within 0.5 s" in checks[1].note


class CountingPrepare(BackendDefaults):
    """The real HF backend, counting the payloads it is asked to build."""

    concurrency = "serialised"

    def __init__(self, inner) -> None:
        self.inner, self.prepared = inner, []
        self.config = inner.config

    def prepare(self, job, entry):
        self.prepared.append(job)
        return self.inner.prepare(job, entry)

    async def submit(self, prepared):
        return await self.inner.submit(prepared)


async def test_a_jobs_payload_is_built_once_across_steps_and_each_phase_is_timed(tmp_path, pool):
    from nnbench.backends import BackendConfig

    counting = CountingPrepare(pool.get(BackendConfig("hf", "llama")))
    scenario = _scenario(arrivals={"process": "constant", "rates": [4.0, 4.0]}, interventions=2,
                         mix=[{"methodology": "steering"}])
    record = await run_scenario(scenario, tmp_path, show_progress=False, backend_override=counting)
    assert len(record.rows) == 2 and all(r.requests > 0 for r in record.rows)
    assert len(counting.prepared) == len(set(counting.prepared))  # the second step reused every payload
    assert record.rows[1].phases_s is not None and record.rows[0].phases_s is not None
    assert record.rows[1].phases_s.drive_s >= 2.0  # the step's 2 s of sending, at least
