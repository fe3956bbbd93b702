"""The oracle's tolerances, in one place.

Calibrated from the measured noise floors (docs/findings.md, "Calibration"; CPU, 2026-11-23):

* Same model, same precision, two implementations (nnsight vs raw hooks, fp32): every
  distribution and value of all 76 cells is bit-identical (TV 0, relative error 0).
* bf16 against the fp32 reference, single-forward cells: max TV 0.069 (GPT-2 synthetic) and
  0.046 (SmolLM2), top-1 can flip on near-ties, attribution scores up to 0.46 relative error;
  shared/notes/model-weights.md saw max TV 0.140 over all positions. Generation cells diverge
  completely once one greedy token flips (TV up to 1.0): later steps see different prefixes.
* bf16 against the HF reference re-run at bf16 on the same CPU: max TV 0.0011.

``STRICT`` is what SUPPORTED means: agreement with the fp32 reference up to cross-kernel fp32
noise, far below the bf16 floor, and below the smallest intervention effect we ship (TV 0.0196,
patching one token of the synthetic GPT-2; tests/cells/test_twins.py keeps every intervention's
effect above twice ``STRICT.max_tv``). ``MATCHED`` judges a cell against the HF reference re-run
at the cell's own precision on the same device: kernels still differ there (vLLM's fused and
paged kernels against HF eager), so it allows the bf16 noise floor with headroom, while a wrong
intervention (wrong layer, missing norm, lost edit) moves TV by far more.
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
    tie_margin: float = 0.0
    """a top-1 differing from the reference's counts as agreement when the reference gives it a
    probability within this margin of its own top-1 (a near-tie that rounding may flip)"""


STRICT = Tolerance(min_top1=0.99, max_tv=0.005, max_rel_err=0.005)
MATCHED = Tolerance(min_top1=0.90, max_tv=0.25, max_rel_err=0.3, tie_margin=0.05)
"""on the GPU, vLLM bf16 against HF bf16 flipped a steering cell's top-1 on a near-tie with TV 0.03
(2026-11-23): the margin keeps such a flip from reading as a wrong intervention"""
