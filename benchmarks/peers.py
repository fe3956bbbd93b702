"""nnsight against the peer systems on the same cells (the NNsight paper's setup/patching table, our way).

For each model and backend (hf = nnsight, raw_hooks, transformer_lens, pyvene):
  1. setup, in a fresh Python process each: import + load the model (``backend.open``), then the
     first activation-patching trace, timed apart (the paper's "setup time");
  2. per-trace time of steering and activation patching, interactive (1 prompt) and batched (4), at
     fp32, warm median ± std of N trials, every cell judged by the oracle beside its time (a sweep
     record per model; a time is only reported for a cell whose state is SUPPORTED).

    python benchmarks/peers.py --out DIR [--models smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct] [--trials 5] [--device cuda]
    python benchmarks/peers.py --table DIR      # DIR/peers.md and DIR/peers.json from DIR's files
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ("hf", "raw_hooks", "transformer_lens", "pyvene")
MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
"""the 1.5B does not fit: the sweep holds one fp32 copy per backend (4 x 6.2 GB on a 24 GiB machine)"""
CELLS = (("activation_patching", "interactive"), ("activation_patching", "batched"),
         ("steering", "interactive"), ("steering", "batched"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="measure into this folder")
    parser.add_argument("--table", type=Path, help="only tabulate the files in this folder")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--setup", nargs=3, metavar=("BACKEND", "MODEL", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        print(json.dumps(setup(*args.setup)))
        return 0
    if args.out is None and args.table is None:
        parser.error("give --out DIR (measure) or --table DIR (tabulate)")
    folder = args.out or args.table
    if args.out is not None:
        from nnbench.validate import SpecError, require_device

        try:
            require_device(args.device)
        except SpecError as exc:
            parser.error(str(exc))
        for model in args.models.split(","):
            measure_model(model, args.out, args.trials, args.device)
    print(tabulate(folder))
    return 0


def setup(backend: str, model: str, device: str) -> dict:
    """In this (fresh) process: the backend's import and load, then its first patching trace."""
    start = time.perf_counter()
    from nnbench.backends import BackendConfig, open_backend
    from nnbench.cells import CELLS as REGISTRY
    from nnbench.cells import CellKey
    from nnbench.jobs import CellJob
    from nnbench.offline.grid import prompts_for
    from nnbench.provision import CATALOG

    family = CATALOG[model].family
    opened = open_backend(BackendConfig(backend, family, device=device, model=model))
    loaded = time.perf_counter()
    job = CellJob("activation_patching", family, "interactive", prompts_for("activation_patching", "interactive", 1),
                  model=model)
    opened.run(job, REGISTRY.get(CellKey("activation_patching", family, backend, "interactive")))
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return {"backend": backend, "model": model, "device": device, "load_s": loaded - start,
            "first_trace_s": time.perf_counter() - loaded}


def measure_model(model: str, out: Path, trials: int, device: str = "cpu") -> None:
    from nnbench.offline.run import run_sweep
    from nnbench.offline.spec import SweepSpec

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for backend in BACKENDS:
        done = subprocess.run([sys.executable, __file__, "--setup", backend, model, device], capture_output=True, text=True,
                              timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"setup of {backend} on {model} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{model} {backend}: load {rows[-1]['load_s']:.1f} s, first trace {rows[-1]['first_trace_s']:.2f} s", flush=True)
    (out / f"setup-{model}.json").write_text(json.dumps({"setup": rows}, indent=1))
    spec = SweepSpec.from_mapping({"methodologies": ["steering", "activation_patching"], "backends": list(BACKENDS),
                                   "workloads": ["interactive", "batched"], "dtypes": ["float32"], "batch_size": 4,
                                   "trials": trials, "warmup": 1, "model": model, "device": device})
    record = run_sweep(spec, out=out / f"sweep-{model}.json")
    print(f"{model}: sweep {record.status}", flush=True)


def tabulate(folder: Path) -> str:
    from nnbench.results import read_record

    lines = ["Setup (fresh process: import + load, then the first patching trace) and warm per-trace time, fp32.",
             "A time is shown only for a SUPPORTED cell; `nnsight / peer` is hf's median over the backend's.", "",
             "| model | backend | load s | first trace s | " + " | ".join(f"{m} {w} ms" for m, w in CELLS)
             + " | nnsight / backend (per cell) |",
             "|---|---|---|---|" + "---|" * len(CELLS) + "---|"]
    table = []
    for setup_file in sorted(folder.glob("setup-*.json")):
        model = setup_file.stem.removeprefix("setup-")
        record = read_record(folder / f"sweep-{model}.json")
        times = {(r.backend, r.methodology, r.workload): r for r in record.rows}
        for entry in json.loads(setup_file.read_text())["setup"]:
            backend = entry["backend"]
            cells, ratios = [], []
            for methodology, workload in CELLS:
                row, hf = times.get((backend, methodology, workload)), times.get(("hf", methodology, workload))
                if row is None or row.timing is None or row.state != "SUPPORTED":
                    cells.append(f"– ({row.state if row else 'not run'})")
                    continue
                cells.append(f"{row.timing.median_s * 1e3:.1f} ± {row.timing.std_s * 1e3:.1f}")
                if hf is not None and hf.timing is not None and hf.state == "SUPPORTED":
                    ratios.append(hf.timing.median_s / row.timing.median_s)
            table.append(entry | {"cells": cells, "nnsight_over_backend": ratios})
            lines.append(f"| {model} | {backend} | {entry['load_s']:.1f} | {entry['first_trace_s']:.2f} | "
                         + " | ".join(cells) + " | " + ", ".join(f"{r:.2f}" for r in ratios) + " |")
    (folder / "peers.json").write_text(json.dumps({"table": table}, indent=1))
    text = "\n".join(lines) + "\n"
    (folder / "peers.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
