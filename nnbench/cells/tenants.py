"""What an adversarial tenant sends: nnsight traces a tenant could write, each doing one harmful thing.

These are not methodologies and never judged as such: ``nnbench.loadgen.tenants`` runs them beside
well-behaved canary tenants and judges the canaries. Each is plain nnsight code on the ``hf``
backend's model (``(model, job, knobs) -> CellOutput``), as readable as a cell: what it does to the
shared model is the whole point of the row. The attacks that need an HTTP server (installed edits
through the register endpoint, code run at deserialization) have no in-process form; on ``hf``
oversize is the save half (every layer's activations of a 64-copy batch), on vLLM the request half
(a trace that carries a large tensor, which the engine deserializes with each request).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nnbench.cells.vllm_trace import GREEDY, VllmTrace, per_invoke, texts_of
from nnbench.families import Modules
from nnbench.jobs import CellJob, CellOutput, PromptOutput, per_prompt


@dataclass(frozen=True, slots=True)
class Knobs:
    """What the run tells its attacker (from the scenario's ``[tenants]`` table)."""

    layer: int = 6
    noisy_ms: float = 50.0
    """noisy neighbour: how long its intervention holds the forward pass"""
    edit_scale: float = 0.5
    """persistent edit: the factor the layer's MLP weights are multiplied by, in place"""
    marker_file: Path | None = None
    """capabilities: a file the run wrote on the server machine, which a trace should not read"""
    marker_env: str = "NNBENCH_TENANT_SECRET"
    """capabilities: an environment variable the run set in the server process"""
    oversize_mb: float = 64.0
    """oversize request (vLLM): the ballast tensor each attacker request carries"""


AttackFn = Callable[..., Any]
"""an attacker's trace: a cell's signature on its backend plus ``knobs=`` (``(model, job, knobs=)`` on hf)"""


def _next_token(model, job: CellJob) -> Any:
    return Modules.of(model, job.family).unembed.output[:, -1].softmax(-1)


def benign_hf(model, job: CellJob, *, knobs: Knobs) -> CellOutput:
    """The control: a well-behaved second tenant (a steering trace like the canaries' own). Its row
    must not be detected: the harness's false-alarm check."""
    layers = Modules.of(model, job.family).layers
    with model.trace(job.texts):
        layers[knobs.layer].output = layers[knobs.layer].output * 1.0
        probs = _next_token(model, job).save()
    return per_prompt({"next_token": probs})


def persistent_edit_hf(model, job: CellJob, *, knobs: Knobs) -> CellOutput:
    """Scale one layer's MLP weights in place, inside a trace, and leave: every later request of
    every tenant runs on the edited model until the server is restored."""
    mlp = Modules.of(model, job.family).layers[knobs.layer].mlp
    with model.trace(job.texts):
        probs = _next_token(model, job).save()
    for weight in mlp._module.parameters():  # the real parameters the next tenant's forward uses
        weight.data.mul_(knobs.edit_scale)
    return per_prompt({"next_token": probs})


def noisy_neighbour_hf(model, job: CellJob, *, knobs: Knobs) -> CellOutput:
    """Hold the forward pass for ``noisy_ms`` (a Python loop or a sleep in an intervention runs on
    the forward's own thread, between two modules)."""
    layers = Modules.of(model, job.family).layers
    with model.trace(job.texts):
        hidden = layers[knobs.layer].output
        time.sleep(knobs.noisy_ms / 1e3)
        layers[knobs.layer].output = hidden
        probs = _next_token(model, job).save()
    return per_prompt({"next_token": probs})


def failing_neighbour_hf(model, job: CellJob, *, knobs: Knobs) -> CellOutput:
    """Raise in the middle of the forward pass, after reading a layer."""
    layers = Modules.of(model, job.family).layers
    with model.trace(job.texts):
        hidden = layers[knobs.layer].output
        if hidden is not None:
            raise RuntimeError("tenant failure planted mid-forward")
    raise AssertionError("unreachable: the trace raised")


def oversize_save_hf(model, job: CellJob, *, knobs: Knobs) -> CellOutput:
    """Save every layer's whole residual for the prompt repeated ``OVERSIZE_BATCH`` times: one
    request that asks the server to keep and return far more than any canary (SmolLM2: 30 layers x
    64 copies x ~10 tokens x 576 floats, about 44 MB)."""
    layers = Modules.of(model, job.family).layers
    with model.trace([job.texts[0]] * OVERSIZE_BATCH):
        saved = torch.stack([layer.output for layer in layers]).save()  # [layers, batch, tokens, H]
        probs = _next_token(model, job)[:1].save()
    if saved.shape[:2] != (len(layers), OVERSIZE_BATCH):
        raise RuntimeError(f"oversize save: came back {tuple(saved.shape)}")
    return per_prompt({"next_token": probs})


OVERSIZE_BATCH = 64


def capabilities_hf(model, job: CellJob, *, knobs: Knobs) -> CellOutput:
    """From inside a trace: read the run's marker file and environment variable, start a process.
    Each capability the trace has is saved as a 1 (the canaries are not touched)."""
    found = {}
    with model.trace(job.texts):
        _ = Modules.of(model, job.family).layers[knobs.layer].output
        found["read_file"] = knobs.marker_file is not None and knobs.marker_file.read_text() != ""
        found["read_env"] = os.environ.get(knobs.marker_env) is not None
        found["run_process"] = subprocess.run(["true"], timeout=10).returncode == 0
    return per_prompt({"capabilities": torch.tensor([[float(found[k]) for k in CAPABILITIES]])})


CAPABILITIES = ("read_file", "read_env", "run_process")
"""the order of ``capabilities_hf``'s saved flags"""


SHARED_PATH = "/home/user/experiment.py"
"""the script path both tenants' code claims (a notebook cell name or ``<stdin>`` does the same)"""


def tenant_script(body: str, save_name: str) -> str:
    """One tenant's script: a trace with a nested ``invoke`` block whose body is ``body``, its
    result saved under the tenant's own name. Two tenants' scripts differ only on line 4."""
    return ("def run(model, text, layers, unembed):\n"
            "    with model.trace() as tracer:\n"
            "        with tracer.invoke(text):\n"
            f"            {body}\n"
            f"            {save_name} = unembed.output[0, -1].softmax(-1).save()\n"
            f"    return {save_name}\n")


ATTACKER_BODY = "layers[{layer}].output[:] = layers[{layer}].output * 0  # zero the residual"
VICTIM_BODY = "layers[{layer}].output[:] = layers[{layer}].output + 0  # a no-op edit: the plain run"


def compiled_script(source: str, filename: str) -> Callable[..., Any]:
    """``source`` compiled under ``filename``, its text registered in ``linecache`` under that
    name, as nnsight-serve does for each request (nnsight 0.8.1 ``serve/server.py:73-78``)."""
    import linecache

    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - the tenant's own script
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return namespace["run"]


def run_script(model, job: CellJob, run: Callable[..., Any]) -> CellOutput:
    mods = Modules.of(model, job.family)
    return per_prompt({"next_token": run(model, job.texts[0], mods.layers, mods.unembed)[None]})


# ---- vLLM (vllm_async in process, vllm_serve over HTTP): the same attacks as one-invoke traces.
# The block runs on the engine's forward thread next to the real modules, so a sleep there stalls
# every request of the batch and a weight edit stays for every later request. Written from the
# vLLM cells' shape (the GPU run: scenarios/tenants_gpu.toml). ----

def _vllm_layers(model, job: CellJob) -> Any:
    return model.transformer.h if job.family == "gpt2" else model.model.layers


def _vllm_rows(saves: dict) -> tuple[PromptOutput, ...]:
    return tuple(PromptOutput({"next_token": t.float().cpu()}) for t in per_invoke(saves, "next_token"))


def benign_vllm(model, prompts, job: CellJob, trace_kwargs: dict, *, knobs: Knobs) -> VllmTrace:
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts_of(prompts):
            with tracer.invoke(text):
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), _vllm_rows)


