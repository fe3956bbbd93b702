"""nnsight's vLLM traces against plain vLLM by model size, prefill and decode apart (GPU, kit installed).

For each model one vllm_sync engine (the HF reference beside it) does two things while it is up,
because an engine start costs 30–60 s of a rationed device call:
  1. tokenization: every prompt nnbench can send (the built-in sets and the whole templated pools,
     clean and corrupt) goes through the engine with one output token; the ids vLLM actually ran
     (``RequestOutput.prompt_token_ids``) are compared with the ids the HF cells run (the HF
     backend's tokenizer), prompt by prompt;
  2. the sweep of steering, logit lens and generation steering (interactive: 1 prompt, batched: 8)
     at bf16, judged by the oracle and timed (warm median ± std) beside plain vLLM ``generate`` of
     the same prompts, once with 1 new token and once with N.
Prefill is the 1-token run; decode per token is (t(N) − t(1)) / (N − 1), for the trace and for plain
vLLM alike, so each ratio compares the same work.

    python benchmarks/vllm_by_size.py --out DIR [--models a,b] [--new-tokens 16] [--trials 5]
    python benchmarks/vllm_by_size.py --table DIR      # DIR/by-size.{md,json,png} from DIR's records
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from nnbench.provision import CATALOG, ensure_model
from nnbench.results import read_record

MODELS = ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
METHODOLOGIES = ("steering", "logit_lens", "generation_steering")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="measure on the GPU into this folder")
    parser.add_argument("--table", type=Path, help="only tabulate the records in this folder")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    if args.out:
        for model in args.models.split(","):
            measure_model(model, args.out, args.new_tokens, args.trials)
    folder = args.out or args.table
    if folder is None:
        parser.error("give --out (measure) or --table (tabulate)")
    print(tabulate(folder))
    return 0


def measure_model(model: str, out: Path, new_tokens: int, trials: int) -> None:
    """Both measurements of one model on one engine, each written as soon as it is done."""
    from nnbench.backends.engine import Engine
    from nnbench.backends.pool import BackendPool
    from nnbench.offline.run import run_sweep
    from nnbench.offline.spec import SweepSpec

    family = CATALOG[model].family
    engine = Engine(device="cuda", dtype="bfloat16", gpu_memory_utilization=0.15, max_model_len=512, kv_cache_gib=4.0)
    out.mkdir(parents=True, exist_ok=True)
    with BackendPool() as pool:
        vllm = pool.get(engine.backend_config("vllm_sync", family, model=model))
        hf = pool.get(engine.backend_config("hf", family, model=model))
        report = tokenization(vllm.model, hf.model.tokenizer)
        (out / f"tokens-{model}.json").write_text(json.dumps(report, indent=1))
        print(f"{model}: {report['prompts']} prompts, {report['differ']} tokenized differently", flush=True)
        for steps in (1, new_tokens):
            spec = SweepSpec.from_mapping({
                # the N-token run needs only the cell that generates: the others do not depend on N
                "methodologies": list(METHODOLOGIES) if steps == 1 else ["generation_steering"],
                "backends": ["hf", "vllm_sync"], "workloads": ["interactive", "batched"],
                "dtypes": ["bfloat16"], "device": "cuda", "batch_size": 8, "new_tokens": steps, "trials": trials, "model": model})
            record = run_sweep(spec, out=out / f"sweep-{model}-{steps}.json", pool=pool, engine=engine)
            print(f"{model}, {steps} token(s): {record.status}", flush=True)


def tokenization(nnsight_vllm, hf_tokenizer) -> dict:
    """Every prompt text through the engine (1 token): vLLM's ids against the HF cells' ids."""
    from vllm import SamplingParams

    from nnbench.prompt_sets import KINDS
    from nnbench.prompts import FACTS, IOI_PAIRS

    prompts = [*FACTS, *IOI_PAIRS, *(p for make in KINDS.values() for p in make())]
    texts = sorted({t for p in prompts for t in (p.text, p.corrupt) if t})
    ran = nnsight_vllm.vllm_entrypoint.generate(texts, SamplingParams(max_tokens=1, temperature=0.0), use_tqdm=False)
    differ = []
    for text, output in zip(texts, ran, strict=True):
        theirs, ours = list(output.prompt_token_ids), hf_tokenizer(text)["input_ids"]
        if theirs != ours:
            differ.append({"text": text, "vllm": theirs, "hf": ours})
    return {"prompts": len(texts), "differ": len(differ), "first_differences": differ[:20],
            "vllm_tokenizer": type(nnsight_vllm.tokenizer).__name__, "hf_tokenizer": type(hf_tokenizer).__name__}


def tabulate(folder: Path) -> str:
    """The prefill and per-token decode ratios (trace / plain vLLM) per model and cell; writes
    ``by-size.md``, ``by-size.json`` and ``by-size.png`` in ``folder``."""
    rows: dict[tuple[str, int], dict] = {}  # (model, steps) -> {(methodology, workload, variant): row}
    for path in sorted(folder.glob("sweep-*.json")):
        record = read_record(path, "sweep")
        for row in record.rows:
            if row.backend == "vllm_sync":
                rows.setdefault((row.model, row.params.new_tokens), {})[(row.methodology, row.workload, row.variant)] = row
    models = sorted({m for m, _ in rows}, key=lambda m: MODELS.index(m) if m in MODELS else len(MODELS))
    lines = ["| model | cell | state (1 / N tokens) | prefill: trace ms | plain ms | ratio | "
             "decode per token: trace ms | plain ms | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    table: dict = {}
    for model in models:
        steps = sorted(s for m, s in rows if m == model)
        one, many = rows[(model, steps[0])], rows[(model, steps[-1])] if len(steps) > 1 else {}
        for key, row in sorted(one.items()):
            entry = _entry(row, many.get(key), steps[-1])
            table.setdefault(model, {})["/".join(key)] = entry
            lines.append(f"| {model} | {'/'.join(key)} | {entry['state']} | " + " | ".join(
                _ms(entry, k) for k in ("prefill_trace", "prefill_plain", "prefill_ratio",
                                        "decode_trace", "decode_plain", "decode_ratio")) + " |")
    medians = {m: {k: statistics.median(v[k] for v in table[m].values() if v.get(k) is not None)
                   for k in ("prefill_ratio", "decode_ratio")
                   if any(v.get(k) is not None for v in table[m].values())} for m in models}
    text = ("nnsight vllm_sync trace / plain vLLM generate, bf16, warm median (± std) of each cell\n\n"
            + "\n".join(lines) + "\n\nMedian ratio per model: "
            + "; ".join(f"{m}: prefill {d.get('prefill_ratio', float('nan')):.2f}, decode {d.get('decode_ratio', float('nan')):.2f}"
                        for m, d in medians.items()) + "\n")
    (folder / "by-size.md").write_text(text)
    (folder / "by-size.json").write_text(json.dumps({"cells": table, "median": medians}, indent=1))
    if models:
        _plot(models, table, folder / "by-size.png")
    return text


def _entry(one, many, steps: int) -> dict:
    """One cell's figures: prefill from the 1-token row, decode from the N-token row minus it."""
    entry: dict = {"state": f"{one.state} / {many.state if many else '–'}"}
    if one.timing and one.plain_engine:
        entry |= {"prefill_trace": one.timing.median_s, "prefill_trace_std": one.timing.std_s,
                  "prefill_plain": one.plain_engine.median_s, "prefill_plain_std": one.plain_engine.std_s,
                  "prefill_ratio": one.timing.median_s / one.plain_engine.median_s}
    generates = one.methodology == "generation_steering"
    if generates and many and many.timing and many.plain_engine and one.timing and one.plain_engine and steps > 1:
        trace = (many.timing.median_s - one.timing.median_s) / (steps - 1)
        plain = (many.plain_engine.median_s - one.plain_engine.median_s) / (steps - 1)
        entry |= {"decode_trace": trace, "decode_plain": plain, "decode_ratio": trace / plain if plain > 0 else None}
    return entry


