"""A loopback HTTP server with nnsight-serve's shape, that can be told to fail.

Speaks the same protocol as ``nnsight-serve`` (nnsight 0.8.1 ``serve/server.py``): ``GET /health``
(200 ``{"status": "ok"}`` or 503), ``POST /v1/nnsight/generate`` answering 200 with
``torch.save({"saves": {...}, "error": None})``, 401 ``{"detail": "Invalid API key"}`` on a wrong
``ndif-api-key``. Instead of executing a trace it echoes: the request body is
``torch.save({"echo": {...}})`` and the reply's saves are that dict. Failure modes are flags:

    python -m nnbench.testing.fake_serve --port 8123 [--api-key K] [--delay-ms 50]
        [--healthy-after 2] [--never-healthy] [--die-after 10] [--error "ValueError: boom"]
        [--fixed-response]   # answer every request at once with one precomputed payload

Adversarial tenants (``nnbench.loadgen.tenants``) make it misbehave the way nnsight-serve does
under their attacks, by control keys in the echoed dict (never saved back):

* ``_hold_ms``: block the server for that long before answering, as an intervention loop holds
  nnsight-serve's forward thread and with it every request in the batch (noisy neighbour);
* ``_die``: exit at once, as a request that crashes the engine takes the server down;
* ``_persist``: from now on, every later reply's saved tensors are flipped along their last dim,
  as a tenant's in-place weight edit changes every later tenant's answers (a server that leaks state);
* ``POST /v1/nnsight/register/{id}`` does the same as ``_persist`` (nnsight-serve's installed edits
  run on every request; here the body is ignored), ``DELETE`` of it undoes it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time

import torch
from aiohttp import web


def encode_echo(saves: dict) -> bytes:
    """The request body the fake server understands: it sends ``saves`` back."""
    buffer = io.BytesIO()
    torch.save({"echo": saves}, buffer)
    return buffer.getvalue()


def _reply(saves: dict, error: str | None) -> bytes:
    """nnsight-serve's reply; a deferred error has the shape its ``capture_exception`` gives."""
    if error is not None:
        type_name, _, message = error.partition(": ")
        error = {"type_name": type_name, "message": message, "traceback": "  File \"<block>\", line 1"}
    buffer = io.BytesIO()
    torch.save({"saves": saves, "error": error}, buffer)
    return buffer.getvalue()


def build_app(args: argparse.Namespace) -> web.Application:
    started = time.monotonic()
    served = [0]
    persisted: set[str] = set()  # what later replies are changed by: "_persist" or installed edit ids
    fixed = _reply({"ok": torch.zeros(1)}, None)

    @web.middleware
    async def api_key(request: web.Request, handler):
        if args.api_key and request.path != "/health" and request.headers.get("ndif-api-key") != args.api_key:
            return web.json_response({"detail": "Invalid API key"}, status=401)
        return await handler(request)

    async def health(request: web.Request) -> web.Response:
        if args.never_healthy or time.monotonic() - started < args.healthy_after:
            return web.json_response({"detail": "Engine not ready"}, status=503)
        return web.json_response({"status": "ok"})

    async def generate(request: web.Request) -> web.Response:
        body = await request.read()
        served[0] += 1
        if args.die_after and served[0] > args.die_after:
            os._exit(1)  # killed mid-run: connections drop with no reply
        if args.fixed_response:
            return web.Response(body=fixed, content_type="application/octet-stream")
        if args.delay_ms:
            await asyncio.sleep(args.delay_ms / 1e3)
        payload = torch.load(io.BytesIO(body), weights_only=False)
        echo = dict(payload.get("echo", {}))
        if echo.pop("_die", None) is not None:
            os._exit(1)
        hold_ms = echo.pop("_hold_ms", None)
        if hold_ms is not None:
            time.sleep(float(hold_ms) / 1e3)  # blocking on purpose: the whole server waits, as a forward does
        if echo.pop("_persist", None) is not None:
            persisted.add("_persist")
        elif persisted:
            echo = {k: v.flip(-1) if isinstance(v, torch.Tensor) else v for k, v in echo.items()}
        return web.Response(body=_reply(echo, args.error), content_type="application/octet-stream")

    async def register(request: web.Request) -> web.Response:
        await request.read()
        persisted.add(request.match_info["id"])
        return web.json_response({"status": "registered", "id": request.match_info["id"]})

    async def unregister(request: web.Request) -> web.Response:
        persisted.discard(request.match_info["id"])
        return web.json_response({"status": "removed", "id": request.match_info["id"]})

    app = web.Application(middlewares=[api_key], client_max_size=64 * 2**20)
    app.add_routes([web.get("/health", health), web.post("/v1/nnsight/generate", generate),
                    web.post("/v1/nnsight/register/{id}", register), web.delete("/v1/nnsight/register/{id}", unregister)])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m nnbench.testing.fake_serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--healthy-after", type=float, default=0.0)
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--error")
    parser.add_argument("--fixed-response", action="store_true")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--host: loopback only")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(build_app(args), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