def noisy_neighbour_vllm(model, prompts, job: CellJob, trace_kwargs: dict, *, knobs: Knobs) -> VllmTrace:
    layers, hold_s, layer = _vllm_layers(model, job), knobs.noisy_ms / 1e3, knobs.layer
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts_of(prompts):
            with tracer.invoke(text):
                _ = layers[layer].output
                time.sleep(hold_s)  # on the forward thread: the whole batch waits
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), _vllm_rows)


def failing_neighbour_vllm(model, prompts, job: CellJob, trace_kwargs: dict, *, knobs: Knobs) -> VllmTrace:
    layers, layer = _vllm_layers(model, job), knobs.layer
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts_of(prompts):
            with tracer.invoke(text):
                hidden = layers[layer].output
                if hidden is not None:
                    raise RuntimeError("tenant failure planted mid-forward")
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), _vllm_rows)


def persistent_edit_vllm(model, prompts, job: CellJob, trace_kwargs: dict, *, knobs: Knobs) -> VllmTrace:
    layers, layer, scale = _vllm_layers(model, job), knobs.layer, knobs.edit_scale
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts_of(prompts):
            with tracer.invoke(text):
                for weight in layers[layer].mlp._module.parameters():  # the engine's real weights
                    weight.data.mul_(scale)
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), _vllm_rows)


