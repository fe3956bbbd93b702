"""nnsight's cost against plain PyTorch hooks, by model size, from sweep records (CPU).

Each record is one model's sweep on hf and raw_hooks (the same cells, warm medians); this pairs
every hf row with its raw-hooks twin and tabulates nnsight / raw per cell and model, ordered by
parameter count, with a plot. The sweeps are run one after another on an otherwise idle machine:

    for m in smollm2-135m-instruct gemma-3-270m qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct; do
      nnbench sweep --model $m --methodologies steering,logit_lens,zero_ablation,activation_patching \
        --workloads interactive,batched --backends hf,raw_hooks --trials 5 --out DIR --quiet
    done
    python benchmarks/overhead_by_size.py DIR/sweep-*/sweep-*.json --out DIR/overhead-by-size
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from nnbench.provision import ensure_model
from nnbench.results import read_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md, OUT.json and OUT.png")
    args = parser.parse_args()

    table: dict[str, dict[str, float]] = {}  # model -> cell -> ratio
    size: dict[str, int] = {}
    for path in args.records:
        record = read_record(path, "sweep")
        hf = {(r.methodology, r.workload, r.dtype): r for r in record.rows if r.backend == "hf" and r.timing}
        raw = {(r.methodology, r.workload, r.dtype): r for r in record.rows if r.backend == "raw_hooks" and r.timing}
        for key in hf.keys() & raw.keys():
            row = hf[key]
            table.setdefault(row.model, {})[f"{key[0]}/{key[1]}"] = hf[key].timing.median_s / raw[key].timing.median_s
            if row.model not in size:
                size[row.model] = ensure_model(row.family, row.model).parameters()
    models = sorted(table, key=size.__getitem__)
    cells = sorted({c for m in models for c in table[m]})
    lines = ["| cell | " + " | ".join(f"{m} ({size[m] / 1e6:.0f}M)" for m in models) + " |",
             "|---|" + "---|" * len(models)]
    for cell in cells:
        lines.append(f"| {cell} | " + " | ".join(f"{table[m][cell]:.2f}" if cell in table[m] else "–" for m in models) + " |")
    lines.append("| **median** | " + " | ".join(f"**{statistics.median(table[m].values()):.2f}**" for m in models) + " |")
    args.out.with_suffix(".md").write_text("nnsight hf / raw hooks, warm median of each cell (fp32, CPU)\n\n"
                                           + "\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"parameters": size, "ratio": table}, indent=2))
    _plot(models, cells, table, size, args.out.with_suffix(".png"))
    print("\n".join(lines))



def _plot(models, cells, table, size, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [size[m] / 1e6 for m in models]
    for cell in cells:
        ax.plot(xs, [table[m].get(cell, float("nan")) for m in models], marker="o", alpha=0.6, label=cell)
    ax.plot(xs, [statistics.median(table[m].values()) for m in models], color="black", linewidth=3, label="median")
    ax.axhline(1.0, color="grey", linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("nnsight hf time / raw hooks time")
    ax.set_title("nnsight against plain hooks by model size (fp32, 2-core CPU)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
