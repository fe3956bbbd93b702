"""Honest run outcomes (issue 18): a run that judged nothing ends ``failed`` (exit 1, the reason in
the terminal, the Markdown and the JSON); every bad input is one line naming it; run folders are
never shared. Each test plants the case a new user hit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import torch

from nnbench.cli import main
from nnbench.loadgen import scenario as scenario_mod
from nnbench.results import read_record
from nnbench.runs import OutDirError, RunFolder
from nnbench.validate import SpecError, require_device

BASE = {"name": "honest", "family": "llama", "backends": ["null"], "mix": [{"methodology": "steering"}]}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnbench: error: "), err  # one line, no traceback
    return err[0]


@pytest.mark.parametrize("table, message", [
    ({"arrivals": {"process": "poisson", "rates": [1e9]}}, "plans 1e+10 requests a step"),
    ({"arrivals": {"process": "closed", "users": [100_000]}}, "arrivals.users: 100000 users, at most 4,096"),
    ({"knee": {"enabled": True, "max_rate": 1e7}, "stop": {"duration_s": 1.0}}, "knee.max_rate"),
    ({"backends": ["hf"], "tenants": {"attacks": ["benign"], "canary_rate": 1e6, "duration_s": 1.0}},
     "tenants.canary_rate"),
])
def test_a_rate_that_cannot_be_generated_is_refused_by_name(table, message):
    with pytest.raises(SpecError, match=message.replace("+", r"\+").replace(".", r"\.")):
        scenario_mod.parse(BASE | table)


def test_a_rate_one_step_can_hold_still_passes():
    scenario_mod.parse(BASE | {"arrivals": {"process": "poisson", "rates": [1e4]}, "stop": {"duration_s": 10.0}})


def test_a_toml_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    assert main(["loadgen", str(path)]) == 2
    assert "not UTF-8 text (byte 0xe9" in _one_line_error(capsys)


def test_an_out_dir_that_cannot_be_written_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OutDirError, match="cannot create a run folder"):
        RunFolder.create(blocker / "out", "sweep", "x")
    assert main(["micro", "--families", "gpt2", "--out", str(blocker / "out"), "--quiet"]) == 2
    assert f"--out {blocker / 'out'}" in _one_line_error(capsys)


def test_two_runs_in_the_same_second_get_two_folders(tmp_path):
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    taken = tmp_path / f"loadgen-same-{stamp}"
    taken.mkdir()
    (taken / "loadgen-same.json").write_text("{}")  # an earlier run's record, which must survive
    folder = RunFolder.create(tmp_path, "loadgen", "same")
    again = RunFolder.create(tmp_path, "loadgen", "same")
    assert len({taken, folder.dir, again.dir}) == 3 and not any(folder.dir.iterdir())
    assert (taken / "loadgen-same.json").read_text() == "{}"


@pytest.mark.parametrize("device", ["tpu", "cuda:7"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_a_device_this_machine_lacks_is_refused_before_anything_runs(device, tmp_path, capsys):
    with pytest.raises(SpecError, match="--device"):
        require_device(device)
    assert main(["micro", "--families", "gpt2", "--device", device, "--out", str(tmp_path), "--quiet"]) == 2
    line = _one_line_error(capsys)
    assert device in line and not list(tmp_path.iterdir())  # refused before any run folder


LAYER99 = ('name = "layer99"\nfamily = "llama"\nbackends = ["null"]\n[[mix]]\nmethodology = "steering"\nlayer = 99\n'
           '[arrivals]\nprocess = "constant"\nrates = [4.0]\n[stop]\nduration_s = 1.0\n')


def test_a_layer_the_model_lacks_is_refused_by_name(tmp_path, capsys):
    path = tmp_path / "layer99.toml"
    path.write_text(LAYER99)
    assert main(["loadgen", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "mix[0].layer: 99, but the llama model has 30 layers (0-29)" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
async def test_a_load_run_that_judged_nothing_fails_with_the_reason(tmp_path):
    """The backstop behind the layer check: every HF reference fails (layer 99 of 30, sent past
    the CLI), so every response is NO_REFERENCE. Before: "valid: yes", success, exit 0."""
    from nnbench.loadgen.run import run_scenario
    from nnbench.report.loadgen import markdown_summary

    scenario = scenario_mod.parse(BASE | {"mix": [{"methodology": "steering", "layer": 99}],
                                          "arrivals": {"process": "constant", "rates": [4.0]}, "stop": {"duration_s": 1.0}})
    seen = []
    record = await run_scenario(scenario, tmp_path, show_progress=False, on_folder=seen.append)
    assert record.status == "failed" and record.error.startswith("nothing was judged: ") and "NO_REFERENCE" in record.error
    (folder,) = seen
    assert read_record(folder / "loadgen-honest.json", "loadgen").status == "failed"
    assert "**Run failed: nothing was judged" in markdown_summary(record)
    assert main_exit_of(record) == 1


def main_exit_of(record) -> int:
    from nnbench.cli import _exit

    return _exit(record)


def test_a_load_run_prints_its_folder_at_the_start_and_the_end(tmp_path, capsys):
    path = tmp_path / "quick.toml"
    path.write_text('name = "quick"\nfamily = "llama"\nbackends = ["null"]\ncheck = false\n[[mix]]\n'
                    'methodology = "steering"\n[arrivals]\nprocess = "constant"\nrates = [20.0]\n[stop]\nduration_s = 0.5\n')
    assert main(["loadgen", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    (folder,) = (tmp_path / "out").iterdir()
    assert capsys.readouterr().err.count(f"results: {folder}/") == 2


@pytest.mark.slow
def test_a_sweep_that_judged_something_still_succeeds(tmp_path):
    """The control: one real cell, judged, exits 0 (the verdict must not fail a good run)."""
    assert main(["sweep", "--families", "gpt2", "--backends", "hf", "--methodologies", "steering",
                 "--workloads", "interactive", "--trials", "1", "--out", str(tmp_path), "--quiet"]) == 0
    (folder,) = tmp_path.iterdir()
    assert read_record(next(folder.glob("sweep-*.json")), "sweep").status == "success"


def test_error_classes_are_summed_over_every_step():
    """Before: a dict over the rows kept only the last step's count of each class."""
    import dataclasses
    from pathlib import Path

    from nnbench.report.loadgen import markdown_summary

    record = read_record(Path(__file__).parents[1] / "results/20261123-cpu-loadgen/loadgen-steering_qps.json", "loadgen")
    assert len(record.rows) >= 2
    record.rows[0] = dataclasses.replace(record.rows[0], errors={"CutOff": 2, "ServeError": 1})
    record.rows[1] = dataclasses.replace(record.rows[1], errors={"CutOff": 3})
    record.rows[2:] = [dataclasses.replace(r, errors={}) for r in record.rows[2:]]
    assert "Error classes (all steps): CutOff ×5, ServeError ×1" in markdown_summary(record)


