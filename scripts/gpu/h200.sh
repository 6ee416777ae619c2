#!/usr/bin/env bash
# The one command that measures the WebGPU engine on a lent GPU machine (the H200: no Node, python3 with torch),
# side by side with PyTorch bf16 on CUDA, and writes every log to $OUT.
#
# Prepare here (2-core machine, no GPU), from the project root:
#   bash ../shared/gpu/pack.sh        # .gpucarry/: Node (xz), the Vulkan/GL loader .debs, prologue.sh (~27 MiB)
#   node scripts/gpu/bundle.mjs       # .gpurun/: the three benches bundled, Dawn's loader + dawn.node.xz (~16 MiB)
# Then one call of the device tool's `run`:
#   command: "bash scripts/gpu/h200.sh"   carry: [".gpucarry", ".gpurun"]   timeout_s: 480
# The working tree travels too (~2 MiB tracked); all of it together must stay under the 64 MiB carry limit.
#
# What it runs, each part under its own `timeout` (a failing or hanging part is logged and the next one runs;
# all parts together stop by H200_BUDGET seconds, default 420, leaving the call's 480 s a margin):
#   env.log              nvidia-smi -L and the driver, Node, the Vulkan driver files
#   kernels.log/.jsonl   bench/webgpu-kernels.ts: the adapter (f16, subgroups, subgroup matrix configs), then
#                        GEMM / conv fwd, dx, dw / BatchNorm at RegNetY-200MF/400MF shapes, batch 64 and 256,
#                        f32 and f16, in TFLOP/s and GB/s; no kernel starts after 120 s        (limit 150 s)
#   train-200mf.log      bench/train.ts --backends webgpu --torch cuda: the engine's f32 and mixed rows (WebGpuStepper
#                        with the SwAV program, bench/webgpu-engine.ts) and PyTorch bf16 on CUDA, RegNetY-200MF,
#                        crops 2x224 (SwAV's minimum of two views, one resolution: the "single-crop" case)  (110 s)
#   train-400mf.log      the same for RegNetY-400MF, SwAV multi-crop 2x224 + 6x96                        (130 s)
#   curves.log/.json     bench/webgpu-curves.ts: mixed against f32 loss curves over 600 steps of the demo's tiny
#                        model and crops on pattern images (same weights and batches), and f32 on other
#                        batches for the spread data order makes                                      (90 s)
#   torch.log            only if a train bench printed no PyTorch row (Node failed early): PyTorch alone
#   summary.log          each part's exit status and seconds
# Expected on the H200 (not yet run there): prologue ~5 s, kernels ~50-100 s (about 115 timings of ~0.15 s plus
# compiles), each train bench ~30-60 s (PyTorch import, 5 warm-up steps with cuDNN autotuning, 10 timed steps),
# the curves ~20-60 s (three runs of 600 small steps, crops drawn by tfjs on the CPU):
# about 3-4 minutes of command time (7 at most), ~5-6 minutes of device time with the machine's start and the
# ~42 MiB transfer, which leaves room in a task's 15 minutes for one rerun.
#
# Options: --quick  tiny sizes (lavapipe / a CPU-only check that every part runs; its figures mean nothing)
#          --local  no prologue (this machine has Node and a Vulkan loader); Node still comes from .gpucarry
# Environment: OUT (default /tmp/wildstream-h200), PYTHON (default python3), BATCH (default 256),
#              STEPS (default 10), H200_BUDGET (default 420)
set -u
quick=0
local=0
for a in "$@"; do
  case $a in
    --quick) quick=1 ;;
    --local) local=1 ;;
    *) echo "h200.sh: unknown option $a (--quick, --local)" >&2; exit 2 ;;
  esac
done
# Without the carried folders nothing can run: say so at once rather than spend device time.
for f in .gpurun/train.mjs .gpurun/webgpu-kernels.mjs .gpurun/webgpu-curves.mjs .gpurun/dawn.node.xz; do
  [ -f "$f" ] || { echo "h200.sh: $f missing: run node scripts/gpu/bundle.mjs here and carry .gpurun" >&2; exit 2; }
done
[ "$local" = 1 ] || [ -f .gpucarry/prologue.sh ] ||
  { echo 'h200.sh: .gpucarry/prologue.sh missing: run bash ../shared/gpu/pack.sh here and carry .gpucarry' >&2; exit 2; }
OUT=${OUT:-/tmp/wildstream-h200}
PYTHON=${PYTHON:-python3}
BATCH=${BATCH:-256}
STEPS=${STEPS:-10}
mkdir -p "$OUT"
t_start=$(date +%s)
deadline=$((t_start + ${H200_BUDGET:-420}))
: >"$OUT/summary.log"

