"""Adversarial tenants: each detector catches the misbehaviour planted for it, on SmolLM2 in process
(hf, fp32 and bf16) and on a loopback server taught to misbehave; a well-behaved second tenant
raises no alarm."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from nnbench.backends import BackendConfig
from nnbench.backends.pool import BackendPool
from nnbench.backends.vllm_serve import ServeRequest
from nnbench.cells import CELLS, CellKey, CellRegistry
from nnbench.cells.vllm_trace import VllmTrace
from nnbench.jobs import PromptOutput
from nnbench.loadgen import scenario as scenario_mod
from nnbench.loadgen.tenants import run_tenants
from nnbench.records import TenantsSummary
from nnbench.results import read_record
from nnbench.testing.fake_serve import encode_echo
from nnbench.validate import SpecError
from nnbench.vocab import BackendName


def _scenario(attacks, backends=("hf",), mix=("steering",), engine=None, **tenants):
    return scenario_mod.parse({
        "name": "tenants_test", "family": "llama", "backends": list(backends), "seed": 5, "interventions": 1,
        "mix": [{"methodology": m} for m in mix],
        "limits": {"timeout_s": 30.0}, "stop": {"drain_s": 30.0}, "engine": engine or {},
        "tenants": {"attacks": list(attacks), "canary_rate": 3.0, "duration_s": 0.6, "attacker_rate": 3.0,
                    "script_pairs": 2} | tenants,
    })


@pytest.mark.parametrize("tenants, backends, engine, message", [
    ({"attacks": ["rowhammer"]}, ["hf"], {}, "tenants.attacks: unknown value 'rowhammer'"),
    ({"attacks": []}, ["hf"], {}, "tenants.attacks: required"),
    ({"attacks": ["benign"], "noisy": 1}, ["hf"], {}, "tenants.noisy: unknown key"),
    ({"attacks": ["benign"]}, ["null"], {}, "backends (with [tenants]): unknown value 'null'"),
    ({"attacks": ["benign"]}, ["vllm_serve"], {"serve_url": "http://10.0.0.7:8000"},
     "engine.serve_url: attacks only target a server on loopback"),
])
def test_a_bad_tenants_table_is_refused_by_name(tenants, backends, engine, message):
    raw = {"name": "t", "family": "llama", "backends": backends, "mix": [{"methodology": "steering"}],
           "tenants": tenants, "engine": engine}
    with pytest.raises(SpecError) as caught:
        scenario_mod.parse(raw)
    assert message in str(caught.value)


def _rows(record) -> dict[str, dict]:
    return {r.attack: asdict(r) for r in record.rows}


@pytest.mark.slow
async def test_in_process_attacks_are_caught_and_a_benign_tenant_is_not(tmp_path):
    record = await run_tenants(_scenario(["benign", "shared_script_path", "persistent_edit", "failing_neighbour",
                                          "capabilities", "oversize", "installed_edit"]), tmp_path, show_progress=False)
    rows = _rows(record)
    assert record.status == "success"
    assert record.summary == TenantsSummary(7, sum(r.detected for r in record.rows))
    benign = rows["benign"]
    assert not benign["detected"] and benign["canaries"] > 0 and benign["attacker_requests"] > 0
    assert benign["canaries_wrong"] == benign["canaries_error"] == 0 and benign["survived"]
    # nnsight's process-wide block memo: the victim's script ran the attacker's nested block
    shared = rows["shared_script_path"]
    assert shared["detected"] and shared["canaries_error"] == 2 and "victim_out" in shared["note"]
    edit = rows["persistent_edit"]
    assert edit["detected"] and edit["canaries_wrong"] == edit["canaries"] > 0
    assert edit["restore_s"] is not None and edit["clean_after_restore"]
    failing = rows["failing_neighbour"]
    assert failing["attacker_errors"] == failing["attacker_requests"] > 0
    assert failing["canaries_error"] == failing["canaries_wrong"] == 0 and failing["survived"]
    assert rows["capabilities"]["capabilities"] == {"read_file": True, "read_env": True, "run_process": True}
    big = rows["oversize"]  # in process, the save half: 64 copies' every layer, answered, nothing broken
    assert big["applies"] and big["attacker_requests"] > 0 and big["attacker_errors"] == 0 and big["survived"]
    assert not rows["installed_edit"]["applies"] and "nnsight-serve only" in rows["installed_edit"]["note"]
    (folder,) = tmp_path.iterdir()
    assert read_record(folder / "tenants-tenants_test.json", "tenants") == record  # the typed record, exactly
    assert "| persistent_edit | hf | **yes** |" in (folder / "tenants-tenants_test.md").read_text()


@pytest.mark.slow
async def test_a_persistent_edit_is_caught_at_bf16_without_a_false_alarm(tmp_path):
    """At bf16 the canaries are judged within the measured floor: the benign tenant must still pass
    and the halved MLP must still show."""
    record = await run_tenants(_scenario(["benign", "persistent_edit"], engine={"dtype": "bfloat16"}),
                               tmp_path, show_progress=False)
    rows = _rows(record)
    assert not rows["benign"]["detected"], rows["benign"]
    assert rows["persistent_edit"]["detected"] and rows["persistent_edit"]["canaries_wrong"] > 0


@pytest.mark.slow
async def test_canaries_wrong_alone_are_the_baseline_not_the_attackers_doing(tmp_path, serve_factory):
    """A backend that is already wrong on some canaries (planted: the echo is flipped for prompts of
    even length, as vLLM bf16 was wrong on 5 of 76 canaries in every phase on the H200) must not
    make a benign tenant look like an attack; a persistent edit is still caught on the others."""
    attackers = {("benign", "vllm_serve"): _echo_attacker({}),
                 ("persistent_edit", "vllm_serve"): _echo_attacker({"_persist": 1})}
    with BackendPool() as pool, serve_factory() as url:
        scenario = _scenario(["benign", "persistent_edit"], backends=["vllm_serve"], mix=["logit_lens"],
                             engine={"serve_url": url, "health_timeout_s": 5.0}, latency_alarm_ms=150.0)
        record = await run_tenants(scenario, tmp_path, show_progress=False,
                                   registry=_echo_registry(pool, wrong_when=lambda job: len(job.prompts[0].text) % 2 == 0),
                                   pool=pool, attackers=attackers)
    rows = _rows(record)
    benign, edit = rows["benign"], rows["persistent_edit"]
    assert 0 < benign["wrong_alone"][0] < benign["canaries"], benign  # the planted baseline, some canaries only
    assert benign["caused"] == (0, 0) and not benign["detected"], benign
    assert edit["detected"] and 0 < edit["caused"][0] < edit["canaries"], edit
    (folder,) = tmp_path.iterdir()
    assert "Wrong or failed canaries" in (folder / "tenants-tenants_test.md").read_text()


def _echo_registry(pool: BackendPool, wrong_when=lambda job: False) -> CellRegistry:
    """The shipped HF cells (the references) plus a vllm_serve logit-lens canary that echoes the
    HF answer through the server (a real trace needs vLLM's meta model, GPU only), flipped (wrong)
    for the jobs ``wrong_when`` picks."""
    registry = CellRegistry()
    for key in CELLS:
        if key.backend == BackendName.HF:
            registry.cell(key.methodology, key.family, key.backend, key.workload, CELLS.get(key).relies_on)(CELLS.get(key).fn)

    @registry.cell("logit_lens", "llama", "vllm_serve", "interactive")
    def echo_lens(client, prompts, job, trace_kwargs):
        hf = pool.get(BackendConfig("hf", "llama"))
        lens = hf.run(job, CELLS.get(CellKey("logit_lens", "llama", "hf", "interactive"))).per_prompt[0].dists["lens"]
        lens = lens.flip(-1) if wrong_when(job) else lens
        return ServeRequest(encode_echo({"lens": lens}), VllmTrace(None, ("lens",), _decode))

    return registry


def _decode(saves):
    return (PromptOutput({"lens": saves["lens"]}),)


def _echo_attacker(control: dict):
    def attacker(client, prompts, job, trace_kwargs, *, knobs):
        return ServeRequest(encode_echo({"lens": torch.zeros(1, 2)} | control), VllmTrace(None, ("lens",), _decode))

    return attacker


@pytest.mark.slow
async def test_the_detectors_catch_a_server_that_stalls_leaks_state_or_dies(tmp_path, serve_factory):
    attackers = {("benign", "vllm_serve"): _echo_attacker({}),
                 ("noisy_neighbour", "vllm_serve"): _echo_attacker({"_hold_ms": 400}),
                 ("persistent_edit", "vllm_serve"): _echo_attacker({"_persist": 1}),
                 ("failing_neighbour", "vllm_serve"): _echo_attacker({"_die": 1})}
    with BackendPool() as pool, serve_factory() as url:
        scenario = _scenario(["benign", "noisy_neighbour", "persistent_edit", "failing_neighbour"], backends=["vllm_serve"],
                             mix=["logit_lens"], engine={"serve_url": url, "health_timeout_s": 5.0},
                             latency_alarm_ms=150.0)  # the planted hold is 400 ms; a p99 of 2 echoes may jump 50 ms
        record = await run_tenants(scenario, tmp_path, show_progress=False, registry=_echo_registry(pool), pool=pool,
                                   attackers=attackers)
    rows = _rows(record)
    assert not rows["benign"]["detected"] and rows["benign"]["canaries_wrong"] == 0, str(rows["benign"])
    noisy = rows["noisy_neighbour"]
    assert noisy["detected"] and noisy["latency_factor"] >= 2.0 and noisy["canaries_wrong"] == 0, noisy
    leaked = rows["persistent_edit"]
    assert leaked["detected"] and leaked["canaries_wrong"] == leaked["canaries"] > 0, leaked
    assert leaked["clean_after_restore"] is False  # a server the run did not start cannot be restarted by it
    dead = rows["failing_neighbour"]
    assert dead["detected"] and dead["canaries_error"] > 0 and dead["survived"] is False, dead


def test_own_client_caches_keeps_two_tenants_scripts_apart_in_one_process():
    """What the vllm_serve row relies on: two scripts compiled under one path and run in one process
    mix (the victim gets the attacker's nested block: the fault, planted by sharing the path), and
    with each one inside ``own_client_caches`` they do not."""
    from nnbench.backends import open_backend
    from nnbench.cells import tenants as attacker
    from nnbench.families import Modules
    from nnbench.prompts import FACTS

    model = open_backend(BackendConfig("hf", "llama")).model
    mods, text = Modules.of(model, "llama"), FACTS[0].text
    victim, attack = (attacker.tenant_script(b.format(layer=6), "out")
                      for b in (attacker.VICTIM_BODY, attacker.ATTACKER_BODY))

    def answer(src: str, path: str) -> torch.Tensor:
        return attacker.compiled_script(src, path)(model, text, mods.layers, mods.unembed)

    with torch.no_grad():
        own = answer(victim, "/tenant-victim/own.py")
        attacked = answer(attack, "/tenant-attacker/own.py")
        assert (own - attacked).abs().sum() / 2 > 0.5  # the attacker's block moves the answer
        with attacker.own_client_caches():
            answer(attack, "/shared/scoped.py")
        with attacker.own_client_caches():
            scoped = answer(victim, "/shared/scoped.py")
        answer(attack, "/shared/mixed.py")
        mixed = answer(victim, "/shared/mixed.py")
    assert torch.allclose(scoped, own, atol=1e-5)
    assert torch.allclose(mixed, attacked, atol=1e-5)
