"""How far bf16 alone moves intervened outputs, against the tolerance the oracle allows (CPU).

The oracle's bf16 tolerance is 3x the noise floor: the worst TV between a backend's unintervened
run and HF fp32's on the built-in texts. An intervened run can sit where the model is more
sensitive to rounding than any unintervened one. This runs jobs that came back SILENTLY_WRONG on
the GPU with the top-1 token agreeing (the load scenarios' steering: every built-in factual prompt
x every seeded intervention; the batched logit lens and generation steering over the 8 factual
prompts) through the reference implementation itself, HF at bf16 against HF at fp32, so no
backend bug can be involved: whatever TV it shows is precision.

    python benchmarks/steered_precision.py --families llama,qwen2 --seeds 16 > steered-precision.md
"""

from __future__ import annotations

import argparse
import statistics

from nnbench.backends import BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.cells.control import CONTROLS, control_job
from nnbench.cells.registry import CELLS, CellKey
from nnbench.jobs import CellJob, CellOutput, CellParams
from nnbench.oracle.metrics import total_variation
from nnbench.prompts import FACTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="llama,qwen2")
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args()
    print("| family | jobs (HF bf16 vs HF fp32) | count | floor (plain, max TV) | 3x floor | TV median | p90 | max | over 3x floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for family in args.families.split(","):
        with BackendPool() as pool:
            fp32 = pool.get(BackendConfig("hf", family, "float32"))
            bf16 = pool.get(BackendConfig("hf", family, "bfloat16"))
            plain = [control_job(CellJob("steering", family, "interactive", (p,), CellParams())) for p in FACTS]
            floor = max(_tv(fp32.run(j, CONTROLS["hf"]), bf16.run(j, CONTROLS["hf"])) for j in plain)
            groups = {
                "steering, interactive, each prompt x seed": [
                    CellJob("steering", family, "interactive", (p,), CellParams(seed=s))
                    for s in range(args.seeds) for p in FACTS],
                "logit lens, batched, 8 prompts": [CellJob("logit_lens", family, "batched", FACTS, CellParams())],
                "logit lens, batched, each prompt alone": [
                    CellJob("logit_lens", family, "batched", (p,), CellParams()) for p in FACTS],
                "generation steering, batched, 8 prompts": [
                    CellJob("generation_steering", family, "batched", FACTS, CellParams())],
            }
            for name, jobs in groups.items():
                tvs = sorted(_tv(fp32.run(j, _entry(j)), bf16.run(j, _entry(j))) for j in jobs)
                print(f"| {family} | {name} | {len(tvs)} | {floor:.4f} | {3 * floor:.4f} | "
                      f"{statistics.median(tvs):.4f} | {tvs[int(0.9 * len(tvs))]:.4f} | {tvs[-1]:.4f} | "
                      f"{sum(t > 3 * floor for t in tvs)} |", flush=True)


def _entry(job: CellJob):
    return CELLS.get(CellKey(job.methodology, job.family, "hf", job.workload))


def _tv(a: CellOutput, b: CellOutput) -> float:
    """the worst row of any distribution the two outputs share"""
    return max(float(total_variation(pa.dists[k], pb.dists[k]).max())
               for pa, pb in zip(a.per_prompt, b.per_prompt, strict=True) for k in pa.dists if k in pb.dists)


if __name__ == "__main__":
    main()
