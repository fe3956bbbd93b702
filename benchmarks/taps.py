"""Eager against CUDA-graph (``taps=``) vLLM engines on the steering cells (GPU, the kit installed).

nnsight serves interventions on a graph-replaying engine only at declared tap locations, with
in-place edits. This prints, for the aware generation-steering and steering cells on Llama at
bfloat16, the warm time on an eager engine and on a tapped one, plain vLLM ``generate`` on each,
and how far the tapped outputs are from the eager ones (the same oracle as the map).

    python benchmarks/taps.py --out results/taps.json [--new-tokens 16] [--trials 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

from nnbench import provenance
from nnbench.backends import BackendConfig, VllmSettings, open_backend
from nnbench.cells import CELLS, CellJob, CellKey, CellParams
from nnbench.offline.run import attempt
from nnbench.offline.timing import Timing, measure
from nnbench.oracle import Failure
from nnbench.oracle.compare import compare
from nnbench.prompts import FACTS
from nnbench.validate import SpecError, require_device

TAPS = ("model.layers.*.output",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    try:  # vllm_sync on CUDA only: refused in one line on a machine without it
        require_device("cuda", "benchmarks/taps.py needs vLLM on")
    except SpecError as exc:
        print(f"taps: error: {exc}", file=sys.stderr)
        return 2
    params = CellParams(new_tokens=args.new_tokens)
    jobs = {
        "generation_steering/interactive": CellJob("generation_steering", "llama", "interactive", FACTS[:1], params),
        "generation_steering/batched": CellJob("generation_steering", "llama", "batched", FACTS[:8], params),
        "steering/interactive": CellJob("steering", "llama", "interactive", FACTS[:1], params),
    }
    results: dict = {"provenance": provenance.collect("cuda", 0, {"taps": TAPS}), "new_tokens": args.new_tokens,
                     "trials": args.trials, "taps": list(TAPS), "rows": []}
    outputs: dict = {}
    for engine, taps in (("eager", ()), ("taps", TAPS)):
        config = BackendConfig("vllm_sync", "llama", "bfloat16", "cuda", vllm=VllmSettings(taps=taps))
        start = time.perf_counter()
        backend = attempt(lambda config=config: open_backend(config))
        open_s = time.perf_counter() - start
        if isinstance(backend, Failure):
            results["rows"].append({"engine": engine, "open_error": str(backend)})
            continue
        for name, job in jobs.items():
            entry = CELLS.get(CellKey(job.methodology, "llama", "vllm_sync", job.workload, "aware"))
            run = partial(backend.run, job, entry)
            output = attempt(run)
            outputs[(engine, name)] = output
            timing = attempt(partial(measure, run, 1, args.trials, "cuda"))
            plain = attempt(partial(measure, partial(backend.run_plain, job), 1, args.trials, "cuda"))
            row = {"engine": engine, "cell": name, "prompts": len(job.prompts), "open_s": open_s,
                   "timing": timing.as_dict() if isinstance(timing, Timing) else None,
                   "plain": plain.as_dict() if isinstance(plain, Timing) else None,
                   "error": str(output) if isinstance(output, Failure) else None}
            eager = outputs.get(("eager", name))
            if engine == "taps" and eager is not None and not isinstance(eager, Failure) and not isinstance(output, Failure):
                row["versus_eager"] = compare(output, eager).as_dict()
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
        backend.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
