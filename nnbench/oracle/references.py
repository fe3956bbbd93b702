"""HF reference outputs, computed once and cached on disk.

The key hashes everything the outputs depend on: model content hash, methodology, family,
workload, every intervention parameter, the prompts, dtype, device kind, the cell format version,
the source of the reference cell and of every nnbench function and class it reaches, and the
torch, transformers and nnsight versions. A changed parameter or a revised cell body therefore
never hits a stale entry. Writes are atomic (temporary file + rename); failures and outputs with
NaN or inf are not cached (a broken control must not outlive its fix).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from nnbench.jobs import CellJob, CellOutput
from nnbench.oracle.classify import Failure, Outcome
from nnbench.oracle.compare import finite_output

FORMAT_VERSION = 3
"""bump when a cell's output layout changes: every cached reference becomes unreachable"""


@functools.cache
def library_versions() -> tuple[tuple[str, str], ...]:
    found = []
    for name in ("torch", "transformers", "nnsight"):
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append((name, "absent"))
    return tuple(found)


def _reached(obj: Any, seen: dict[str, str]) -> None:
    """Add the source of ``obj`` and of the nnbench functions and classes its code names."""
    target = inspect.unwrap(obj.func if isinstance(obj, functools.partial) else obj)
    module = getattr(target, "__module__", "") or ""
    if not module.startswith("nnbench") or not (inspect.isfunction(target) or inspect.isclass(target)):
        return
    name = f"{module}.{target.__qualname__}"
    if name in seen:
        return
    try:
        seen[name] = inspect.getsource(target)
    except (OSError, TypeError):
        seen[name] = "<no source>"
    codes = [target.__code__] if inspect.isfunction(target) else [
        m.__code__ for m in vars(target).values() if inspect.isfunction(m)]
    scope = vars(sys.modules[module])
    while codes:
        code = codes.pop()
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        for word in code.co_names:
            if word in scope:
                _reached(scope[word], seen)


def code_hash(fn: Callable) -> str:
    """A hash of ``fn``'s source and of every nnbench function or class it reaches by name (the
    helpers a cell calls, ``Modules``, ``steering_vector``…), so a revised body is a new key."""
    seen: dict[str, str] = {}
    _reached(fn, seen)
    return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()[:16]


def reference_key(job: CellJob, model_hash: str, dtype: str, device: str, fn: Callable | None = None,
                  kind: str = "reference") -> str:
    """``fn``: the HF cell (or control) that computes the entry; ``kind``: what the entry is."""
    fields = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "code": code_hash(fn) if fn is not None else None,
        "versions": library_versions(),
        "model": model_hash,
        "methodology": str(job.methodology),
        "family": str(job.family),
        "workload": str(job.workload),
        "params": job.params.as_dict() | {"steering_norm": job.params.steering_norm(job.family, job.model)},
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
        if not isinstance(outcome, Failure) and finite_output(outcome):
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