def test_vllm_serve_without_vllm_says_what_is_missing():
    """Before: every request failed with "'NoneType' object has no attribute 'trace'"."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: the meta model exists")
    from nnbench.backends.vllm_serve import ServeBackend
    from nnbench.cells import CELLS, CellKey
    from nnbench.jobs import CellJob
    from nnbench.offline.grid import prompts_for

    scenario = scenario_mod.parse(BASE | {"backends": ["vllm_serve"], "engine": {"serve_url": "http://127.0.0.1:9"}})
    backend = ServeBackend(scenario.engine.backend_config("vllm_serve", "llama"))
    entry = CELLS.get(CellKey("steering", "llama", "vllm_serve", "interactive", "aware"))
    job = CellJob("steering", "llama", "interactive", prompts_for("steering", "interactive", 1))
    with pytest.raises(RuntimeError, match=r"needs vLLM installed on this machine \(pip install -e '\.\[vllm\]'\)"):
        backend.prepare(job, entry)


SPINNER = """
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
while True:
    if time.process_time() > 1.0 and not os.path.exists(sys.argv[2]):
        open(sys.argv[2], "w").write("spun a CPU second")
"""


def test_a_step_beside_another_process_that_spins_is_marked_busy(tmp_path):
    """Plant the loaded machine: a CPU-bound process that is not this run's (started detached, so
    it is no child of ours) spins one core while a step is metered; its share must show and the
    step must be marked busy in the record and the Markdown. The meter ends once the spinner has
    used a CPU second (its own signal), not after a fixed sleep."""
    import dataclasses
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from nnbench.machine import BUSY_OTHERS, LoadMeter
    from nnbench.report.loadgen import markdown_summary

    cpus = os.cpu_count() or 1
    if 1 / cpus <= BUSY_OTHERS:
        pytest.skip(f"one spinning core is {1 / cpus:.0%} of {cpus} cores, under the busy mark")
    script, pid_file, spun = tmp_path / "spin.py", tmp_path / "spin.pid", tmp_path / "spun"
    script.write_text(SPINNER)
    # sh starts the spinner in the background and exits: the spinner is re-parented, not our child
    subprocess.run(["sh", "-c", f'"{sys.executable}" "{script}" "{pid_file}" "{spun}" >/dev/null 2>&1 &'], check=True)
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the spinner never started"
        time.sleep(0.01)
    pid = int(pid_file.read_text())
    try:
        meter = LoadMeter().start()
        while not spun.exists():
            assert time.monotonic() < deadline, "the spinner never used a CPU second"
            time.sleep(0.01)
        machine = meter.stop()
    finally:
        os.kill(pid, signal.SIGKILL)  # the process this test started, by its PID
    assert machine.others_cpu is not None and machine.others_cpu > BUSY_OTHERS and machine.busy, machine
    record = read_record(Path(__file__).parents[1] / "results/20261123-cpu-loadgen/loadgen-steering_qps.json", "loadgen")
    record.rows[0] = dataclasses.replace(record.rows[0], machine=machine)
    text = markdown_summary(record)
    assert "| **busy: " in text and f"1 of {len(record.rows)} steps ran on a busy machine" in text


def test_a_cache_that_cannot_be_created_is_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("NNBENCH_CACHE", str(blocker / "cache"))
    assert main(["micro", "--families", "gpt2", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert f"NNBENCH_CACHE={blocker / 'cache'}: cannot create the cache directory" in _one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_taps_benchmark_on_a_cpu_machine_is_one_line():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks/taps.py"), "--out", "/dev/null"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "needs vLLM on cuda: this machine has no CUDA device" in done.stderr


def test_plots_mark_doubtful_steps_and_say_when_nothing_succeeded(tmp_path):
    """An all-error run drew two empty panels; invalid, interrupted and busy steps looked like any other."""
    import dataclasses
    from pathlib import Path

    from nnbench.machine import MachineLoad
    from nnbench.records import LatencySummary
    from nnbench.report.loadgen import no_latency_reason, plot_curves, step_marks
    from nnbench.vocab import State

    record = read_record(Path(__file__).parents[1] / "results/20261123-cpu-loadgen/loadgen-steering_qps.json", "loadgen")
    assert no_latency_reason(record) is None
    record.rows[0] = dataclasses.replace(record.rows[0], valid=False, invalid_reason="generator fell behind")
    record.rows[1] = dataclasses.replace(record.rows[1], interrupted=True,
                                         machine=MachineLoad(2, 0.6, 0.0, 3.1, True))
    marks = [m.marks for m in step_marks(record)]
    assert marks[0] == ("invalid",) and marks[1] == ("interrupted", "busy") and not any(marks[2:])
    empty = LatencySummary(*[None] * len(dataclasses.fields(LatencySummary)))
    failed = [dataclasses.replace(r, latency=empty, states={s: (r.requests if s == State.ERROR else 0) for s in State})
              for r in record.rows]
    record.rows[:] = failed
    assert no_latency_reason(record).startswith(f"no response succeeded: {sum(r.requests for r in failed)} of")
    plot_curves(record, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_a_report_out_that_cannot_be_written_is_one_line(tmp_path, capsys):
    from pathlib import Path

    sweep = next((Path(__file__).parents[1] / "results/20261203-h200-session13/lens/vllm_sync").rglob("sweep-*.json"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["report", str(sweep), "--out", str(blocker / "report.md")]) == 2
    assert "cannot write the report there" in _one_line_error(capsys)


def test_a_load_run_whose_every_step_was_invalid_fails():
    import dataclasses
    from pathlib import Path

    from nnbench.verdict import load_verdict

    record = read_record(Path(__file__).parents[1] / "results/20261123-cpu-loadgen/loadgen-steering_qps.json", "loadgen")
    assert load_verdict(record) is None  # the control: a good committed run
    record.rows[:-1] = [dataclasses.replace(r, valid=False, invalid_reason="generator fell behind") for r in record.rows[:-1]]
    assert load_verdict(record) is None  # one valid step is a result
    record.rows[-1] = dataclasses.replace(record.rows[-1], valid=False, invalid_reason="generator fell behind")
    assert load_verdict(record) == f"every step was invalid ({len(record.rows)} of {len(record.rows)}: generator fell behind)"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("argv", [
    ["run", "--methodology", "steering", "--family", "llama", "--backend", "hf", "--device", "cuda"],
    ["sweep", "--families", "gpt2", "--backends", "hf", "--device", "cuda", "--quiet"],
    ["suite", "scenarios/suite_gpu.toml", "--quiet"],
    ["loadgen", "scenarios/steering_qps_gpu.toml", "--quiet"],
], ids=["run", "sweep", "suite", "loadgen"])
def test_every_command_asked_for_cuda_on_a_cpu_machine_is_one_line(argv, tmp_path, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parents[1])
    out = ["--out", str(tmp_path)] if argv[0] in ("sweep", "suite", "loadgen") else []
    assert main([*argv, *out]) == 2
    assert "this machine has no CUDA device" in _one_line_error(capsys)
    assert not list(tmp_path.iterdir())


def test_an_unwritable_sweep_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["sweep", "--families", "gpt2", "--backends", "hf", "--out", str(blocker / "out"), "--quiet"]) == 2
    assert "cannot create a run folder" in _one_line_error(capsys)


def test_compare_given_a_sweep_record_is_one_line(capsys):
    from pathlib import Path

    sweep = next((Path(__file__).parents[1] / "results/20261203-h200-session13/lens/vllm_sync").rglob("sweep-*.json"))
    assert main(["compare", str(sweep), str(sweep)]) == 2
    assert "a sweep record, expected loadgen" in _one_line_error(capsys)


def test_ctrl_c_during_start_up_is_no_traceback(tmp_path):
    """SIGINT as soon as the process exists (during imports, before the run): at most one line."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    process = subprocess.Popen([sys.executable, "-m", "nnbench.loadgen", "scenarios/steering_qps.toml", "--out",
                                str(tmp_path), "--quiet"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode in (130, -signal.SIGINT), (process.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
