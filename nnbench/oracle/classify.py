"""From outputs to one State.

    reference failed                        → NO_REFERENCE  (the HF control itself failed)
    cell raised                             → ERROR         (type and message kept)
    outputs agree with the fp32 reference   → SUPPORTED     (STRICT)
    they do not, but agree with the HF
    reference re-run at the cell's own
    precision on the same device            → SUPPORTED_DEGRADED (MATCHED)
    otherwise (NaN/inf always lands here)   → SILENTLY_WRONG
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from nnbench.cells.job import CellOutput
from nnbench.oracle.compare import Comparison, compare
from nnbench.oracle.thresholds import MATCHED, STRICT
from nnbench.vocab import State

_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)):\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Failure:
    """An exception caught at a cell boundary, kept as data."""

    type: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        # nnsight re-raises user errors as a dynamic subclass of the original: report the original
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
class Verdict:
    state: State
    versus_reference: Comparison | None = None
    versus_matched: Comparison | None = None
    error: Failure | None = None
    note: str = ""


def judge(output: Outcome, reference: Outcome, matched: Callable[[], Outcome] | None = None) -> Verdict:
    """Give ``output`` its state against ``reference``.

    Args:
        matched: computes the HF reference at the cell's own precision and device; None when the
            cell already runs at the reference's precision, so no precision excuse exists.
    """
    if isinstance(reference, Failure):
        return Verdict(State.NO_REFERENCE, error=reference, note=f"HF control failed: {reference}")
    if isinstance(output, Failure):
        return Verdict(State.ERROR, error=output, note=str(output))
    versus_reference = compare(output, reference)
    if versus_reference.within(STRICT):
        return Verdict(State.SUPPORTED, versus_reference)
    if not versus_reference.finite:
        return Verdict(State.SILENTLY_WRONG, versus_reference, note="non-finite values in the outputs")
    if versus_reference.problem:
        return Verdict(State.SILENTLY_WRONG, versus_reference, note=versus_reference.problem)
    if matched is None:
        return Verdict(State.SILENTLY_WRONG, versus_reference, note="diverges at the reference's own precision")
    matched_reference = matched()
    if isinstance(matched_reference, Failure):
        return Verdict(State.SILENTLY_WRONG, versus_reference, note=f"matched-precision re-run failed: {matched_reference}")
    versus_matched = compare(output, matched_reference)
    if versus_matched.within(MATCHED):
        return Verdict(State.SUPPORTED_DEGRADED, versus_reference, versus_matched, note="agrees at matched precision")
    return Verdict(State.SILENTLY_WRONG, versus_reference, versus_matched, note="diverges even at matched precision")