def _ms(entry: dict, key: str) -> str:
    value = entry.get(key)
    if value is None:
        return "–"
    if key.endswith("ratio"):
        return f"{value:.2f}"
    std = entry.get(f"{key}_std")
    return f"{value * 1e3:.1f}" + (f" ± {std * 1e3:.1f}" if std is not None else "")


def _plot(models: list[str], table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = {m: ensure_model(CATALOG[m].family, m).parameters() for m in models}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, phase in zip(axes, ("prefill", "decode"), strict=True):
        cells = sorted({c for m in models for c, v in table[m].items() if v.get(f"{phase}_ratio") is not None})
        xs = [size[m] / 1e6 for m in models]
        for cell in cells:
            ax.plot(xs, [table[m].get(cell, {}).get(f"{phase}_ratio") or float("nan") for m in models],
                    marker="o", alpha=0.7, label=cell)
        ax.axhline(1.0, color="grey", linestyle=":")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (millions)")
        ax.set_ylabel(f"{phase}: nnsight trace time / plain vLLM time")
        ax.set_title(f"{phase} ({'1 token' if phase == 'prefill' else 'per generated token'})")
        ax.legend(fontsize=6)
    fig.suptitle("nnsight on vLLM against plain vLLM by model size (bf16, one GPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)



if __name__ == "__main__":
    sys.exit(main())
