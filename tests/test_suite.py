"""`python -m nnbench suite`: sweep, probes and load in one process on one pool, on CPU with
real models: every part writes its usual files, and each backend is opened once for all parts."""

import subprocess
import sys
from pathlib import Path

import pytest

from nnbench.results import read_record
from nnbench.suite import load_suite, run_suite
from nnbench.validate import SpecError

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

LOAD = """
name = "tiny_steering"
family = "gpt2"
backends = ["hf"]
seed = 3
interventions = 2
max_send_lag_p99_ms = 50.0
[[mix]]
methodology = "steering"
[arrivals]
process = "poisson"
rates = [4.0]
[stop]
duration_s = 9.0
drain_s = 20.0
[engine]
device = "cuda"
dtype = "bfloat16"
"""

SUITE = """
name = "tiny"
[engine]
device = "cpu"
dtype = "float32"
[sweep]
families = ["gpt2"]
backends = ["hf", "raw_hooks"]
methodologies = ["steering"]
workloads = ["interactive"]
trials = 1
[micro]
backends = ["raw_hooks"]
[load]
scenarios = ["load.toml"]
duration_s = 1.5
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    (folder / "load.toml").write_text(LOAD)
    (folder / "suite.toml").write_text(SUITE)
    spec = load_suite(folder / "suite.toml")
    record, path = run_suite(spec, folder / "out", show_progress=False)
    return spec, record, path


def test_the_suites_engine_and_duration_replace_the_scenarios(finished):
    spec, _, _ = finished
    load = spec.loads[0]
    assert (load.engine.device, load.engine.dtype, load.stop.duration_s) == ("cpu", "float32", 1.5)


def test_every_part_runs_and_writes_its_own_record(finished):
    _, record, path = finished
    assert record.status == "success" and record.summary.failed_parts == 0
    assert [(r.part, r.family) for r in record.rows] == [("sweep", "gpt2"), ("micro", "gpt2"), ("load", "gpt2")]
    kinds = [read_record(Path(r.path)).kind for r in record.rows]
    assert kinds == ["sweep", "micro", "loadgen"]
    sweep = read_record(Path(record.rows[0].path))
    assert {(r.backend, r.state) for r in sweep.rows} == {("hf", "SUPPORTED"), ("raw_hooks", "SUPPORTED")}
    load = read_record(Path(record.rows[2].path))
    assert load.rows[0].requests > 0 and load.rows[0].states["SUPPORTED"] == load.rows[0].requests


def test_each_backend_is_opened_once_for_all_parts(finished):
    _, record, _ = finished
    opened = [(e.backend, e.family, e.dtype) for e in record.summary.engines]
    assert sorted(opened) == [("hf", "gpt2", "float32"), ("raw_hooks", "gpt2", "float32")]


def test_the_report_has_the_parts_map_probes_and_load(finished):
    _, _, path = finished
    text = path.with_suffix(".md").read_text()
    for expected in ("| sweep | gpt2 | sweep |", "| load | gpt2 | tiny_steering |", "## Probes: gpt2",
                     "## nnbench load: tiny_steering", "Engine start-up"):
        assert expected in text, expected


def test_a_sweep_field_the_engine_decides_is_refused_by_name(tmp_path):
    (tmp_path / "s.toml").write_text('name = "x"\n[engine]\ndevice = "cpu"\n[sweep]\ndtypes = ["bfloat16"]\n')
    with pytest.raises(SpecError, match=r"s\.toml: sweep\.dtypes: set by the suite's \[engine\]"):
        load_suite(tmp_path / "s.toml")


def test_a_missing_scenario_file_is_named(tmp_path):
    (tmp_path / "s.toml").write_text('name = "x"\n[load]\nscenarios = ["nope.toml"]\n')
    with pytest.raises(SpecError, match="nope.toml: no such file"):
        load_suite(tmp_path / "s.toml")


def test_the_committed_gpu_suites_parse():
    suite = load_suite(SCENARIOS / "suite_gpu.toml")
    assert suite.families() == ("gpt2", "llama") and {s.family for s in suite.loads} == {"llama"}
    assert all(s.engine == suite.engine for s in suite.loads)
    probes = load_suite(SCENARIOS / "suite_gpu_probes.toml")
    assert probes.micro_backends[1:] == ("vllm_sync", "vllm_async", "vllm_serve")


def test_suite_cli_refuses_a_bad_file_in_one_line(tmp_path):
    (tmp_path / "s.toml").write_text('name = "x"\n')
    done = subprocess.run([sys.executable, "-m", "nnbench", "suite", str(tmp_path / "s.toml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nothing to run" in done.stderr


def test_a_failing_part_is_recorded_with_its_cause_and_its_file_and_the_suite_goes_on(tmp_path):
    (tmp_path / "bad.toml").write_text(LOAD.replace('backends = ["hf"]', 'backends = ["vllm_async"]')
                                       .replace('name = "tiny_steering"', 'name = "no_vllm"'))
    (tmp_path / "good.toml").write_text(LOAD)
    (tmp_path / "s.toml").write_text('name = "x"\n[engine]\ndevice = "cpu"\n[load]\n'
                                     'scenarios = ["bad.toml", "good.toml"]\nduration_s = 1.0\n')
    record, _ = run_suite(load_suite(tmp_path / "s.toml"), tmp_path / "out", show_progress=False)
    bad, good = record.rows
    assert bad.status == "error" and "vllm" in bad.error and Path(bad.path).is_file()
    assert read_record(Path(bad.path)).status == "error"
    assert good.status == "success" and record.summary.failed_parts == 1
