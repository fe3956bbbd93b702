"""From outputs to one State.

    HF reference failed or is non-finite    → NO_REFERENCE  (nothing to judge against)
    write cell, and no prompt's reference
    effect reaches 10x STRICT               → NO_REFERENCE  (it could not tell a lost edit)
    cell raised                             → ERROR         (type and message kept)
    wrong shape, NaN/inf                    → SILENTLY_WRONG
    write cell whose effect points the
    wrong way or has the wrong size         → SILENTLY_WRONG (effect.py; at any precision)
    outputs agree with the fp32 reference   → SUPPORTED     (STRICT)
    below fp32: they agree with the closer
    HF reference (fp32 or the cell's own
    dtype) within 3x the measured floor     → SUPPORTED_DEGRADED (floors.py)
    otherwise                               → SILENTLY_WRONG
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from nnbench.jobs import CellOutput
from nnbench.oracle import effect as effects
from nnbench.oracle.compare import Comparison, compare, finite_output
from nnbench.oracle.effect import Effect
from nnbench.oracle.floors import REFERENCE_DTYPE, NoiseFloor
from nnbench.oracle.thresholds import FLOOR_MULTIPLE, STRICT
from nnbench.vocab import State

_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)):\s*(.+)$", re.MULTILINE)


class CarriedError(RuntimeError):
    """An error raised in another process (nnsight-serve's trace) and carried back: its original
    type and message travel as attributes, so nothing has to be parsed back out of the text."""

    def __init__(self, text: str, type_name: str | None = None, message: str | None = None) -> None:
        super().__init__(text)
        self.type_name = type_name
        """the original exception's class name (None: the failure was not an exception, e.g. HTTP 401)"""
        self.message = message if message is not None else text


@dataclass(frozen=True, slots=True)
class Failure:
    """An exception caught at a cell boundary, kept as data."""

    type: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        # nnsight re-raises user errors as a dynamic subclass of the original: report the original
        if isinstance(exc, CarriedError) and exc.type_name:
            return cls(exc.type_name, exc.message[:500])
        kind = type(exc)
        if kind.__module__.startswith("nnsight") and kind.__bases__ and kind.__bases__[0] is not Exception:
            kind = kind.__bases__[0]
        name, text = kind.__name__, str(exc).strip()
        # errors carried across processes (vLLM's engine, nnsight-serve) arrive as text with the
        # original traceback inside: report the innermost "SomeError: message" line
        inner = [m for m in _ERROR_LINE.finditer(text) if not m.group(2).startswith("raise ")]
        if inner:
            if name in ("RuntimeError", "ServeError"):
                name = inner[-1].group(1).rsplit(".", 1)[-1]
            message = inner[-1].group(2)
        else:
            lines = text.splitlines()
            message = lines[-1] if lines else ""
        return cls(name, message[:500])

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


Outcome = CellOutput | Failure


@dataclass(frozen=True, slots=True)
class EffectEvidence:
    """What a write cell's effect is measured from."""

    dist: str
    """the cell's distribution that carries the effect"""
    control: Callable[[], Outcome]
    """the backend's own unintervened run of the prompts the cell reads (same dtype, same process)"""
    reference_control: Outcome
    """HF's unintervened run of them at fp32"""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything a cell's output is judged against."""

    reference: Outcome
    """HF at fp32, intervened"""
    matched: Callable[[], Outcome] | None = None
    """HF at the cell's own dtype and device; None when the cell runs at fp32 (no precision excuse)"""
    floor: NoiseFloor | Failure | None = None
    """the run's measured noise floor for the cell's backend and dtype (or why measuring it
    failed); required below fp32"""
    effect: EffectEvidence | None = None
    """write methodologies only"""
    unaligned_steps: bool = False
    """a generation output that carries no per-step next-token rows (the attention read at every
    step): where two runs decode different tokens nothing in it says so, and later steps compare
    different prefixes. Below fp32 such an output may agree with either HF precision, each at its
    own measured floor (on the H200 vLLM's bf16 attention rows sat 0.464 from HF fp32, which
    decoded other tokens, and 0.014 from HF bf16 on the H100)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    versus_reference: Comparison | None = None
    versus_precision: Comparison | None = None
    """below fp32: against the reference the floor chose (``floor.reference_dtype``)"""
    error: Failure | None = None
    note: str = ""
    effect: Effect | None = None
    floor: NoiseFloor | None = None


def _bad_reference(outcome: Outcome, what: str) -> Verdict | None:
    if isinstance(outcome, Failure):
        return Verdict(State.NO_REFERENCE, error=outcome, note=f"{what} failed: {outcome}")
    if not finite_output(outcome):
        return Verdict(State.NO_REFERENCE, note=f"non-finite values in {what}")
    return None


def judge(output: Outcome, evidence: Evidence) -> Verdict:
    """Give ``output`` its state against ``evidence``."""
    reference, floor = evidence.reference, evidence.floor
    below = evidence.matched is not None
    bad = _bad_reference(reference, "the HF reference") or (
        _bad_reference(evidence.effect.reference_control, "the HF unintervened run") if evidence.effect else None)
    if bad:
        return bad
    if isinstance(output, Failure):
        return Verdict(State.ERROR, error=output, note=str(output))
    if isinstance(floor, Failure):
        return Verdict(State.ERROR, error=floor, note=f"measuring the backend's noise floor failed: {floor}")
    if below and floor is None:
        raise ValueError("judging below fp32 needs the run's measured noise floor")
    versus_reference = compare(output, reference)
    if versus_reference.problem:
        return Verdict(State.SILENTLY_WRONG, versus_reference, note=versus_reference.problem)
    if not versus_reference.finite:
        return Verdict(State.SILENTLY_WRONG, versus_reference, note="non-finite values in the outputs")
    tolerance = floor.tolerance() if below else STRICT
    effect = None
    if evidence.effect is not None:
        effect, wrong = _effect(output, evidence.effect, reference, tolerance.max_tv)
        if wrong is not None:
            return Verdict(wrong.state, versus_reference, error=wrong.error, note=wrong.note, effect=effect, floor=floor)
    caveat = _caveat(effect)
    if versus_reference.within(STRICT):
        return Verdict(State.SUPPORTED, versus_reference, effect=effect, floor=floor, note=caveat.lstrip("; "))
    if not below:
        return Verdict(State.SILENTLY_WRONG, versus_reference, note="diverges at the reference's own precision",
                       effect=effect)
    candidates = [floor.reference_dtype] + ([floor.other_dtype] if evidence.unaligned_steps else [])
    verdict = None
    for dtype in candidates:
        verdict = _versus_precision(output, reference if dtype == REFERENCE_DTYPE else evidence.matched(), dtype,
                                    versus_reference, floor, effect, caveat)
        if verdict.state != State.SILENTLY_WRONG:
            return verdict
    return verdict


def _versus_precision(output: CellOutput, chosen: Outcome, dtype: str, versus_reference: Comparison,
                      floor: NoiseFloor, effect: Effect | None, caveat: str) -> Verdict:
    """SUPPORTED_DEGRADED if ``output`` sits within the floor's tolerance of HF at ``dtype``."""
    bad = _bad_reference(chosen, f"the HF {dtype} reference")
    if bad:
        return Verdict(bad.state, versus_reference, error=bad.error, note=bad.note, effect=effect, floor=floor)
    tolerance = floor.tolerance(dtype)
    versus_precision = compare(output, chosen)
    allowed = f"{tolerance.max_tv:.3g} ({FLOOR_MULTIPLE:g}x the measured floor {floor.against(dtype):.3g}, or STRICT)"
    if versus_precision.within(tolerance):
        return Verdict(State.SUPPORTED_DEGRADED, versus_reference, versus_precision,
                       note=f"agrees with HF {dtype} within {allowed}{caveat}", effect=effect, floor=floor)
    return Verdict(State.SILENTLY_WRONG, versus_reference, versus_precision, effect=effect, floor=floor,
                   note=f"diverges from HF {dtype}: TV {versus_precision.max_tv:.3g}, top-1 "
                        f"{versus_precision.top1_near:.2f}; allowed {allowed}")


def _caveat(effect: Effect | None) -> str:
    """What the row must say about prompts that could not take part in the judgement."""
    if effect is None:
        return ""
    uncertified = [i for i, p in enumerate(effect.prompts) if not p.certifies]
    unresolved = [i for i, p in enumerate(effect.prompts) if p.certifies and not p.resolved]
    text = ""
    if uncertified:
        text += f"; prompts {uncertified} cannot certify (reference effect under 10x STRICT)"
    if unresolved:
        text += f"; effect not checked on prompts {unresolved} (under 2x this precision's tolerance)"
    return text


def _effect(output: CellOutput, given: EffectEvidence, reference: CellOutput,
            tolerance: float) -> tuple[Effect | None, Verdict | None]:
    """The cell's effect, and the verdict it forces (None: judge on)."""
    control = given.control()
    if isinstance(control, Failure):
        return None, Verdict(State.ERROR, error=control, note=f"the backend's unintervened run failed: {control}")
    if not finite_output(control):
        return None, Verdict(State.SILENTLY_WRONG, note="non-finite values in the backend's unintervened run")
    if len(control.per_prompt) != len(output.per_prompt):
        return None, Verdict(State.SILENTLY_WRONG, note=f"unintervened run has {len(control.per_prompt)} prompts, "
                                                        f"the cell {len(output.per_prompt)}")
    effect = effects.measure(output, control, reference, given.reference_control, given.dist, tolerance)
    if effect.certifying == 0:
        largest = max(p.size for p in effect.prompts)
        return effect, Verdict(State.NO_REFERENCE, note=f"the HF intervention moves no prompt by 10x STRICT (largest "
                                                        f"TV {largest:.3g}): a lost edit would pass")
    if effect.failing:
        i = effect.failing[0]
        p = effect.prompts[i]
        return effect, Verdict(State.SILENTLY_WRONG, note=f"wrong effect on prompt {i}: cosine {p.cosine:.2f} with the "
                                                          f"reference's shift, size {p.ratio:.2f}x (reference TV {p.size:.3g})")
    return effect, None
