"""``vllm_serve``: an aiohttp client for a running ``nnsight-serve`` (or one it starts itself).

It sends nnsight's own serialized request to ``POST /v1/nnsight/generate`` exactly as nnsight's
serve client does (``application/octet-stream``, ``nnsight-compress: False``, ``ndif-api-key``),
reads the ``torch.save`` reply and re-raises a deferred intervention error. Payloads are built in
``prepare`` (before the clock); the hot path is one POST. Health is awaited before a run starts,
with a deadline; every request has one too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency
from nnbench.backends.engine import vllm_engine_args
from nnbench.cells.registry import CellEntry
from nnbench.cells.vllm_trace import SerializedTrace, VllmTrace, arun_chain
from nnbench.jobs import CellJob, CellOutput, PromptOutput
from nnbench.oracle.classify import CarriedError
from nnbench.provision import ensure_model


@dataclass(frozen=True, slots=True)
class ServeRequest:
    """One prepared HTTP request: the serialized trace of one prompt, and its cell's trace (the
    names it saves, how to turn the reply's saves into that prompt's outputs, and for two-trace
    cells how to build the next request), kept without nnsight's tracer."""

    body: bytes
    trace: VllmTrace


class ServeError(CarriedError):
    """The server answered, but not with a result: an HTTP error status (``type_name`` None), or
    the trace's own exception, whose class and message arrive as ``type_name`` and ``message``."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, deadline_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``GET /health`` until 200; raise naming the cause when the deadline passes or the process dies."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServeError(f"nnsight-serve exited with code {process.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.2)
    raise ServeError(f"{url} not healthy after {deadline_s:g} s (last: {last})")


def serve_command(config: BackendConfig, model_path: str, port: int, exe: str | None) -> list[str]:
    """The ``nnsight-serve`` command line for ``config``: loopback only, engine flags spelled out
    (nnsight-serve drops short flags such as ``-tp``, so every flag is the long form)."""
    command = [exe] if exe else [sys.executable, "-m", "nnsight.modeling.vllm.serve.cli"]
    command += [model_path, "--host", "127.0.0.1", "--port", str(port)]
    for name, value in vllm_engine_args(config).items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    if config.vllm.api_key:
        command += ["--api-key", config.vllm.api_key]
    return command


class ServeBackend(BackendDefaults):
    concurrency: Concurrency = "concurrent"
    starts_in_background = True

    def __init__(self, config: BackendConfig, model_path: str | None = None) -> None:
        self.config = config
        self.api_key = config.vllm.api_key
        self.timeout_s = config.vllm.request_timeout_s
        self.name_each_block = config.vllm.name_each_block
        """False: send traces exactly as nnsight's serve client does (see SerializedTrace)"""
        self.health_timeout_s = config.vllm.health_timeout_s
        self.url = config.serve_url
        self.model_path = model_path
        self.process: subprocess.Popen | None = None
        self.client: Any = None  # the meta VLLM model that builds traces (GPU machines only)
        self._session = None
        self.headers = {"Content-Type": "application/octet-stream", "nnsight-compress": "False"}
        if self.api_key:
            self.headers["ndif-api-key"] = self.api_key

    def start(self) -> None:
        """Launch nnsight-serve (unless given a URL) without waiting for it; ``open`` waits."""
        if self.url is None:
            self.url = self._start_server()

    def open(self) -> None:
        self.start()
        wait_healthy(self.url, self.health_timeout_s, self.process)
        if importlib.util.find_spec("vllm") is not None:
            from nnsight.modeling.vllm import VLLM

            # a meta-device client tree: it builds and serializes traces, never runs them
            self.client = VLLM(self.model_path or str(ensure_model(self.config.family, self.config.model).path))

    def _start_server(self) -> str:
        """Start ``nnsight-serve`` on a free loopback port (needs vLLM and a GPU)."""
        port = free_port()
        log = open(os.environ.get("NNBENCH_SERVE_LOG", os.devnull), "ab")  # noqa: SIM115 - the server's, closed with it
        model_path = self.model_path or str(ensure_model(self.config.family, self.config.model).path)
        command = serve_command(self.config, model_path, port, shutil.which("nnsight-serve"))
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if os.environ.get("NNBENCH_SERVE_PIDS"):  # for a caller that must stop what a killed run left
            with open(os.environ["NNBENCH_SERVE_PIDS"], "a") as pids:
                pids.write(f"{self.process.pid}\n")
        return f"http://127.0.0.1:{port}"

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[ServeRequest, ...]:
        """Serialize one one-prompt trace per prompt, before the clock starts (serve merges the
        same-name saves of several invokes, so a trace carries one prompt)."""
        return tuple(self._serialize(lambda trace_kwargs, p=prompt: entry.fn(self.client, (p,), job, trace_kwargs))
                     for prompt in job.prompts)

    def _serialize(self, build: Callable[[dict], Any]) -> ServeRequest:
        serialized = SerializedTrace(name_each_block=self.name_each_block)
        try:
            traced = build({"backend": serialized})
        except AttributeError:
            if self.client is None:  # every request failed with "'NoneType' object has no attribute 'trace'"
                raise RuntimeError("vllm_serve builds each trace with nnsight's VLLM meta model, which needs vLLM "
                                   "installed on this machine (pip install -e '.[vllm]'); the server at "
                                   f"{self.url} was reached, but no trace can be built here") from None
            raise
        if isinstance(traced, ServeRequest):  # a stand-in that brings its own body (tests, benchmarks)
            return traced
        return ServeRequest(serialized.blob, replace(traced, tracer=None))

    def _new_session(self):
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, connect=10)
        return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self.headers)

    async def _client_session(self):
        """The load generator's session, bound to its event loop (see ``aclose``)."""
        if self._session is None or self._session.closed:
            self._session = self._new_session()
        return self._session

    async def _exchange(self, session, body: bytes) -> dict[str, Any]:
        """POST one serialized trace; return its saves or raise what went wrong."""
        async with session.post(f"{self.url}/v1/nnsight/generate", data=body) as reply:
            answer = await reply.read()
            if reply.status != 200:
                raise ServeError(f"nnsight-serve returned HTTP {reply.status}: {_detail(answer)}")
        result = torch.load(io.BytesIO(answer), weights_only=False)
        error = result.get("error")
        if isinstance(error, dict) and "type_name" in error:  # nnsight's captured exception
            message = str(error.get("message", ""))
            raise ServeError(f"deferred error from the trace:\n{error['type_name']}: {message}",
                             str(error["type_name"]).rsplit(".", 1)[-1], message)
        if error is not None:
            raise ServeError(f"deferred error from the trace: {error}")
        return result.get("saves", {})

    async def _post(self, session, request: ServeRequest) -> tuple[PromptOutput, ...]:
        """One request, and the ones its cell builds from each reply (built here, on the hot path:
        they need the previous reply)."""

        async def execute(build) -> tuple[VllmTrace, dict[str, Any]]:
            current = self._serialize(build)
            return current.trace, await self._exchange(session, current.body)

        return await arun_chain(lambda trace_kwargs: request, execute)  # the first one is already built

    async def _submit_with(self, session, prepared: tuple[ServeRequest, ...]) -> CellOutput:
        if len(prepared) == 1:  # the hot path of the load generator: one prompt, one POST
            return CellOutput(await self._post(session, prepared[0]))
        per_prompt = await asyncio.gather(*(self._post(session, r) for r in prepared))
        return CellOutput(tuple(out for outs in per_prompt for out in outs))

    async def submit(self, prepared: tuple[ServeRequest, ...]) -> CellOutput:
        return await self._submit_with(await self._client_session(), prepared)

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        """One cell to completion on a loop and session of its own: the load generator calls this
        from a worker thread (the backend's unintervened runs, before a step's clock) while its own
        loop holds the shared session. Sharing it raised "got Future attached to a different loop"
        and closed the generator's session under it (15 of 1,728 responses ERROR on the H200, 2026-12-02)."""

        async def once() -> CellOutput:
            async with self._new_session() as session:
                return await self._submit_with(session, self.prepare(job, entry))

        return asyncio.run(once())

    def run_baseline(self, job: CellJob) -> None:
        raise NotImplementedError("vllm_serve has no no-intervention baseline of its own; compare with vllm_async")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body).get("detail", body[:200]))
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
