import json

import pytest

from nnbench.offline.run import run_sweep
from nnbench.offline.spec import SweepSpec
from nnbench.report.markdown import sweep_report
from nnbench.results import read_record

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them


def test_sweep_writes_a_complete_record_with_states_and_timings(tmp_path, pool, store):
    spec = SweepSpec.from_mapping({"methodologies": ["zero_ablation"], "families": ["llama"],
                                   "workloads": ["interactive", "batched"], "warmup": 0, "trials": 2, "batch_size": 2})
    out = tmp_path / "sweep.json"
    record = run_sweep(spec, out=out, store=store, pool=pool)
    saved = read_record(out)
    assert saved.status == "success" and len(saved.rows) == 4
    assert {r.state for r in saved.rows} == {"SUPPORTED"}
    batched = [r for r in saved.rows if r.workload == "batched"]
    assert all(r.prompts_per_s > 0 and r.overhead > 0 for r in batched)
    assert saved.provenance.versions["nnsight"].startswith("0.8")
    report = sweep_report(record)
    assert "| zero_ablation | batched | SUPPORTED | SUPPORTED |" in report


def test_interrupted_sweep_keeps_what_it_measured(tmp_path, pool, store):
    spec = SweepSpec.from_mapping({"methodologies": ["steering"], "families": ["llama"], "backends": ["raw_hooks"],
                                   "warmup": 0, "trials": 1})

    def interrupt_at_second(index, total, run):
        if index == 1:
            raise KeyboardInterrupt

    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out=out, store=store, pool=pool, on_progress=interrupt_at_second)
    saved = json.loads(out.read_text())
    assert saved["status"] == "cancelled" and len(saved["rows"]) == 1
