"""Primitive probes on CPU: nnsight and plain hooks agree on every read and write, and the writes
really move the next-token distribution (probes that both did nothing would agree too)."""

import subprocess
import sys

import pytest

from nnbench.micro.probes import Primitive, Probe, labels, run_hooks
from nnbench.micro.run import run_micro
from nnbench.oracle.metrics import total_variation
from nnbench.oracle.thresholds import STRICT
from nnbench.prompts import FACTS

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them


@pytest.fixture(scope="module")
def llama_map(pool):
    return run_micro(("hf", "raw_hooks"), ("llama",), pool=pool)


def test_every_probe_agrees_with_nnsight(llama_map):
    raw = [r for r in llama_map.rows if r.backend == "raw_hooks"]
    assert len(raw) == len(labels()) == 8 * (len(Primitive) - 1) + 4  # logits: 3 reads and the forced token
    assert {r.state for r in raw} == {"SUPPORTED"}, [r for r in raw if r.state != "SUPPORTED"][:3]


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
    done = subprocess.run([sys.executable, "-m", "nnbench", "micro", "--backend", "null", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no probes for 'null'" in done.stderr


def test_every_primitive_a_cell_relies_on_is_a_probe_or_documented():
    from nnbench.cells import CELLS
    from nnbench.micro.probes import NOT_PROBED, labels

    named = {name for key in CELLS for name in CELLS.get(key).relies_on}
    assert named - labels() - set(NOT_PROBED) == set()
    assert "read_output:logits" in named & labels()  # the readout every next-token cell depends on


def test_micro_cli_writes_the_probe_map_for_hf_and_raw_hooks(tmp_path):
    import json

    done = subprocess.run([sys.executable, "-m", "nnbench", "micro", "--backend", "hf,raw_hooks", "--families", "gpt2",
                           "--quiet", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = tmp_path.glob("micro-gpt2-hf-raw_hooks-cpu-*/micro-gpt2-hf-raw_hooks-cpu.json")
    rows = json.loads(path.read_text())["rows"]
    assert len(rows) == 2 * len(labels())
    assert {r["state"] for r in rows} == {"SUPPORTED"}  # fp32 on one device: nnsight and plain hooks agree
    assert "| level | primitive | module kind | gpt2 · hf | gpt2 · raw_hooks |" in path.with_suffix(".md").read_text()
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["kind"] == "micro" and manifest["status"] == "success" and manifest["git_commit"]
    assert {f["path"] for f in manifest["files"]} == {path.name, path.with_suffix(".md").name}
