"""The oracle: a cell's outputs against the HF reference of its family → one State."""

from nnbench.oracle.classify import Failure, Outcome, Verdict, judge
from nnbench.oracle.compare import Comparison, compare
from nnbench.oracle.references import ReferenceStore, reference_key

__all__ = ["Comparison", "Failure", "Outcome", "ReferenceStore", "Verdict", "compare", "judge", "reference_key"]
