"""Lay out the qwen2 and gemma3 models in the device's nnbench cache from carried pieces.

The GGUF files come in 48 MiB pieces (a call carries at most 64 MiB); the tokenizer, config and
marker files come from the CPU machine's conversion (``files.tar.xz``), because the device's
transformers 5.17 builds wrong tokenizers from these GGUFs (shared/notes/model-weights.md). Only
the weights are dequantized here. The directory's content hash is checked against the CPU's.
The pieces are made on the CPU by ``bash scripts/gpu_model_pieces.sh`` (into .gpukit/models/).
    python3 scripts/gpu_models.py /tmp/kit/models
"""

import hashlib
import json
import sys
import tarfile
from pathlib import Path

from nnbench.provision import MARKER, _content_hash, cache_root, save_dequantized

MODELS = {"gemma.gguf": "gemma-3-270m", "qwen05.gguf": "qwen2.5-coder-0.5b-instruct",
          "qwen15.gguf": "qwen2.5-coder-1.5b-instruct"}


def main(pieces: Path) -> None:
    import transformers

    print(f"dequantizing with transformers {transformers.__version__} from {Path(transformers.__file__).parent}")
    with tarfile.open(pieces / "files.tar.xz") as files:
        files.extractall(pieces / "files")
    sum_file = pieces / "files" / "gguf.sha256"
    lines = sum_file.read_text().split("\n") if sum_file.exists() else []
    sums = {stem: digest for digest, stem in (line.split() for line in lines if line)}
    for stem, name in MODELS.items():
        parts = sorted(pieces.glob(f"{stem}.[0-9]*"))
        target = cache_root() / "models" / name
        if (target / MARKER).exists():  # laid out by an earlier call on this machine
            print(f"{name}: already in the cache")
            continue
        if not parts:
            print(f"{name}: no pieces carried, skipped")
            continue
        whole = pieces / f"{stem}"
        digest = hashlib.sha256()
        with whole.open("wb") as out:
            for part in parts:
                data = part.read_bytes()
                digest.update(data)
                out.write(data)
        if digest.hexdigest() != sums.get(stem, digest.hexdigest()):
            raise SystemExit(f"{name}: the {len(parts)} carried pieces of {stem} reassemble to sha256 "
                             f"{digest.hexdigest()[:16]}, not the CPU's {sums[stem][:16]}: a piece is missing or damaged")
        print(f"{name}: {len(parts)} pieces, sha256 {digest.hexdigest()[:16]} "
              f"({'checked against the CPU' if stem in sums else 'no CPU sum carried'})")
        save_dequantized(whole, target)
        for carried in (pieces / "files" / name).iterdir():
            (target / carried.name).write_bytes(carried.read_bytes())
        marker = json.loads((target / MARKER).read_text())
        here = _content_hash(target)
        print(f"{name}: {len(parts)} pieces, content hash here {here}, on the CPU {marker['content_hash']}")
        if here != marker["content_hash"]:
            marker["content_hash"] = here
            (target / MARKER).write_text(json.dumps(marker, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
