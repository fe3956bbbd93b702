"""One versioned result file that says how every number was made.

``status`` goes ``started`` → ``success | error | cancelled``. The file is rewritten atomically
(temporary file + rename) after every row, so Ctrl-C or a crash leaves a complete partial record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, overload

from nnbench.records import (
    KIND_ROWS,
    CellRow,
    Excluded,
    FloorFailure,
    FloorRow,
    Kind,
    LoadStepRow,
    LoadSummary,
    PartRow,
    ProbeRow,
    ProbeSummary,
    Provenance,
    Row,
    SuiteSummary,
    Summary,
    SweepSummary,
    TenantRow,
    TenantsSummary,
)
from nnbench.results_v1 import upgrade_v1
from nnbench.schema import RecordError, decode, decode_value, encode

RESULT_VERSION = 2
"""v2: typed rows (``nnbench.records``), every field written and required on reading; v1 files
are upgraded on reading (``nnbench.results_v1``)."""
KINDS: tuple[Kind, ...] = ("sweep", "micro", "loadgen", "suite", "tenants")
STATUSES = ("started", "success", "failed", "error", "cancelled")
"""``failed``: the run finished but judged nothing (``nnbench.verdict``); ``error``: it raised"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord(Generic[Row, Summary]):
    """One run of one command: what was asked (``spec``), where (``provenance``), what came out."""

    kind: Kind
    spec: dict[str, Any]
    """the spec or scenario as its own parser reads it back (``SweepSpec.as_dict``, ``Scenario.as_dict``)"""
    provenance: Provenance
    version: int = RESULT_VERSION
    status: str = "started"
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    rows: list[Row] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)
    summary: Summary | None = None
    """set when the run ends, however it ends"""
    error: str | None = None
    floors: list[FloorRow | FloorFailure] = field(default_factory=list)
    """the noise floors the oracle measured in this run, one per (family, backend, dtype, device)"""

    def finish(self, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status: unknown value {status!r}; allowed: {', '.join(STATUSES)}")
        self.status = status
        self.error = error
        self.finished_at = _now()


SweepRecord = RunRecord[CellRow, SweepSummary]
ProbeRecord = RunRecord[ProbeRow, ProbeSummary]
LoadRecord = RunRecord[LoadStepRow, LoadSummary]
SuiteRecord = RunRecord[PartRow, SuiteSummary]
TenantsRecord = RunRecord[TenantRow, TenantsSummary]


@contextmanager
def finishing(record: RunRecord, save: Callable[[], object] = lambda: None,
              verdict: Callable[[Any], str | None] = lambda record: None) -> Iterator[RunRecord]:
    """Close ``record`` with the status its block earned, and save it whatever happens:
    ``success``, or ``failed`` with ``verdict``'s reason when it judged nothing; ``cancelled`` on
    Ctrl-C; ``error`` with the exception's type and message."""
    try:
        yield record
        reason = verdict(record)
        record.finish("failed" if reason else "success", reason)
    except (KeyboardInterrupt, asyncio.CancelledError):
        record.finish("cancelled", "interrupted by the user")
        raise
    except Exception as exc:
        record.finish("error", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        save()


def write_record(record: RunRecord, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(encode(record), handle, indent=1, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@overload
def read_record(path: Path, kind: Literal["sweep"]) -> SweepRecord: ...
@overload
def read_record(path: Path, kind: Literal["micro"]) -> ProbeRecord: ...
@overload
def read_record(path: Path, kind: Literal["loadgen"]) -> LoadRecord: ...
@overload
def read_record(path: Path, kind: Literal["suite"]) -> SuiteRecord: ...
@overload
def read_record(path: Path, kind: Literal["tenants"]) -> TenantsRecord: ...
@overload
def read_record(path: Path, kind: None = None) -> RunRecord: ...


def read_record(path: Path, kind: Kind | None = None) -> RunRecord:
    """The record at ``path``, of ``kind`` if given; a v1 file is upgraded first. Raises
    ``RecordError`` naming the first field that is unknown, missing or of the wrong type."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not JSON: {exc}") from None
    try:
        return parse_record(data, kind)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None


def parse_record(data: Any, kind: Kind | None = None) -> RunRecord:
    if not isinstance(data, dict):
        raise RecordError(f"a result file holds one object, got {type(data).__name__}")
    if data.get("version") == 1:
        data = upgrade_v1(data)
    if data.get("version") != RESULT_VERSION:
        raise RecordError(f"version: {data.get('version')!r}; this nnbench reads 1 and {RESULT_VERSION}")
    found = data.get("kind")
    if found not in KINDS:
        raise RecordError(f"kind: {found!r}; allowed: {', '.join(KINDS)}")
    if kind is not None and found != kind:
        raise RecordError(f"kind: a {found} record, expected {kind}")
    fields = {f.name for f in dataclasses.fields(RunRecord)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise RecordError(f"{unknown[0]}: unknown field; a record has {', '.join(sorted(fields))}")
    missing = sorted(fields - set(data))
    if missing:
        raise RecordError(f"{missing[0]}: missing field")
    row_type, summary_type = KIND_ROWS[found]
    for name in ("rows", "excluded", "floors"):
        if not isinstance(data[name], list):
            raise RecordError(f"{name}: must be a list")
    return RunRecord(
        kind=found,
        spec=_object(data["spec"], "spec"),
        provenance=decode(Provenance, data["provenance"], "provenance"),
        version=RESULT_VERSION,
        status=decode_value(Literal["started", "success", "failed", "error", "cancelled"], data["status"], "status"),
        started_at=decode_value(str, data["started_at"], "started_at"),
        finished_at=decode_value(str | None, data["finished_at"], "finished_at"),
        rows=[decode(row_type, r, f"rows[{i}]") for i, r in enumerate(data["rows"])],
        excluded=[decode(Excluded, e, f"excluded[{i}]") for i, e in enumerate(data["excluded"])],
        summary=None if data["summary"] is None else decode(summary_type, data["summary"], "summary"),
        error=decode_value(str | None, data["error"], "error"),
        floors=[decode_value(FloorRow | FloorFailure, f, f"floors[{i}]") for i, f in enumerate(data["floors"])],
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: must be an object, got {type(value).__name__}")
    return value
