"""The vllm_serve client against a real local server process that can be told to fail."""

import gzip
import json
import time
from pathlib import Path

import pytest
import torch

from nnbench.backends.vllm_serve import ServeError, ServeRequest, free_port
from nnbench.cells.registry import CellKey, CellRegistry
from nnbench.cells.vllm_trace import VllmTrace
from nnbench.jobs import PromptOutput
from nnbench.loadgen import scenario as scenario_mod
from nnbench.loadgen.run import run_scenario
from nnbench.testing.fake_serve import encode_echo

pytestmark = pytest.mark.slow  # real models for seconds per test: `pytest -m "not slow"` skips them

REGISTRY = CellRegistry()


@REGISTRY.cell("steering", "llama", "vllm_serve", "interactive")
def echo_steering(client, prompt, job, trace_kwargs):
    """Stands in for the serialized trace (needs vLLM's meta model, GPU only): an echo request."""
    body = encode_echo({"next_token": torch.tensor([[0.25, 0.75]])})
    return ServeRequest(body, VllmTrace(None, ("next_token",), lambda saves: (PromptOutput({"next_token": saves["next_token"]}),)))


@REGISTRY.cell("activation_patching", "llama", "vllm_serve", "interactive")
def echo_two_traces(client, prompt, job, trace_kwargs):
    """Stands in for a two-trace cell: the second request is built from the first one's reply."""
    first = encode_echo({"clean": torch.tensor([1.0, 2.0])})

    def then(saves, trace_kwargs):
        body = encode_echo({"next_token": (saves["clean"] * 2).unsqueeze(0)})
        return ServeRequest(body, VllmTrace(None, ("next_token",), lambda saves: (PromptOutput({"next_token": saves["next_token"]}),)))

    return ServeRequest(first, VllmTrace(None, ("clean",), None, then))


def _scenario(url: str, **engine) -> scenario_mod.Scenario:
    return scenario_mod.parse({
        "name": "serve_test", "family": "llama", "backends": ["vllm_serve"], "check": False,
        "mix": [{"methodology": "steering"}],
        "arrivals": {"process": "constant", "rates": [20.0]},
        "stop": {"duration_s": 1.0, "drain_s": 2.0},
        "limits": {"timeout_s": 0.5, "max_in_flight": 16},
        "engine": {"serve_url": url, "health_timeout_s": 2.0} | engine,
    })


async def _run(url, tmp_path, **engine):
    return await run_scenario(_scenario(url, **engine), tmp_path, show_progress=False, registry=REGISTRY)


def _written(tmp_path: Path) -> dict:
    (result,) = tmp_path.glob("loadgen-serve_test-*/loadgen-serve_test.json")
    return json.loads(result.read_text())


async def test_healthy_server_answers_every_request(serve_factory, tmp_path):
    with serve_factory("--api-key", "k") as url:
        record = await _run(url, tmp_path, api_key="k")
    row = record.rows[0]
    assert row.requests == 20 and row.states["ERROR"] == 0 and row.states["NO_REFERENCE"] == 20
    assert row.latency.count == 20 and row.latency.p50_ms is not None


async def test_a_two_trace_cell_posts_its_second_trace_built_from_the_first_reply(serve_factory):
    from nnbench.backends import BackendConfig, VllmSettings
    from nnbench.backends.vllm_serve import ServeBackend
    from nnbench.jobs import CellJob
    from nnbench.prompts import IOI_PAIRS

    job = CellJob("activation_patching", "llama", "interactive", IOI_PAIRS[:2])
    with serve_factory() as url:
        backend = ServeBackend(BackendConfig("vllm_serve", "llama", serve_url=url, vllm=VllmSettings(health_timeout_s=5.0)))
        backend.open()
        entry = REGISTRY.get(CellKey("activation_patching", "llama", "vllm_serve", "interactive"))
        output = await backend.submit(backend.prepare(job, entry))
        await backend.aclose()
    assert [p.dists["next_token"].tolist() for p in output.per_prompt] == [[[2.0, 4.0]]] * 2