def _mlp_out(layers, layer: int, family: str) -> Any:
    """The tensor an edit of layer ``layer`` writes in place: vLLM's Llama/Qwen decoder layer
    returns (mlp_out, residual), flat over tokens; GPT-2's block returns the residual itself."""
    return layers[layer].output if family == "gpt2" else layers[layer].output[0]


def oversize_request_vllm(model, prompts, job: CellJob, trace_kwargs: dict, *, knobs: Knobs) -> VllmTrace:
    """A well-formed trace that carries ``oversize_mb`` of ballast (a tensor the block touches, so
    it is serialized with the request and deserialized on the engine side every time)."""
    layers, layer, family = _vllm_layers(model, job), knobs.layer, job.family
    ballast = torch.zeros(int(knobs.oversize_mb * 2**18))  # float32: 4 bytes an element
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts_of(prompts):
            with tracer.invoke(text):
                hidden = _mlp_out(layers, layer, family)
                hidden[:] += ballast[:1].to(hidden.device, hidden.dtype) * 0
                next_token = model.logits.softmax(-1).save()
    return VllmTrace(tracer, ("next_token",), _vllm_rows)


def capabilities_vllm(model, prompts, job: CellJob, trace_kwargs: dict, *, knobs: Knobs) -> VllmTrace:
    """``capabilities_hf`` where the block runs: vLLM's engine process (and, for vllm_serve, the
    server's). The flags are computed inside the block and saved as one tensor."""
    layers, layer = _vllm_layers(model, job), knobs.layer
    marker, env_name = str(knobs.marker_file or ""), knobs.marker_env
    with model.trace(max_tokens=1, **GREEDY, **trace_kwargs) as tracer:
        for text in texts_of(prompts):
            with tracer.invoke(text):
                import os as server_os
                import subprocess as server_subprocess
                _ = layers[layer].output
                read_file = float(bool(marker) and server_os.path.exists(marker) and server_os.path.getsize(marker) > 0)
                read_env = float(server_os.environ.get(env_name) is not None)
                run_process = float(server_subprocess.run(["true"], timeout=10).returncode == 0)
                capabilities = torch.tensor([[read_file, read_env, run_process]]).save()
    return VllmTrace(tracer, ("capabilities",),
                     lambda saves: tuple(PromptOutput({"capabilities": t.float().cpu()})
                                         for t in per_invoke(saves, "capabilities")))


def installed_edit_serve(model, url: str, api_key: str | None, job: CellJob, knobs: Knobs) -> Any:
    """Install, through nnsight-serve's register endpoint, an unnamed edit that scales one layer's
    output on every request the engine runs, anyone's: nnsight's own ``model.edit(serve=url)``.
    Returns the registration (``.clear()`` takes it off)."""
    layers, layer, scale, family = _vllm_layers(model, job), knobs.layer, knobs.edit_scale, job.family
    with model.edit(serve=url, api_key=api_key) as (tracer, edit):
        hidden = _mlp_out(layers, layer, family)
        hidden[:] *= scale
    return edit


