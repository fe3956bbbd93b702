"""Two tenants' traces under one script path and line, in one process (SmolLM2, hf, fp32, CPU).

Tenant A's nested ``tracer.invoke`` block zeroes layer 6's residual; tenant B's does nothing. Both
save under the same name, and each registers its source in ``linecache`` under the shared path as
nnsight-serve does per request. Printed: A's and B's answers against each one's own answer (its
script run under a path of its own). With nnsight 0.8.1's process-wide block memo, B gets A's answer.

    python benchmarks/shared_script_path.py > results/<dir>/shared-script-path.txt
"""

from __future__ import annotations

import torch

from nnbench.backends import BackendConfig, open_backend
from nnbench.cells.tenants import compiled_script, tenant_script
from nnbench.families import Modules
from nnbench.prompts import FACTS

ZERO = "layers[6].output[:] = layers[6].output * 0"
SHARED = "/home/user/experiment.py"


def main() -> None:
    import nnsight

    model = open_backend(BackendConfig("hf", "llama")).model
    mods = Modules.of(model, "llama")
    text = FACTS[0].text

    def run(body: str, path: str) -> torch.Tensor:
        return compiled_script(tenant_script(body, "out"), path)(model, text, mods.layers, mods.unembed)

    def tv(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().sum() / 2)

    with torch.no_grad():
        own_a, own_b = run(ZERO, "/tenant-a/own.py"), run("pass", "/tenant-b/own.py")
        shared_a, shared_b = run(ZERO, SHARED), run("pass", SHARED)
    print(f"nnsight {nnsight.__version__}, SmolLM2-135M, fp32, prompt {text!r}")
    print(f"own paths:   A vs B {tv(own_a, own_b):.4f} (A's edit moves the answer)")
    print(f"shared path: A vs A's own {tv(shared_a, own_a):.4f}; B vs B's own {tv(shared_b, own_b):.4f}; "
          f"B vs A's own {tv(shared_b, own_a):.4f}")


if __name__ == "__main__":
    main()
