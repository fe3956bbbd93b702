"""nnbench: where nnsight's "one intervention, any backend" holds, and how fast."""

from nnbench.vocab import BackendName, Family, Methodology, State, Workload

__version__ = "0.1.0"
__all__ = ["BackendName", "Family", "Methodology", "State", "Workload", "__version__"]
