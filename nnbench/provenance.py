"""Where a number came from: package versions, device, git commit, seed, spec hash, date."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from nnbench.records import Provenance

PACKAGES = ("nnbench", "torch", "transformers", "nnsight", "vllm", "numpy", "hdrhistogram", "aiohttp")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """HEAD (``-dirty`` with uncommitted changes), or ``NNBENCH_GIT_COMMIT`` where the checkout's own
    history is not the one that was copied (the GPU machine gets a work tree on an older .git)."""
    if os.environ.get("NNBENCH_GIT_COMMIT"):
        return os.environ["NNBENCH_GIT_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def collect(device: str, seed: int, spec: dict[str, Any]) -> Provenance:
    return Provenance(
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        versions={name: _version(name) for name in PACKAGES},
        python=platform.python_version(),
        platform=platform.platform(),
        device=device,
        device_name=device_name(device),
        cpu_count=os.cpu_count(),
        git_commit=_git_commit(),
        seed=seed,
        spec_hash=spec_hash(spec),
    )
