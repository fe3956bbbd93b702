"""How fast is the load generator itself? (a benchmark that prints numbers, not a test)

1. ``null`` backend (answers at once, in process): the highest open-loop rate the generator
   sustains on one core, and its dispatch lag at 1,000 req/s Poisson.
2. ``vllm_serve`` client against a loopback HTTP server that answers at once
   (``nnbench.testing.fake_serve --fixed-response``, pinned to the other core): the highest
   sustained rate, and dispatch lag at 1,000 req/s Poisson.

"Sustained" means: achieved throughput ≥ 97% of the offered rate, no errors, and the
generator's dispatch lag p99 ≤ 1 ms. Payloads are built before the clock starts.

    python benchmarks/generator.py [--out results/generator-bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import uvloop

from nnbench.backends.vllm_serve import ServeRequest, free_port, wait_healthy
from nnbench.cells.registry import CellRegistry
from nnbench.cells.vllm_trace import VllmTrace
from nnbench.jobs import PromptOutput
from nnbench.loadgen import scenario as scenario_mod
from nnbench.loadgen.run import run_scenario
from nnbench.records import LoadStepRow
from nnbench.testing.fake_serve import encode_echo

REGISTRY = CellRegistry()
BODY = encode_echo({"ok": torch.zeros(1)})


@REGISTRY.cell("steering", "llama", "vllm_serve", "interactive")
def fixed_request(client, prompt, job, trace_kwargs):
    return ServeRequest(BODY, VllmTrace(None, ("ok",), lambda saves: (PromptOutput({}),)))


def _scenario(backend: str, process: str, rates: list[float], url: str | None, duration_s: float):
    return scenario_mod.parse({
        "name": f"bench_{backend}", "family": "llama", "backends": [backend], "check": False,
        "mix": [{"methodology": "steering"}],
        "arrivals": {"process": process, "rates": rates},
        "stop": {"duration_s": duration_s, "warmup_s": min(1.0, duration_s / 4), "drain_s": 10.0},
        "limits": {"max_in_flight": 100_000, "timeout_s": 10.0},
        "engine": {"serve_url": url} if url else {},
    })


def _row_view(row: LoadStepRow) -> dict:
    return {
        "step": row.step, "offered_rps": row.offered, "achieved_rps": round(row.throughput_rps, 1),
        "errors": sum(row.errors.values()), "requests": row.requests,
        "dispatch_lag_p50_ms": row.dispatch_lag.p50_ms, "dispatch_lag_p99_ms": row.dispatch_lag.p99_ms,
        "latency_p50_ms": row.latency.p50_ms, "latency_p99_ms": row.latency.p99_ms,
    }


def _sustained(view: dict) -> bool:
    return (view["achieved_rps"] >= 0.97 * view["offered_rps"] and view["errors"] == 0
            and (view["dispatch_lag_p99_ms"] or 0) <= 1.0)


def run(backend: str, process: str, rates: list[float], url: str | None, duration_s: float) -> list[dict]:
    with tempfile.TemporaryDirectory() as out, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        record = runner.run(run_scenario(_scenario(backend, process, rates, url, duration_s), Path(out),
                                         show_progress=False, registry=REGISTRY))
    return [_row_view(r) for r in record.rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # the generator gets one core
    results: dict = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "cpu": platform.processor() or "x86_64",
                     "python": platform.python_version(), "cores_for_generator": 1}
    ladder = [1000.0, 2000.0, 3000.0, 3500.0, 4000.0, 5000.0, 6000.0, 8000.0]

    results["null_constant"] = run("null", "constant", ladder, None, args.duration)
    results["null_poisson_1000"] = run("null", "poisson", [1000.0], None, args.duration)

    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "nnbench.testing.fake_serve",
                               "--port", str(port), "--fixed-response"], stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, 30)
        results["http_constant"] = run("vllm_serve", "constant", ladder, url, args.duration)
        results["http_poisson_1000"] = run("vllm_serve", "poisson", [1000.0], url, args.duration)
    finally:
        server.kill()

    for name in ("null_constant", "http_constant"):
        good = [v["offered_rps"] for v in results[name] if _sustained(v)]
        results[f"{name}_highest_sustained_rps"] = max(good) if good else None
    print(json.dumps(results, indent=1))
    print("\nsummary:")
    for name in ("null", "http"):
        lag = results[f"{name}_poisson_1000"][0]
        print(f"  {name:5s}: highest sustained {results[f'{name}_constant_highest_sustained_rps']} req/s; "
              f"1000 req/s Poisson: achieved {lag['achieved_rps']}, dispatch lag p50 {lag['dispatch_lag_p50_ms']} ms, "
              f"p99 {lag['dispatch_lag_p99_ms']} ms, errors {lag['errors']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
