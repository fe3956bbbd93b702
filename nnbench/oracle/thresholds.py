"""The oracle's tolerances, in one place.

Calibrated from the measured noise floors (docs/findings.md, "Calibration"):

* Same model, same precision, two implementations (nnsight vs raw hooks, fp32, CPU): every
  distribution and value is bit-identical (TV 0, relative error 0).
* fp32 vs bf16 of the same model (CPU, 8 prompts, all positions; shared/notes/model-weights.md):
  top-1 agreement 0.986, max TV 0.140. Our own bf16-vs-fp32 runs of every cell stay within
  max TV ≈ 0.2, and attribution scores within ≈ 0.25 relative error.

``STRICT`` is what SUPPORTED means: agreement with the fp32 reference up to cross-kernel fp32
noise (GPU TF32, fused kernels), far below the bf16 floor. ``MATCHED`` judges a cell against the
HF reference re-run at the cell's own precision on the same device: kernels still differ there
(vLLM's fused/paged kernels vs HF eager), so it allows the bf16 noise floor with headroom, but a
wrong intervention (wrong layer, missing norm, lost edit) moves TV by 0.5 and more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tolerance:
    min_top1: float
    """lowest allowed top-1 agreement over a prompt's rows"""
    max_tv: float
    """largest allowed total-variation distance of any row"""
    max_rel_err: float
    """largest allowed relative error of any value tensor"""


STRICT = Tolerance(min_top1=0.99, max_tv=0.005, max_rel_err=0.005)
MATCHED = Tolerance(min_top1=0.90, max_tv=0.25, max_rel_err=0.3)
