"""The vLLM-Lens side: vLLM's offline ``LLM`` with the vllm-lens plugin installed, which reads each
request's ``SamplingParams.extra_args`` (``apply_steering_vectors``, ``apply_hooks``,
``output_residual_stream``) and runs them on the decoder layers' residual stream.

vLLM-Lens cells are written the way its README and examples write them: a ``SteeringVector`` for an
activation addition, a ``Hook(fn, layer_indices)`` whose ``fn(ctx, h)`` sees one request's
``[tokens, hidden]`` residual (vllm-lens sums vLLM's ``(hidden, residual)`` pair itself) and returns
a replacement or saves into ``ctx.saved``. The next-token distribution is read the way its
logit-lens example reads a layer: a ``Hook`` on the last decoder layer that projects the request's
last position through the final norm and the unembedding weight and saves the softmax row, one per
forward. (vLLM's own full-vocabulary logprobs, ``logprobs=-1``, give the same row but cost more than
the forward pass: 439 ms per prompt on SmolLM2 and 1,763 ms on Qwen 0.5B against 27 and 21 ms for the
plain ``generate``, session 12, so timings of that readout measured the readout.)

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
    """A vLLM ``LLM`` with the vllm-lens plugin active, where its model keeps the final norm and the
    unembedding (``nnbench.families.HF_LAYOUTS``: vLLM's models use the same names), and the two
    imported modules' pieces the cells use."""

    llm: Any
    vocab: int
    """rows of the HF model's unembedding (vLLM pads GPT-2's past it)"""
    layers: int
    final_norm: str
    unembed: str
    sampling_params: Callable[..., Any]
    """``vllm.SamplingParams``"""
    steering_vector: Callable[..., Any]
    """``vllm_lens.SteeringVector``"""
    hook: Callable[..., Any]
    """``vllm_lens.Hook``"""

    def generate(self, texts: Sequence[str], extra_args: Sequence[dict | None], steps: int = 1) -> list[Any]:
        """One greedy ``generate`` of every text with its own ``extra_args`` (the request's edits).

        Each request gets its own copy: vllm-lens pops its keys out of ``extra_args`` as it ships
        them to the workers, so one dict shared by two requests would edit the first only."""
        params = [self.sampling_params(max_tokens=steps, temperature=0.0, ignore_eos=True,
                                       extra_args=dict(extra) if extra else None)
                  for extra in extra_args]
        return self.llm.generate(list(texts), params, use_tqdm=False)

    def lens_hook(self, layers: Sequence[int], key: str) -> Any:
        """A Hook that saves, at each of ``layers`` and on every forward, the softmax of the last
        position's residual through the final norm and the unembedding: ``ctx.saved[f"{key}_{layer}"]``,
        a list with one ``[V]`` row per forward (the prompt's, then each decoded token's)."""
        final_norm, unembed, vocab = self.final_norm, self.unembed, self.vocab

        def project(ctx, h):  # h: this request's [tokens, H] residual (vllm-lens sums vLLM's pair)
            norm = ctx.model
            for name in final_norm.split("."):
                norm = getattr(norm, name)
            weight = ctx.get_parameter(f"{unembed}.weight")[:vocab]
            probs = (norm(h[-1:]).float() @ weight.float().T).softmax(-1)  # [1, V]
            ctx.saved.setdefault(f"{key}_{ctx.layer_idx}", []).append(probs[0].cpu())

        return self.hook(fn=project, layer_indices=list(layers))

    def next_token(self, texts: Sequence[str], extra_args: Sequence[dict | None], steps: int = 1) -> torch.Tensor:
        """``[B, steps, V]``: each decoded step's next-token distribution, read by a lens hook on the
        last layer added after the request's own hooks (so it sees their edits)."""
        last = self.layers - 1
        readout = self.lens_hook([last], "next_token")
        requests = [{**(extra or {}), "apply_hooks": [*(extra or {}).get("apply_hooks", []), readout]} for extra in extra_args]
        outputs = self.generate(texts, requests, steps)
        return torch.stack([torch.stack(saved(out, f"next_token_{last}")[:steps]) for out in outputs])


def saved(output: Any, key: str) -> Any:
    """What some hook of the request saved under ``key`` (vllm-lens keys hook results by the hook's
    index in the request; the key names it instead)."""
    found = [results[key] for results in (output.hook_results or {}).values() if key in results]
    if len(found) != 1:
        raise RuntimeError(f"vllm_lens: {len(found)} hooks saved {key!r} for one request (expected 1)")
    return found[0]


def cannot_express(reason: str) -> Callable[[LensLLM, CellJob], Any]:
    """A cell for a methodology vLLM-Lens has no place for: it raises, naming why (an ERROR row
    that says so, rather than a missing one)."""

    def cell(model: LensLLM, job: CellJob) -> Any:
        raise NotImplementedError(f"vLLM-Lens cannot express {job.methodology}: {reason}")

    return cell
