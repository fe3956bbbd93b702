"""Noise floors: how far a backend's *unintervened* outputs sit from HF's, measured in the run.

Per (family, backend, dtype, device) the run computes the unintervened next-token distributions
of the built-in prompts (every workload form it judges) on the backend, on HF at fp32, on HF at
the backend's dtype and on HF at that dtype again. The floor against each reference is the
largest TV seen; below fp32 the cell is compared with whichever reference sits closer (measured,
not assumed: HF bf16 can be the noisy side), and the result names which one was used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from nnbench.jobs import CellOutput
from nnbench.oracle.compare import compare, worst
from nnbench.oracle.thresholds import (
    DEGRADED_MIN_TOP1,
    FLOOR_MULTIPLE,
    STRICT,
    TIE_MARGIN,
    VALUES_MAX_REL_ERR,
    Tolerance,
)

REFERENCE_DTYPE = "float32"


@dataclass(frozen=True, slots=True)
class NoiseFloor:
    family: str
    backend: str
    dtype: str
    device: str
    versus_fp32: float
    """largest TV of the backend's unintervened outputs against HF fp32's"""
    versus_matched: float | None
    """… against HF's at the backend's own dtype (None at fp32)"""
    hf_rerun: float | None
    """HF at the backend's dtype against its own re-run (None at fp32)"""
    runs: int
    """unintervened runs the figures are the worst of"""

    @property
    def reference_dtype(self) -> str:
        """The HF precision a below-fp32 cell is compared with: the closer one."""
        if self.versus_matched is None or self.dtype == REFERENCE_DTYPE:
            return REFERENCE_DTYPE
        return self.dtype if max(self.versus_matched, self.hf_rerun or 0.0) <= self.versus_fp32 else REFERENCE_DTYPE

    @property
    def other_dtype(self) -> str:
        """The HF precision the floor did not choose."""
        return self.dtype if self.reference_dtype == REFERENCE_DTYPE else REFERENCE_DTYPE

    def against(self, dtype: str) -> float:
        """The floor against HF at ``dtype`` (fp32 or the backend's own)."""
        if dtype == REFERENCE_DTYPE:
            return self.versus_fp32
        return max(self.versus_matched or 0.0, self.hf_rerun or 0.0)

    @property
    def tv(self) -> float:
        """The floor against the chosen reference."""
        return self.against(self.reference_dtype)

    def tolerance(self, dtype: str | None = None) -> Tolerance:
        """What SUPPORTED_DEGRADED allows against HF at ``dtype`` (default: the chosen reference)."""
        floor = self.against(dtype or self.reference_dtype)
        return Tolerance(min_top1=DEGRADED_MIN_TOP1, max_tv=max(FLOOR_MULTIPLE * floor, STRICT.max_tv),
                         max_rel_err=VALUES_MAX_REL_ERR, tie_margin=TIE_MARGIN)

    def as_dict(self) -> dict:
        return asdict(self) | {"reference_dtype": self.reference_dtype, "tv": self.tv,
                               "degraded_max_tv": self.tolerance().max_tv}


@dataclass(frozen=True, slots=True)
class ControlSet:
    """One unintervened job's outputs on the backend and on HF."""

    backend: CellOutput
    hf_fp32: CellOutput
    hf_matched: CellOutput | None = None
    hf_matched_again: CellOutput | None = None


def measure_floor(family: str, backend: str, dtype: str, device: str, sets: Iterable[ControlSet]) -> NoiseFloor:
    sets = list(sets)
    matched = dtype != REFERENCE_DTYPE
    return NoiseFloor(
        family=str(family), backend=str(backend), dtype=dtype, device=device,
        versus_fp32=worst(compare(s.backend, s.hf_fp32).max_tv for s in sets),
        versus_matched=worst(compare(s.backend, s.hf_matched).max_tv for s in sets) if matched else None,
        hf_rerun=worst(compare(s.hf_matched_again, s.hf_matched).max_tv for s in sets) if matched else None,
        runs=len(sets),
    )
