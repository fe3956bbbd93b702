"""Primitive probes on CPU: nnsight and plain hooks agree on every read and write, and the writes
really move the next-token distribution (probes that both did nothing would agree too)."""

import subprocess
import sys

import pytest

from nnbench.micro.probes import Primitive, Probe, run_hooks
from nnbench.micro.run import run_micro
from nnbench.oracle.metrics import total_variation
from nnbench.oracle.thresholds import STRICT
from nnbench.prompts import FACTS


@pytest.fixture(scope="module")
def llama_map(pool):
    return run_micro(("hf", "raw_hooks"), ("llama",), pool=pool)


def test_every_probe_agrees_with_nnsight(llama_map):
    raw = [r for r in llama_map.rows if r["backend"] == "raw_hooks"]
    assert len(raw) == len(Primitive) * 8
    assert {r["state"] for r in raw} == {"SUPPORTED"}, [r for r in raw if r["state"] != "SUPPORTED"][:3]


@pytest.mark.parametrize("primitive", [Primitive.EDIT_IN_PLACE, Primitive.REPLACE, Primitive.ZERO, Primitive.ADD_VECTOR])
@pytest.mark.parametrize("kind", ["decoder_layer", "attention", "mlp", "embedding"])
def test_writes_move_the_distribution(primitive, kind, pool):
    from nnbench.backends import BackendConfig

    backend = pool.get(BackendConfig("raw_hooks", "llama"))
    edited = run_hooks(backend.model, Probe(primitive, kind, "llama", FACTS[0].text))
    plain = backend.model.forward([FACTS[0].text]).logits[0, -1:].softmax(-1)
    tv = total_variation(edited.per_prompt[0].dists["next_token"], plain).item()
    assert tv > 2 * STRICT.max_tv, f"{primitive}:{kind} moved TV {tv:.4f} only"


def test_micro_cli_names_a_backend_without_probes():
    done = subprocess.run([sys.executable, "-m", "nnbench", "micro", "--backend", "vllm_sync", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no probes for 'vllm_sync' yet" in done.stderr
