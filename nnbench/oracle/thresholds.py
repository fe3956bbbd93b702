"""The oracle's tolerances, in one place, each with the measurement it comes from.

``STRICT`` is what SUPPORTED means: agreement with the fp32 HF reference up to cross-kernel fp32
noise. Measured on CPU (2026-11-23): nnsight against raw hooks at fp32, every distribution and
value of all 76 cells bit-identical (TV 0, relative error 0). 0.005 leaves room for other fp32
kernels while staying far below bf16 noise (TV 0.02-0.14 against fp32).

Below fp32 nothing is a constant. Each run measures a **noise floor** per (family, backend, dtype,
device): the largest TV between the backend's unintervened outputs and HF's, at fp32 and at the
backend's own dtype, plus HF against its own re-run (``floors.py``). A cell is compared with the
reference whose floor is lower (HF bf16 is not always the better one: on the H100 vLLM bf16 sat
closer to HF fp32 than to HF bf16 in 90 of 116 aware cells), and may differ from it by
``FLOOR_MULTIPLE`` times that floor (never less than STRICT).

Write methodologies are also judged by their **effect** (``effect.py``): the cell's output against
its own backend's unintervened run, set against HF intervened against HF unintervened. A prompt
certifies a cell only if its reference effect is at least ``EFFECT.min_margin`` times STRICT.
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

TIE_MARGIN = 0.05
"""on the GPU, vLLM bf16 against HF bf16 flipped a steering cell's top-1 on a near-tie with TV 0.03
(2026-11-23): below fp32 such a flip does not by itself make a cell wrong"""

DEGRADED_MIN_TOP1 = 0.90

FLOOR_MULTIPLE = 3.0
"""below fp32, a cell may sit this many noise floors from its reference (docs/findings.md,
"Calibration"). Correct cells measured: bf16 cells on CPU against HF fp32 at most 1.33x the fp32
floor (GPT-2 logit lens, batched); on the H200, all 117 DEGRADED vLLM cells at most 1.16x the
floor of the reference they were judged against (Llama logit lens, batched). The exception is the
attention read at every generation step (11.6x on CPU), whose rows carry no tokens to align on
(``Evidence.unaligned_steps``)."""

VALUES_MAX_REL_ERR = 0.3
"""value tensors (attribution scores) have no unintervened counterpart to measure a floor from:
bf16 scores against a bf16 reference on the same device were identical on CPU, and bf16 against
fp32 reached 0.46. The one constant left; the attribution cell's corrupt-run distribution is
judged by floor and effect like every other."""


@dataclass(frozen=True, slots=True)
class EffectTolerance:
    min_margin: float
    """a prompt certifies a write cell only if the HF intervention moves it by at least this many
    STRICT tolerances (TV against HF's unintervened run)"""
    min_resolution: float
    """below fp32, the effect's direction and size are checked on prompts whose reference effect is
    at least this many times the tolerance in force (smaller effects drown in rounding)"""
    min_cosine: float
    """cosine between the cell's probability shift and the reference's"""
    min_ratio: float
    max_ratio: float
    """bounds on TV(cell, its control) / TV(reference, its control): the size of the effect"""


EFFECT = EffectTolerance(min_margin=10.0, min_resolution=2.0, min_cosine=0.8, min_ratio=0.6, max_ratio=1.6)
"""Correct cells on every checked prompt: cosine >= 0.917 and size 0.77-1.25x (CPU, both families,
hf and raw_hooks, fp32 and bf16); cosine >= 0.981 and size 0.93-1.06x (H200, the 66 aware vLLM write cells at bf16). The planted
faults land far outside (benchmarks/fault_matrix.py, results/20261202-cpu/fault-matrix.md)."""