async def test_a_run_from_a_worker_thread_leaves_the_load_generators_session_alone(serve_factory):
    """The load generator computes the backend's own unintervened runs with ``run`` in a thread
    between steps, while its loop holds the session the steps post on. On the H200 the two shared
    one session: 15 of 1,728 responses became ERROR ("attached to a different loop") and the
    shared session was closed under the generator."""
    import asyncio

    from nnbench.backends import BackendConfig, VllmSettings
    from nnbench.backends.vllm_serve import ServeBackend
    from nnbench.jobs import CellJob
    from nnbench.prompts import FACTS

    job = CellJob("steering", "llama", "interactive", FACTS[:1])
    entry = REGISTRY.get(CellKey("steering", "llama", "vllm_serve", "interactive"))
    with serve_factory() as url:
        backend = ServeBackend(BackendConfig("vllm_serve", "llama", serve_url=url, vllm=VllmSettings(health_timeout_s=5.0)))
        backend.open()
        first = await backend.submit(backend.prepare(job, entry))  # the generator's session now exists
        shared = backend._session
        from_thread = await asyncio.to_thread(backend.run, job, entry)
        again = await backend.submit(backend.prepare(job, entry))
        assert backend._session is shared and not shared.closed
        await backend.aclose()
    for output in (first, from_thread, again):
        assert output.per_prompt[0].dists["next_token"].tolist() == [[0.25, 0.75]]


async def test_wrong_api_key_is_an_error_with_the_cause(serve_factory, tmp_path):
    with serve_factory("--api-key", "right") as url:
        record = await _run(url, tmp_path, api_key="wrong")
    assert record.rows[0].errors == {"ServeError": 20}
    log = next(tmp_path.glob("*/*-requests.jsonl.gz"))
    lines = [json.loads(line) for line in gzip.decompress(log.read_bytes()).decode().splitlines()]
    assert "HTTP 401: Invalid API key" in lines[0]["note"]


async def test_deferred_trace_error_comes_back_as_error(serve_factory, tmp_path):
    with serve_factory("--error", "IndexError: index 99 is out of bounds") as url:
        record = await _run(url, tmp_path)
    assert record.rows[0].states["ERROR"] == 20
    assert record.rows[0].errors == {"IndexError": 20}  # the trace's own exception type, not ServeError


async def test_slow_server_times_out_and_the_run_ends_on_time(serve_factory, tmp_path):
    with serve_factory("--delay-ms", "5000") as url:
        record = await _run(url, tmp_path)
    row = record.rows[0]
    # every request ended in its own 0.5 s timeout, none waited out the server's 5 s, and none was
    # left for the 2 s drain to cut off: the run ended when its schedule said (no wall-clock assert,
    # which a busy machine breaks)
    assert row.errors == {"TimeoutError": 20} and row.cut_off == 0


async def test_server_killed_mid_run(serve_factory, tmp_path):
    with serve_factory("--die-after", "5") as url:
        record = await _run(url, tmp_path)
    row = record.rows[0]
    assert row.states["NO_REFERENCE"] == 5 and row.states["ERROR"] == 15
    assert _written(tmp_path)["status"] == "success"


async def test_never_healthy_server_stops_the_run_and_still_writes(serve_factory, tmp_path):
    with serve_factory("--never-healthy") as url, pytest.raises(ServeError, match=r"not healthy after 2 s \(last: HTTP 503\)"):
        await _run(url, tmp_path)
    written = _written(tmp_path)
    assert written["status"] == "error" and "not healthy" in written["error"]


async def test_refused_connection_names_the_cause(tmp_path):
    with pytest.raises(ServeError, match="not healthy after 2 s \\(last: .*[Rr]efused"):
        await _run(f"http://127.0.0.1:{free_port()}", tmp_path)


def test_a_prestarted_server_is_waited_for_once_and_timed_from_its_start(tmp_path):
    import subprocess
    import sys

    from nnbench.backends import BackendConfig, VllmSettings
    from nnbench.backends.pool import BackendPool
    from nnbench.backends.vllm_serve import free_port

    port = free_port()
    serve = BackendConfig("vllm_serve", "llama", serve_url=f"http://127.0.0.1:{port}", vllm=VllmSettings(health_timeout_s=30.0))
    with BackendPool() as pool:
        started = time.perf_counter()
        pool.prestart(serve)
        pool.prestart(BackendConfig("hf", "llama"))  # nothing to start in the background: left for get
        time.sleep(1.0)  # the server comes up late, as nnsight-serve does after its imports
        server = subprocess.Popen([sys.executable, "-m", "nnbench.testing.fake_serve", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            backend = pool.get(serve)
            assert pool.get(serve) is backend
            assert 1.0 <= pool.open_seconds[serve] <= time.perf_counter() - started
            assert list(pool.open_seconds) == [serve]  # hf was never opened
            pool.close_family("llama")
        finally:
            server.kill()
            server.wait(timeout=10)
