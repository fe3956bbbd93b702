"""The vLLM-Lens side: vLLM's offline ``LLM`` with the vllm-lens plugin installed, which reads each
request's ``SamplingParams.extra_args`` (``apply_steering_vectors``, ``apply_hooks``,
``output_residual_stream``) and runs them on the decoder layers' residual stream.

vLLM-Lens cells are written the way its README and examples write them: a ``SteeringVector`` for an
activation addition, a ``Hook(fn, layer_indices)`` whose ``fn(ctx, h)`` sees one request's
``[tokens, hidden]`` residual (vllm-lens sums vLLM's ``(hidden, residual)`` pair itself) and returns
a replacement or saves into ``ctx.saved``. The next-token distribution is what a vLLM user reads:
vLLM's own full-vocabulary logprobs (``logprobs=-1``), turned back into probabilities here.

Its hooks sit on decoder-layer outputs (and inputs) only, so an edit inside a layer (an MLP output),
an attention pattern or a gradient has no place to go: those cells say so (``cannot_express``).
This module imports no vLLM: the backend hands in the ``LensLLM``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nnbench.jobs import CellJob


@dataclass(frozen=True)
class LensLLM:
    """A vLLM ``LLM`` with the vllm-lens plugin active, its vocabulary size, and the two imported
    modules' pieces the cells use."""

    llm: Any
    vocab: int
    sampling_params: Callable[..., Any]
    """``vllm.SamplingParams``"""
    steering_vector: Callable[..., Any]
    """``vllm_lens.SteeringVector``"""
    hook: Callable[..., Any]
    """``vllm_lens.Hook``"""

    def generate(self, texts: Sequence[str], extra_args: Sequence[dict | None], steps: int = 1,
                 logprobs: bool = True) -> list[Any]:
        """One greedy ``generate`` of every text with its own ``extra_args`` (the request's edits).

        Each request gets its own copy: vllm-lens pops its keys out of ``extra_args`` as it ships
        them to the workers, so one dict shared by two requests would edit the first only."""
        params = [self.sampling_params(max_tokens=steps, temperature=0.0, ignore_eos=True,
                                       logprobs=-1 if logprobs else None, extra_args=dict(extra) if extra else None)
                  for extra in extra_args]
        return self.llm.generate(list(texts), params, use_tqdm=False)

    def next_token(self, texts: Sequence[str], extra_args: Sequence[dict | None], steps: int = 1) -> torch.Tensor:
        """``[B, steps, V]``: each decoded step's next-token distribution, from vLLM's raw logprobs."""
        outputs = self.generate(texts, extra_args, steps)
        return torch.stack([torch.stack([self._dense(step) for step in out.outputs[0].logprobs]) for out in outputs])

    def _dense(self, step: Any) -> torch.Tensor:
        """One step's ``{token id: Logprob}`` over the whole vocabulary as a probability row."""
        ids = torch.tensor(list(step.keys()), dtype=torch.long)
        logprobs = torch.tensor([lp.logprob for lp in step.values()], dtype=torch.float32)
        row = torch.full((self.vocab,), float("-inf"))
        row[ids] = logprobs
        return row.exp()


def cannot_express(reason: str) -> Callable[[LensLLM, CellJob], Any]:
    """A cell for a methodology vLLM-Lens has no place for: it raises, naming why (an ERROR row
    that says so, rather than a missing one)."""

    def cell(model: LensLLM, job: CellJob) -> Any:
        raise NotImplementedError(f"vLLM-Lens cannot express {job.methodology}: {reason}")

    return cell
