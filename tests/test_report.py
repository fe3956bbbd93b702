"""`nnbench report`: one map from several committed GPU sweep records, failing cells linked to probes."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from nnbench.report.markdown import merge_sweeps, primitive_links
from nnbench.results import read_record
from nnbench.vocab import BackendName, State

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # v1 records of the 2026-11-24 H100 map
FIRST = FIXTURES / "sweep-v1-llama-vllm-cuda.json"
RERUN = FIXTURES / "sweep-v1-serve-rerun-cuda.json"
PROBES = FIXTURES / "micro-v1-vllm_sync-cuda.json"


def _serve_patching(record):
    return next(r for r in record.rows if r.backend == "vllm_serve" and r.family == "llama"
                and r.methodology == "activation_patching" and r.workload == "interactive"
                and r.variant == "aware")


def test_a_later_record_replaces_the_same_cell_and_keeps_the_rest():
    first, rerun = read_record(FIRST), read_record(RERUN)
    merged = merge_sweeps([first, rerun])
    assert _serve_patching(first).state == "ERROR" and _serve_patching(merged).state == "SUPPORTED"
    assert len(merged.rows) == len(first.rows) + sum(r.family == "gpt2" for r in rerun.rows)
    assert sum(merged.summary.states.values()) == len(merged.rows)


def test_failing_vllm_cells_point_at_the_wrong_primitive():
    links = primitive_links(merge_sweeps([read_record(FIRST), read_record(RERUN)]), read_record(PROBES))
    lens = next(line for line in links.splitlines() if line.startswith("| logit_lens/llama/vllm_sync/interactive [portable]"))
    assert "read_output:decoder_layer: **SILENTLY_WRONG**" in lens
    assert "[aware]" not in "".join(line for line in links.splitlines() if line.startswith("| logit_lens"))


def test_report_cli_refuses_a_missing_file_by_name(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nnbench", "report", str(tmp_path / "nope.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "nope.json" in done.stderr


def test_a_cell_links_to_its_own_backends_probe_and_names_a_stand_in():
    sweep = merge_sweeps([read_record(FIRST), read_record(RERUN)])
    sync_probes = read_record(PROBES)
    lens = "| logit_lens/llama/vllm_async/interactive [portable]"
    line = next(row for row in primitive_links(sweep, sync_probes).splitlines() if row.startswith(lens))
    assert "SILENTLY_WRONG** (on vllm_sync)" in line  # async not probed: the sync probe, named as such

    async_probes = read_record(PROBES)
    async_probes.rows = [replace(r, backend=BackendName.VLLM_ASYNC, state=State.SUPPORTED) for r in async_probes.rows
                         if r.backend == "vllm_sync"]
    line = next(row for row in primitive_links(sweep, [sync_probes, async_probes]).splitlines() if row.startswith(lens))
    assert "read_output:decoder_layer: SUPPORTED" in line and "(on " not in line
