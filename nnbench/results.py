"""One versioned result file that says how every number was made.

``status`` goes ``started`` → ``success | error | cancelled``. The file is rewritten atomically
(temporary file + rename) after every row, so Ctrl-C or a crash leaves a complete partial record.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULT_VERSION = 1
KINDS = ("sweep", "micro", "loadgen", "suite")
STATUSES = ("started", "success", "error", "cancelled")


@dataclass
class RunRecord:
    kind: str
    spec: dict[str, Any]
    provenance: dict[str, Any]
    version: int = RESULT_VERSION
    status: str = "started"
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    finished_at: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    floors: list[dict[str, Any]] = field(default_factory=list)
    """the noise floors the oracle measured in this run, one per (family, backend, dtype, device)"""

    def finish(self, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status: unknown value {status!r}; allowed: {', '.join(STATUSES)}")
        self.status = status
        self.error = error
        self.finished_at = datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def finishing(record: RunRecord, save: Callable[[], object] = lambda: None) -> Iterator[RunRecord]:
    """Close ``record`` with the status its block earned, and save it whatever happens:
    ``success``; ``cancelled`` on Ctrl-C; ``error`` with the exception's type and message."""
    try:
        yield record
        record.finish("success")
    except (KeyboardInterrupt, asyncio.CancelledError):
        record.finish("cancelled", "interrupted by the user")
        raise
    except Exception as exc:
        record.finish("error", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        save()


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null (a NaN figure is never a SUPPORTED one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_record(record: RunRecord, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(_clean(asdict(record)), handle, indent=1, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: Path) -> RunRecord:
    data = json.loads(Path(path).read_text())
    if data.get("version") != RESULT_VERSION:
        raise ValueError(f"{path}: result version {data.get('version')!r}, this nnbench reads {RESULT_VERSION}")
    if data.get("kind") not in KINDS:
        raise ValueError(f"{path}: kind {data.get('kind')!r}; allowed: {', '.join(KINDS)}")
    known = set(RunRecord.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field {unknown[0]!r}")
    return RunRecord(**data)


def result_path(directory: Path, kind: str, label: str) -> Path:
    """Self-describing name: ``<kind>-<label>-<UTC timestamp>.json``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path(directory) / f"{kind}-{label}-{stamp}.json"