class _WritesMarker:
    """Unpickling this calls ``Path(path).write_text(...)``: a request body whose only effect, if
    the server unpickles it without an allowlist, is a file on the loopback server machine."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.path), "written while the server unpickled a request body\n"))


def deserialization_body(path: Path) -> bytes:
    import pickle

    return pickle.dumps(_WritesMarker(path))


def vllm_tenant_script(body: str, save_name: str) -> str:
    """``tenant_script`` in the vLLM cells' shape (one invoke, greedy, one token): the two tenants'
    scripts again differ only on line 4, the nested block's body."""
    return ("def run(model, text, layers, trace_kwargs):\n"
            "    with model.trace(max_tokens=1, temperature=0.0, **trace_kwargs) as tracer:\n"
            "        with tracer.invoke(text):\n"
            f"            {body}\n"
            f"            {save_name} = model.logits.softmax(-1).save()\n"
            "    return tracer\n")


VLLM_ATTACKER_BODY = {"gpt2": "layers[{layer}].output[:] *= 0  # zero the residual",
                      "pair": "layers[{layer}].output[0][:] *= 0  # zero the MLP's output"}
VLLM_VICTIM_BODY = {"gpt2": "layers[{layer}].output[:] *= 1  # a no-op edit: the plain run",
                    "pair": "layers[{layer}].output[0][:] *= 1  # a no-op edit: the plain run"}


def script_bodies(backend: str, family: str, layer: int) -> tuple[str, str, Callable[[str, str], str]]:
    """(victim body, attacker body, script template) for a backend and family."""
    if backend == "hf":
        return VICTIM_BODY.format(layer=layer), ATTACKER_BODY.format(layer=layer), tenant_script
    shape = "gpt2" if family == "gpt2" else "pair"
    return (VLLM_VICTIM_BODY[shape].format(layer=layer), VLLM_ATTACKER_BODY[shape].format(layer=layer),
            vllm_tenant_script)


def script_cell(backend: str, run: Callable[..., Any], save_name: str) -> Callable[..., Any]:
    """A compiled tenant script as a cell body of ``backend`` (its signature and its return)."""
    if backend == "hf":
        return lambda model, job: run_script(model, job, run)

    def vllm_cell(model, prompts, job: CellJob, trace_kwargs: dict) -> VllmTrace:
        tracer = run(model, texts_of(prompts)[0], _vllm_layers(model, job), trace_kwargs)
        return VllmTrace(tracer, (save_name,), lambda saves: tuple(
            PromptOutput({"next_token": t.float().cpu()}) for t in per_invoke(saves, save_name)))
    return vllm_cell


class own_client_caches:
    """Serialize as if from a client process of one's own: nnsight's process-wide block and source
    memos (``BLOCKS``, ``SOURCES``) and ``linecache`` are emptied for the block and put back after,
    as NDIF's ``block_scope`` does on its server. Without it, this one load generator — both
    tenants' client — would hand the second tenant's script the first one's memoized block before
    anything reached the server, and the row would measure the client, not nnsight-serve."""

    def __enter__(self) -> None:
        import linecache

        from nnsight.tracing import globals as memo

        self._saved = (dict(memo.BLOCKS), dict(memo.SOURCES), dict(linecache.cache))
        memo.BLOCKS.clear()
        memo.SOURCES.clear()

    def __exit__(self, *exc: object) -> None:
        import linecache

        from nnsight.tracing import globals as memo

        blocks, sources, lines = self._saved
        for cache, saved in ((memo.BLOCKS, blocks), (memo.SOURCES, sources), (linecache.cache, lines)):
            cache.clear()
            cache.update(saved)


ATTACKERS: dict[tuple[str, str], AttackFn] = {
    ("benign", "hf"): benign_hf,
    ("persistent_edit", "hf"): persistent_edit_hf,
    ("noisy_neighbour", "hf"): noisy_neighbour_hf,
    ("failing_neighbour", "hf"): failing_neighbour_hf,
    ("capabilities", "hf"): capabilities_hf,
    ("oversize", "hf"): oversize_save_hf,
    **{(attack, backend): fn for backend in ("vllm_async", "vllm_serve")
       for attack, fn in (("benign", benign_vllm), ("noisy_neighbour", noisy_neighbour_vllm),
                          ("failing_neighbour", failing_neighbour_vllm), ("persistent_edit", persistent_edit_vllm),
                          ("oversize", oversize_request_vllm), ("capabilities", capabilities_vllm))},
}
"""(attack, backend) → the attacker's trace; an attack with no entry for a backend is a row that
says it is not written there. Installed edits (``installed_edit_serve``), the deserialization
probe (``deserialization_body``) and the shared script path (``script_cell``) are driven by the
harness itself, not sent as one trace."""
