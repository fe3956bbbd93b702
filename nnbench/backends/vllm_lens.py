"""``vllm_lens``: a peer system on the GPU, vLLM's offline ``LLM`` with the vllm-lens plugin
(UKGovernmentBEIS/vllm-lens) over the same local directory nnsight's vLLM backends load.

vllm-lens registers itself as a vLLM general plugin (an entry point) and then runs in every vLLM
engine of the process: it forces eager mode and the V1 model runner. So it must never share a
process with nnsight's vLLM backends (their numbers would be eager-mode numbers, and its patched
``LLM.generate`` would sit under nnsight's): run it in its own process, with the plugin on the path
of that process only (``scripts/gpu_run.sh lens``). ``open`` refuses a vLLM on which the plugin did
not load, since every cell would then run unedited.

Cells: ``nnbench.cells.vlens`` and each methodology's module.
"""

from __future__ import annotations

import os
import threading

from nnbench.backends.base import BackendConfig, BackendDefaults, Concurrency, in_worker_thread
from nnbench.backends.engine import vllm_engine_args
from nnbench.backends.vllm_engine import baseline_kwargs, shutdown_llm
from nnbench.cells.registry import CellEntry
from nnbench.cells.vlens import LensLLM
from nnbench.families import HF_LAYOUTS
from nnbench.jobs import CellJob, CellOutput
from nnbench.provision import ensure_model


class VllmLensBackend(BackendDefaults):
    concurrency: Concurrency = "serialised"
    plain_engine = True

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.model: LensLLM | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
        if os.environ.get("VLLM_LENS_DISABLE"):
            raise RuntimeError("vllm_lens: VLLM_LENS_DISABLE is set, so the plugin would run nothing; unset it")
        import vllm_lens  # ImportError: refused with the install line (nnbench.backends)
        from transformers import AutoConfig
        from vllm import LLM, SamplingParams
        from vllm.plugins import load_general_plugins

        load_general_plugins()  # what vLLM does on engine creation; here so the check below sees it
        if LLM.generate.__name__ != "_patched_llm_generate":
            raise RuntimeError(f"vllm_lens: vllm-lens {vllm_lens.__version__} is importable but its vLLM plugin did not "
                               "load (no vllm.general_plugins entry point on the path?): every cell would run unedited")
        path = str(ensure_model(self.config.family, self.config.model).path)
        hf = AutoConfig.from_pretrained(path)
        layout = HF_LAYOUTS[self.config.family]  # vLLM's models keep HF's names for these two
        llm = LLM(model=path, **vllm_engine_args(self.config))
        self.model = LensLLM(llm, hf.vocab_size, hf.num_hidden_layers, layout.final_norm, layout.unembed,
                             SamplingParams, vllm_lens.SteeringVector, vllm_lens.Hook)

    def run(self, job: CellJob, entry: CellEntry) -> CellOutput:
        return entry.fn(self.model, job)

    def prepare(self, job: CellJob, entry: CellEntry) -> tuple[CellJob, CellEntry]:
        return job, entry

    async def submit(self, prepared: tuple[CellJob, CellEntry]) -> CellOutput:
        return await in_worker_thread(self._lock, self.run, *prepared)

    def run_baseline(self, job: CellJob) -> None:
        """The control run (same prompts, same readout hook, no edit): the overhead's denominator."""
        from nnbench.cells.control import control_vllm_lens

        control_vllm_lens(self._model(), job)

    def run_plain(self, job: CellJob) -> None:
        """vLLM's ``generate`` with no request extras: the engine's own speed (eager, as vllm-lens
        makes every engine)."""
        model = self._model()
        model.llm.generate(job.texts, model.sampling_params(**baseline_kwargs(job)), use_tqdm=False)

    def _model(self) -> LensLLM:
        if self.model is None:
            raise RuntimeError("vllm_lens: the backend is not open")
        return self.model

    def close(self) -> None:
        if self.model is not None:
            shutdown_llm(self.model.llm)
        self.model = None

