"""HF reference outputs, computed once and cached on disk.

The key hashes everything the outputs depend on: model content hash, methodology, family,
workload, every intervention parameter, the prompts, dtype, device kind and the cell format
version. A changed parameter therefore can never hit a stale entry. Writes are atomic
(temporary file + rename); failures are not cached (they may be transient).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from nnbench.cells.job import CellJob, CellOutput
from nnbench.oracle.classify import Failure, Outcome

FORMAT_VERSION = 2
"""bump when a cell's output layout changes: every cached reference becomes unreachable"""


def reference_key(job: CellJob, model_hash: str, dtype: str, device: str) -> str:
    fields = {
        "format": FORMAT_VERSION,
        "model": model_hash,
        "methodology": str(job.methodology),
        "family": str(job.family),
        "workload": str(job.workload),
        "params": job.params.as_dict(),
        "prompts": [asdict(p) for p in job.prompts],
        "dtype": dtype,
        "device": device.split(":")[0],
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


class ReferenceStore:
    """A directory of ``<model hash>/<key>.pt`` files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str, model_hash: str) -> Path:
        return self.root / model_hash / f"{key}.pt"

    def get_or_compute(self, key: str, model_hash: str, compute: Callable[[], Outcome]) -> Outcome:
        path = self.path(key, model_hash)
        if path.exists():
            return CellOutput.from_payload(torch.load(path, weights_only=True))
        outcome = compute()
        if not isinstance(outcome, Failure):
            self._write(path, outcome)
        return outcome

    def _write(self, path: Path, output: CellOutput) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        os.close(fd)
        try:
            torch.save(output.to_payload(), tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
