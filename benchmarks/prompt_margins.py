"""How far each write moves each prompt of a templated set, per family (raw hooks, fp32, CPU).

The oracle certifies a write cell only on prompts its HF intervention moves by at least
EFFECT.min_margin x STRICT (TV 0.05); this counts, per family and write methodology, how many of
the first N templated prompts clear that margin, so a prompt set can be judged before it is used.

    python benchmarks/prompt_margins.py --families llama,gpt2,qwen2,gemma3 --prompts 64 > margins.md
"""

from __future__ import annotations

import argparse
import statistics

from nnbench.backends import BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.evidence import own_effect
from nnbench.jobs import CellJob, CellParams
from nnbench.oracle.thresholds import EFFECT, STRICT
from nnbench.prompt_sets import prompt_set

WRITES = ("steering", "zero_ablation", "activation_patching", "attribution_patching", "generation_steering")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="llama,gpt2")
    parser.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()
    margin = EFFECT.min_margin * STRICT.max_tv
    print(f"| family | methodology | prompts | certifying (TV >= {margin:.2f}) | smallest TV | median TV |")
    print("|---|---|---|---|---|---|")
    for family in args.families.split(","):
        with BackendPool() as pool:
            backend = pool.get(BackendConfig("raw_hooks", family))
            for methodology in WRITES:
                prompts = prompt_set("ioi" if "patching" in methodology else "facts", args.prompts)
                effect = own_effect(backend, CellJob(methodology, family, "batched", prompts, CellParams(new_tokens=2)))
                sizes = [p.size for p in effect.prompts]
                print(f"| {family} | {methodology} | {len(sizes)} | {effect.certifying} | {min(sizes):.3f} | "
                      f"{statistics.median(sizes):.3f} |", flush=True)


if __name__ == "__main__":
    main()