# part NAME LIMIT CMD...: runs CMD with its output in $OUT/NAME.log, under min(LIMIT, time left) seconds.
part() {
  local name=$1 limit=$2 left
  shift 2
  left=$((deadline - $(date +%s)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    echo "$name: skipped, ${left}s left of the budget" | tee -a "$OUT/summary.log"
    return
  fi
  local t0=$(date +%s) rc cmd="$*"
  echo "== $name (limit ${limit}s): ${cmd:0:200}"
  timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  local line="$name: exit $rc after $(($(date +%s) - t0))s"
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && line="$line (timed out)"
  echo "$line" | tee -a "$OUT/summary.log"
  tail -n 40 "$OUT/$name.log"
}

# Node and the Vulkan loader (prologue.sh unpacks the .debs over / and Node into /tmp/node-bin).
if [ "$local" = 1 ]; then
  if [ -f .gpucarry/node.xz ]; then
    mkdir -p "$OUT/node-bin"
    xz -dc .gpucarry/node.xz >"$OUT/node-bin/node" && chmod +x "$OUT/node-bin/node" && export PATH="$OUT/node-bin:$PATH"
  fi
else
  # shellcheck disable=SC1091
  . .gpucarry/prologue.sh
fi
# Dawn's binary, carried compressed by bundle.mjs, goes where the webgpu loader looks for it.
dawn=.gpurun/node_modules/webgpu/dist/linux-x64/dawn.node
if [ ! -s "$dawn" ]; then
  mkdir -p "$(dirname "$dawn")" && xz -dc .gpurun/dawn.node.xz >"$dawn"
fi
# The NVIDIA driver's Vulkan manifest lives under its read-only mount there; point the loader at it when no
# manifest is in the standard places.
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv_icd" ] &&
  ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=$nv_icd
fi

env_report() {
  date -u
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  else
    echo 'nvidia-smi: not found (no NVIDIA GPU here)'
  fi
  echo "bundle: $(cat .gpurun/BUILD 2>/dev/null || echo 'no BUILD stamp')"
  echo "node $(node --version 2>&1)"
  echo "python: $($PYTHON -c 'import sys, torch; print(sys.executable, torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null
  ldconfig -p | grep -E 'libvulkan|libEGL_nvidia' || echo 'no libvulkan in ldconfig'
  nproc
}
part env 30 bash -c "$(declare -f env_report); PYTHON='$PYTHON' env_report"

if [ "$quick" = 1 ]; then
  kargs=(--quick)
  train200=(--batch 2 --steps 1 --crops 2x32)
  train400=(--batch 2 --steps 1 --crops 2x32,2x16)
  curves=(--steps 4 --log-every 2)
  curves_s=300 # lavapipe compiles each of its three runs' kernels cold, ~40 s or more apiece
  train_s=420  # and a whole RegNetY's pipelines, mixed and f32, take minutes there (110 s timed out)
  [ -z "${H200_BUDGET:-}" ] && deadline=$((t_start + 1500))
else
  kargs=(--budget-s 120 --target-ms 150) # no kernel starts after 120 s: the part ends well inside its 150 s
  train200=(--batch "$BATCH" --steps "$STEPS" --crops 2x224)
  train400=(--batch "$BATCH" --steps "$STEPS" --crops 2x224,6x96)
  curves=(--steps 600 --log-every 50)
  curves_s=90
  train_s=
fi
part kernels 150 node .gpurun/webgpu-kernels.mjs "${kargs[@]}" --json "$OUT/kernels.jsonl"
# mixed first: the goals are mixed-precision figures, and a part that runs out of time keeps its first row.
common=(--backends webgpu --precisions mixed,f32 --torch cuda --python "$PYTHON")
part train-200mf "${train_s:-110}" node .gpurun/train.mjs --models regnety_200mf "${train200[@]}" "${common[@]}"
part train-400mf "${train_s:-130}" node .gpurun/train.mjs --models regnety_400mf "${train400[@]}" "${common[@]}"
part curves "$curves_s" node .gpurun/webgpu-curves.mjs "${curves[@]}" --json "$OUT/curves.json"

# PyTorch alone, for a model whose train bench printed no PyTorch row (Node or the bundle failed before it).
torch_alone() {
  local model=$1 crops=$2 batch=$3 steps=$4
  echo "== $model $crops batch $batch"
  $PYTHON .gpurun/torch_swav_train.py "$model" "$batch" "$steps" "$(nproc)" "$crops" --device cuda --dtype bf16 2>&1 | tail -3
}
# (bench/train.ts runs PyTorch first, so any "pytorch" line, a row or "unavailable", means it got that far.)
missing=()
grep -qs 'pytorch' "$OUT/train-200mf.log" || missing+=("regnety_200mf ${train200[5]} ${train200[1]} ${train200[3]}")
grep -qs 'pytorch' "$OUT/train-400mf.log" || missing+=("regnety_400mf ${train400[5]} ${train400[1]} ${train400[3]}")
if [ ${#missing[@]} -gt 0 ]; then
  part torch 90 bash -c "$(declare -f torch_alone); PYTHON='$PYTHON'; for m in $(printf "'%s' " "${missing[@]}"); do torch_alone \$m; done"
fi

echo "total: $(($(date +%s) - t_start))s" | tee -a "$OUT/summary.log"
rm -rf "$OUT/node-bin"
ls -la "$OUT"
