"""``python -m nnbench.loadgen`` as a user runs it: Ctrl-C keeps what was measured; compare."""

import json
import re
import signal
import subprocess
import sys
import threading

import pytest

SCENARIO = """
name = "ctrl_c"
family = "llama"
backends = ["null"]
check = false
[[mix]]
methodology = "steering"
[arrivals]
process = "constant"
rates = [200.0]
[stop]
duration_s = 120.0
[engine]
null_latency_ms = 2.0
"""


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_stops_the_run_and_writes_what_was_measured(stop, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    process = subprocess.Popen([sys.executable, "-m", "nnbench.loadgen", str(path), "--out", str(tmp_path / "out")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, process.kill)  # a hung child fails the test instead of hanging it
    watchdog.start()
    try:
        # the readiness signal: the progress line (stderr is a pipe, so plain lines) that shows
        # more than 100 requests done; however slow the machine, the signal comes after it
        seen = []
        for line in process.stderr:
            seen.append(line)
            if (m := re.search(r": (\d+) done", line)) and int(m.group(1)) > 100:
                break
        else:
            pytest.fail(f"no progress line with 100 requests done: {''.join(seen)[-2000:]}")
        process.send_signal(stop)
        _, err = process.communicate(timeout=120)
    finally:
        watchdog.cancel()
    assert process.returncode == 130, err
    (result,) = (tmp_path / "out").glob("loadgen-ctrl_c-*/loadgen-ctrl_c.json")
    record = json.loads(result.read_text())
    assert record["status"] == "cancelled"
    (row,) = record["rows"]
    assert row["interrupted"] and row["requests"] > 100


def test_bad_scenario_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SCENARIO.replace("rates = [200.0]", "rates = [-2]"))
    done = subprocess.run([sys.executable, "-m", "nnbench.loadgen", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("arrivals.rates: must be > 0, got -2")


def test_compare_shows_what_changed(tmp_path):
    from dataclasses import replace

    from nnbench import provenance
    from nnbench.loadgen.compare import compare
    from nnbench.loadgen.recorder import StepRecorder
    from nnbench.results import RunRecord, write_record
    from nnbench.vocab import State

    empty = StepRecorder("hf", "poisson@2", 2.0, 0.0, 1.0, 10.0).row("serialised", False, None)

    def record(p50, goodput, wrong):
        row = replace(empty, latency=replace(empty.latency, p50_ms=p50, p99_ms=2 * p50), goodput_rps=goodput,
                      throughput_rps=2.0, states=empty.states | {State.SUPPORTED: 10 - wrong,
                                                                 State.SILENTLY_WRONG: wrong})
        return RunRecord("loadgen", {}, provenance.collect("cpu", 0, {}), rows=[row])

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_record(record(100.0, 2.0, 0), a)
    write_record(record(150.0, 1.0, 3), b)
    text = compare(a, b)
    assert "100.00 → 150.00 (+50%)" in text and "2.00 → 1.00 (-50%)" in text
    assert "SILENTLY_WRONG 0→3" in text
