"""Result files, schema v2: strict both ways, and every committed v1 file still loads and renders."""

import json
from pathlib import Path

import pytest

from nnbench.records import CellRow, LoadStepRow
from nnbench.report.loadgen import markdown_summary
from nnbench.report.markdown import probe_map, sweep_report
from nnbench.report.tenants import markdown as tenants_markdown
from nnbench.results import RESULT_VERSION, read_record, write_record
from nnbench.schema import RecordError
from nnbench.suite import suite_report

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p for p in (ROOT / "results").rglob("*.json")
                   if p.name != "manifest.json" and json.loads(p.read_text()).get("kind") is not None)
RENDER = {"sweep": sweep_report, "micro": probe_map, "loadgen": markdown_summary, "suite": suite_report,
          "tenants": tenants_markdown}
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SWEEP_V1 = FIXTURES / "sweep-v1-llama-vllm-cuda.json"


def test_committed_results_are_found():
    assert len(COMMITTED) >= 50


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_every_committed_record_loads_and_renders(path):
    record = read_record(path)
    assert record.version == RESULT_VERSION and record.rows
    assert RENDER[record.kind](record).strip()


def test_a_v2_record_round_trips_exactly(tmp_path):
    record = read_record(SWEEP_V1, "sweep")
    write_record(record, tmp_path / "v2.json")
    again = read_record(tmp_path / "v2.json", "sweep")
    assert again == record and all(isinstance(r, CellRow) for r in again.rows)
    assert json.loads((tmp_path / "v2.json").read_text())["version"] == 2


def _rewrite(tmp_path, change) -> Path:
    record = read_record(SWEEP_V1, "sweep")
    write_record(record, tmp_path / "v2.json")
    data = json.loads((tmp_path / "v2.json").read_text())
    change(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    return tmp_path / "bad.json"


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["rows"][3].update(colour="red"), "rows[3].colour: unknown field"),
    (lambda d: d["rows"][2].pop("variant"), "rows[2].variant: missing field"),
    (lambda d: d["rows"][0]["timing"].update(median_s="fast"), "rows[0].timing.median_s: must be a number"),
    (lambda d: d["rows"][1].update(state="FINE"), "rows[1].state: unknown value 'FINE'"),
    (lambda d: d["rows"][1].update(prompts=1.5), "rows[1].prompts: must be int"),
    (lambda d: d["rows"][0]["versus_reference"].pop("max_tv"), "rows[0].versus_reference.max_tv: missing field"),
    (lambda d: d.update(surprise=1), "surprise: unknown field"),
    (lambda d: d.pop("floors"), "floors: missing field"),
])
def test_a_bad_field_is_refused_by_its_path(tmp_path, change, message):
    with pytest.raises(RecordError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_record(_rewrite(tmp_path, change), "sweep")


def test_the_wrong_kind_is_refused(tmp_path):
    with pytest.raises(RecordError, match="kind: a sweep record, expected loadgen"):
        read_record(SWEEP_V1, "loadgen")


def test_v1_load_rows_without_later_fields_upgrade_to_not_measured():
    oldest = next(p for p in COMMITTED if "20261123-h100" in str(p) and "loadgen" in p.name)
    record = read_record(oldest, "loadgen")
    assert all(isinstance(r, LoadStepRow) and r.isolation_power is None and r.phases_s is None for r in record.rows)


def test_the_committed_index_is_current():
    """results/INDEX.md is generated (python -m nnbench.runs results/): it lists every record."""
    from nnbench.runs import index

    assert (ROOT / "results" / "INDEX.md").read_text() == index(ROOT / "results")


def test_per_request_logs_are_kept_only_for_runs_the_findings_cite():
    """A committed per-request log is evidence someone reads: its run folder (or the folder that
    holds it, e.g. a suite's) is named in docs/findings.md, by its path or, in a table of such
    folders, as `name/`; others are not committed."""
    root = Path(__file__).resolve().parents[1]
    findings = (root / "docs" / "findings.md").read_text()

    def cited(folder: Path) -> bool:
        return f"{folder.relative_to(root)}/" in findings or f"`{folder.name}/`" in findings

    uncited = [log.relative_to(root) for log in sorted((root / "results").rglob("*-requests.jsonl.gz"))
               if not (cited(log.parent) or cited(log.parent.parent))]
    assert not uncited, uncited
