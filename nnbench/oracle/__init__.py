"""The oracle: a cell's outputs against the HF reference of its family → one State."""

from nnbench.oracle.classify import EffectEvidence, Evidence, Failure, Outcome, Verdict, judge
from nnbench.oracle.compare import Comparison, compare
from nnbench.oracle.floors import ControlSet, NoiseFloor, measure_floor
from nnbench.oracle.references import ReferenceStore, reference_key

__all__ = ["Comparison", "ControlSet", "EffectEvidence", "Evidence", "Failure", "NoiseFloor", "Outcome",
           "ReferenceStore", "Verdict", "compare", "judge", "measure_floor", "reference_key"]
