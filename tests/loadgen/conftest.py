import contextlib
import socket
import subprocess
import sys
import time

import pytest

from nnbench.backends.vllm_serve import free_port


@contextlib.contextmanager
def fake_serve(*flags: str):
    """A real local server process speaking nnsight-serve's HTTP shape (see nnbench.testing.fake_serve)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "nnbench.testing.fake_serve", "--port", str(port), *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode())
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def serve_factory():
    return fake_serve
