"""The control run of a write cell: the same prompts, on the same backend at the same precision,
with no intervention.

The oracle measures a write cell's *effect* as its output against this run, and the reference's
effect as HF intervened against HF's control (``nnbench/oracle/effect.py``). A lost edit, a sign
flip or a wrong layer changes the effect even where bf16 rounding hides it in the output alone.
The same run, without an intervention anywhere, is the noise floor of a backend: its control
against HF's (``nnbench/oracle/floors.py``).

A control reads the next-token distribution (every decoded step when the job generates) of the
texts the write cell reads:

* steering, zero-ablation, generation steering: the prompts themselves;
* activation patching: the corrupt prompts (the patch should move them towards the clean run);
* attribution patching: the clean prompts, against the cell's corrupt-run distribution (the
  corrupt run must really run the corrupt prompt).

One body per backend kind, as for any cell; read-only methodologies have no control.
"""

from __future__ import annotations

from functools import partial

import torch

from nnbench.cells.hooks import RawModel, greedy_generate
from nnbench.cells.lens import greedy_logits, text_input
from nnbench.cells.registry import CellEntry
from nnbench.cells.vene import VeneModel
from nnbench.cells.vlens import LensLLM
from nnbench.cells.vllm_trace import GREEDY, VllmTrace, next_token_rows, texts_of
from nnbench.families import Modules
from nnbench.jobs import CellJob, CellOutput, per_prompt
from nnbench.prompts import Prompt
from nnbench.vocab import BackendName, Methodology

EFFECT_DIST: dict[Methodology, str] = {
    Methodology.STEERING: "next_token",
    Methodology.ZERO_ABLATION: "next_token",
    Methodology.GENERATION_STEERING: "next_token",
    Methodology.ACTIVATION_PATCHING: "next_token",
    Methodology.ATTRIBUTION_PATCHING: "corrupt_next_token",
}
"""write methodology → the cell's distribution that carries its effect (the control's is always
``next_token``)"""

_READS_CORRUPT = {Methodology.ACTIVATION_PATCHING}


def writes(methodology: Methodology) -> bool:
    return methodology in EFFECT_DIST


def control_job(job: CellJob) -> CellJob:
    """The job whose plain run is ``job``'s control: the texts it reads, as plain prompts."""
    if not writes(job.methodology):
        raise ValueError(f"{job.methodology} is read-only: it has no control run")
    texts = job.corrupt_texts if job.methodology in _READS_CORRUPT else job.texts
    return CellJob(job.methodology, job.family, job.workload, tuple(Prompt(t) for t in texts), job.params, job.model)


def _steps(job: CellJob) -> int:
    return job.params.new_tokens if job.generates else 1


def control_hf(model, job: CellJob) -> CellOutput:
    mods = Modules.of(model, job.family)
    steps = _steps(job)
    if steps == 1:
        with model.trace(job.texts):
            probs = mods.unembed.output[:, -1].softmax(-1).save()  # [B, V]
        return per_prompt({"next_token": probs})
    with model.generate(job.texts, max_new_tokens=steps, min_new_tokens=steps, do_sample=False) as tracer:
        per_step = list().save()
        for _ in tracer.iter[:steps]:
            per_step.append(mods.unembed.output[:, -1])
    return per_prompt({"next_token": torch.stack(list(per_step), dim=1).softmax(-1)}, steps=steps)


def control_raw(model: RawModel, job: CellJob) -> CellOutput:
    steps = _steps(job)
    if steps == 1:
        logits = model.forward(job.texts).logits[:, -1]
        return per_prompt({"next_token": logits.softmax(-1)})
    logits = greedy_generate(model, model.encode(job.texts), steps)
    return per_prompt({"next_token": logits.softmax(-1)}, steps=steps)


def control_tl(model, job: CellJob) -> CellOutput:
    steps = _steps(job)
    if steps == 1:
        logits = model(list(job.texts), **text_input(job))[:, -1]
        return per_prompt({"next_token": logits.softmax(-1)})
    return per_prompt({"next_token": greedy_logits(model, job, steps).softmax(-1)}, steps=steps)


def control_pyvene(model: VeneModel, job: CellJob) -> CellOutput:
    """The base model pyvene wraps, on the batch its cells pass (no position ids)."""
    steps, batch = _steps(job), model.batch(job.texts)
    if steps == 1:
        return per_prompt({"next_token": model.module(**batch).logits[:, -1].softmax(-1)})
    out = model.module.generate(**batch, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, output_logits=True,
                                return_dict_in_generate=True, pad_token_id=model.tokenizer.pad_token_id)
    return per_prompt({"next_token": torch.stack(out.logits, dim=1).softmax(-1)}, steps=steps)


def control_vllm(model, prompts: tuple[Prompt, ...], job: CellJob, trace_kwargs: dict) -> VllmTrace:
    steps, texts = _steps(job), texts_of(prompts)
    with model.trace(max_tokens=steps, ignore_eos=True, **GREEDY, **trace_kwargs) as tracer:
        for text in texts:
            with tracer.invoke(text):
                rows = []
                for _ in tracer.iter[:steps]:
                    rows.append(model.logits)
                next_token = torch.cat(rows).softmax(-1).save()  # [steps, V]
    return VllmTrace(tracer, ("next_token",), partial(next_token_rows, steps=steps))


def control_vllm_lens(model: LensLLM, job: CellJob) -> CellOutput:
    """The plain requests, read by the same last-layer hook as the vLLM-Lens cells read theirs."""
    steps = _steps(job)
    return per_prompt({"next_token": model.next_token(job.texts, [None for _ in job.texts], steps)}, steps=steps)


CONTROLS: dict[BackendName, CellEntry] = {
    BackendName.HF: CellEntry(control_hf, ("read_output:logits",)),
    BackendName.RAW_HOOKS: CellEntry(control_raw, ()),
    BackendName.TRANSFORMER_LENS: CellEntry(control_tl, ()),
    BackendName.PYVENE: CellEntry(control_pyvene, ()),
    BackendName.VLLM_LENS: CellEntry(control_vllm_lens, ()),
    **{b: CellEntry(control_vllm, ("read_at_step:logits",))
       for b in (BackendName.VLLM_SYNC, BackendName.VLLM_ASYNC, BackendName.VLLM_SERVE)},
}
