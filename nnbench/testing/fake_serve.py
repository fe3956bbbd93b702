"""A loopback HTTP server with nnsight-serve's shape, that can be told to fail.

Speaks the same protocol as ``nnsight-serve`` (nnsight 0.8.1 ``serve/server.py``): ``GET /health``
(200 ``{"status": "ok"}`` or 503), ``POST /v1/nnsight/generate`` answering 200 with
``torch.save({"saves": {...}, "error": None})``, 401 ``{"detail": "Invalid API key"}`` on a wrong
``ndif-api-key``. Instead of executing a trace it echoes: the request body is
``torch.save({"echo": {...}})`` and the reply's saves are that dict. Failure modes are flags:

    python -m nnbench.testing.fake_serve --port 8123 [--api-key K] [--delay-ms 50]
        [--healthy-after 2] [--never-healthy] [--die-after 10] [--error "ValueError: boom"]
        [--fixed-response]   # answer every request at once with one precomputed payload
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
        return web.Response(body=_reply(payload.get("echo", {}), args.error), content_type="application/octet-stream")

    app = web.Application(middlewares=[api_key], client_max_size=64 * 2**20)
    app.add_routes([web.get("/health", health), web.post("/v1/nnsight/generate", generate)])
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
