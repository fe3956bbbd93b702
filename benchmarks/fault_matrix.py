"""The planted faults of tests/oracle/test_faults.py under the previous oracle and the current one.

The previous oracle: SUPPORTED within STRICT of HF fp32, else SUPPORTED_DEGRADED within TV 0.25
(top-1 0.9, near-ties within 0.05) of HF re-run at the cell's dtype. Prints one Markdown row per
(fault, backend, dtype); results/20261202-cpu/fault-matrix.md holds a run.

    python benchmarks/fault_matrix.py > fault-matrix-rows.md
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the planted faults live with the tests

from nnbench.backends.pool import BackendPool
from nnbench.evidence import EvidenceBook, attempt
from nnbench.jobs import CellParams
from nnbench.oracle import ReferenceStore, compare, judge
from nnbench.oracle.thresholds import STRICT, Tolerance
from nnbench.provision import cache_root
from tests.oracle.test_faults import ENGINE, FAULTS, STEPS, _job

PREVIOUS_MATCHED = Tolerance(min_top1=0.90, max_tv=0.25, max_rel_err=0.3, tie_margin=0.05)


def previous_state(output, evidence, dtype: str) -> str:
    if compare(output, evidence.reference).within(STRICT):
        return "SUPPORTED"
    if dtype == "float32":
        return "SILENTLY_WRONG"
    versus = compare(output, evidence.matched())
    state = "SUPPORTED_DEGRADED" if versus.within(PREVIOUS_MATCHED) else "SILENTLY_WRONG"
    return f"{state} (TV {versus.max_tv:.3f} vs HF bf16)"


def main() -> None:
    print("| cell | fault | backend | dtype | previous oracle | new oracle | why |\n|---|---|---|---|---|---|---|")
    with BackendPool() as pool:
        book = EvidenceBook(pool, ReferenceStore(cache_root() / "references"), "cpu", ENGINE.backend_config,
                            floor_params=CellParams(new_tokens=STEPS))
        for backend in ("hf", "raw_hooks"):
            for dtype in ("float32", "bfloat16"):
                config = ENGINE.backend_config(backend, "llama", dtype)
                for (methodology, workload, fault), plant in FAULTS.items():
                    job = _job(methodology, workload)
                    output = attempt(lambda plant=plant, config=config, job=job: plant(pool.get(config), job))
                    evidence = book.evidence(job, config)
                    verdict = judge(output, evidence)
                    print(f"| {methodology}/{workload} | {fault} | {backend} | {dtype} "
                          f"| {previous_state(output, evidence, dtype)} | {verdict.state} | {verdict.note[:110]} |", flush=True)


if __name__ == "__main__":
    main()
