"""Closing the vllm_async backend: the tasks an engine leaves on the backend's loop are cancelled
and finished there before the loop stops, so none is reported destroyed while pending at exit.
The engine itself needs a GPU (``tests/test_gpu_vllm.py`` closes a real one); here a task that
never ends stands in for vLLM's output handler on the same loop thread."""

import asyncio

from nnbench.backends import BackendConfig
from nnbench.backends.vllm_async import VLLMAsyncBackend


def test_close_cancels_what_is_left_on_the_loop_and_closes_it():
    backend = VLLMAsyncBackend(BackendConfig("vllm_async", "llama", "bfloat16", "cuda"))
    backend._thread.start()  # what open() does before building the engine

    async def start_forever() -> asyncio.Task:
        return asyncio.ensure_future(asyncio.sleep(3600))

    left = asyncio.run_coroutine_threadsafe(start_forever(), backend.loop).result(5)
    backend.close()
    assert left.cancelled()
    assert backend.loop.is_closed() and not backend._thread.is_alive()


def test_a_backend_never_opened_closes_cleanly():
    backend = VLLMAsyncBackend(BackendConfig("vllm_async", "llama", "bfloat16", "cuda"))
    backend.close()
    assert backend.loop.is_closed()
