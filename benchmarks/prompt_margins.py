"""How far each write moves each prompt of a templated set, per family (raw hooks, fp32, CPU).

The oracle certifies a write cell only on prompts its HF intervention moves by at least
EFFECT.min_margin x STRICT (TV 0.05); this counts, per family and write methodology, how many of
the first N templated prompts clear that margin, so a prompt set can be judged before it is used.

    python benchmarks/prompt_margins.py --families llama,gpt2,qwen2,gemma3 --prompts 64 > margins.md

``--screen PATH`` also writes every prompt's size per family, kind and methodology (the input of
``nnbench/weak_prompts.json``: ``--weak`` turns it into that file's form).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from nnbench.backends import BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.evidence import own_effect
from nnbench.jobs import CellJob, CellParams
from nnbench.oracle.thresholds import EFFECT, STRICT
from nnbench.prompt_sets import KIND_WRITES, KINDS, WEAK_PROMPTS, prompt_set

CHUNK = 64
"""prompts per measured batch: Gemma's 262k-entry logits over 64 prompts are ~1 GB per run"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="llama,gpt2")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--screen", type=Path, help="write every prompt's size here (JSON)")
    parser.add_argument("--kinds", default=",".join(KIND_WRITES), help="which prompt kinds")
    parser.add_argument("--unscreened", action="store_true", help="the raw shuffle, ignoring weak_prompts.json")
    parser.add_argument("--weak", nargs="+", type=Path, metavar="SCREEN",
                        help="only write nnbench/weak_prompts.json from these --screen files (later ones win)")
    args = parser.parse_args()
    if args.weak:
        WEAK_PROMPTS.write_text(json.dumps(weak_table(args.weak), indent=1) + "\n")
        return
    margin = EFFECT.min_margin * STRICT.max_tv
    print(f"| family | kind | methodology | prompts | certifying (TV >= {margin:.2f}) | smallest TV | median TV |")
    print("|---|---|---|---|---|---|---|")
    screen: dict = {"margin": margin, "prompts": args.prompts, "families": {}}
    for family in args.families.split(","):
        with BackendPool() as pool:
            backend = pool.get(BackendConfig("raw_hooks", family))
            for kind in args.kinds.split(","):
                writes = KIND_WRITES[kind]
                family_key = None if args.unscreened else family
                prompts = prompt_set(kind, min(args.prompts, len(KINDS[kind]())), family_key)
                entry = screen["families"].setdefault(family, {}).setdefault(kind, {"texts": [p.text for p in prompts]})
                for methodology, workload in writes:
                    sizes = []
                    for start in range(0, len(prompts), CHUNK):
                        job = CellJob(methodology, family, workload, prompts[start:start + CHUNK], CellParams(new_tokens=2))
                        sizes += [p.size for p in own_effect(backend, job).prompts]
                    entry[f"{methodology}/{workload}"] = sizes
                    print(f"| {family} | {kind} | {methodology}/{workload} | {len(sizes)} | "
                          f"{sum(s >= margin for s in sizes)} | {min(sizes):.3f} | {statistics.median(sizes):.3f} |",
                          flush=True)
        if args.screen:
            args.screen.write_text(json.dumps(screen, indent=1))


def weak_table(screens: list[Path]) -> dict:
    """Per family and kind, the screened texts some write moves by less than the margin."""
    table: dict = {"about": "templated prompts dropped per family: some write of KIND_WRITES moves them by less than "
                            "the oracle's margin on the family's default model (raw hooks, fp32, CPU, default CellParams)",
                   "made_by": "python benchmarks/prompt_margins.py --unscreened --screen S.json ...; --weak S.json ...",
                   "screened": {}, "families": {}}
    for path in screens:
        screen = json.loads(path.read_text())
        table["margin"] = screen["margin"]
        for family, kinds in screen["families"].items():
            for kind, entry in kinds.items():
                sizes = [v for k, v in entry.items() if k != "texts"]
                weak = [t for i, t in enumerate(entry["texts"]) if min(s[i] for s in sizes) < screen["margin"]]
                table["screened"].setdefault(family, {})[kind] = len(entry["texts"])
                table["families"].setdefault(family, {})[kind] = sorted(weak)
    return table


if __name__ == "__main__":
    main()
