#!/usr/bin/env bash
# The GPU checks, in one command for a session that has a GPU:
#
#   benchmarks/gpu_check.sh [infer|train|all]   (from the repository root; default all; writes under
#                                               ${OUT:-/tmp/gpu_check})
#
# infer (inference on one GPU, under 10 minutes; every step has its own time limit):
# (i1) the test suite's CUDA cases: the tests that take the `device` fixture (tests/conftest.py),
#      run with -k cuda: greedy decoding against transformers on the GPU (tiny presets, the
#      embedded model) first, reported on their own line, then the rest;
# (i2) benchmarks/device_speed.py --device cuda --dtype bf16: prefill and decode tok/s of the
#      embedded model and of a random-weight DeepSeek-Coder-1.3B shape, ours beside transformers;
# (i3) benchmarks/serve.py --device cuda --dtype bf16: dscoder serve's throughput at 1, 16 and 64
#      concurrent clients.
# Each python piece also runs on the CPU (--device cpu): DEVICE=cpu benchmarks/gpu_check.sh infer runs
# the same steps there, the models shrunk and the clients fewer, to check the script without a GPU.
#
# train (the training loop):
# (a) benchmarks/train_step.py --device cuda --no-save, if that script exists;
# (b) with 2+ GPUs: 1 GPU vs 2 GPUs under torchrun (NCCL), DDP on tiny-llama and FSDP2 on the MoE
#     tiny-v2-lite, same seed and global batch: per-step loss and gradient norm must agree;
#     with 1 GPU: the same runs on the GPU vs on the CPU (fp32 both, so the numbers can agree);
# (c) a short summary (also in $OUT/gpu_check/summary.txt); exit status 1 if a check failed.
#
# The corpus and model directories are built here the way tests/training_data.py builds them
# (a 512-token BPE tokenizer and a corpus from a few stdlib packages): nothing is downloaded.
set -u
WHAT=${1:-all}
case "$WHAT" in infer|train|all) ;; *) echo "usage: $0 [infer|train|all]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
ROOT=${OUT:-/tmp/gpu_check}
WORK="$ROOT/gpu_check"
rm -rf "$WORK" && mkdir -p "$WORK"
SUMMARY="$WORK/summary.txt"
: > "$SUMMARY"
STATUS=0
note() { echo "$*" | tee -a "$SUMMARY"; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

GPUS=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' )
note "gpus: $GPUS; torch $(python -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1)"

finish() {
  echo
  echo "==== summary ($SUMMARY) ===="
  cat "$SUMMARY"
  [ "$STATUS" -eq 0 ] && echo "ALL CHECKS PASSED" || echo "SOME CHECK FAILED"
  exit $STATUS
}

step() {  # label seconds log command...: run one check under its time limit, note ok or FAILED with the log's tail
  local label=$1 limit=$2 log=$3; shift 3
  local t0=$SECONDS code
  timeout "$limit" "$@" > "$log" 2>&1
  code=$?
  if [ "$code" -eq 0 ]; then
    note "$label: ok ($((SECONDS - t0)) s)"
    return 0
  fi
  STATUS=1
  [ "$code" -eq 124 ] && note "$label: FAILED (over its $limit s)" || note "$label: FAILED (exit $code)"
  tail -n 30 "$log" | sed 's/^/  /' | tee -a "$SUMMARY"
  return 1
}

# ---------------------------------------------------------------------------------------- infer
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then  # a check of this script without a GPU: CPU-sized runs, fp32
  DTYPE=fp32 SPEED=(--layers 2 --prompt 64 --new 16 --repeat 2) LEVELS=(1 4) LIMIT=900
else
  DTYPE=bf16 SPEED=() LEVELS=(1 16 64) LIMIT=0
fi
limit() { [ "$LIMIT" -gt 0 ] && echo "$LIMIT" || echo "$1"; }
if [ "$WHAT" != train ]; then
  if [ "$GPUS" -lt 1 ] && [ "$DEVICE" != cpu ]; then
    note "infer: no GPU (nvidia-smi lists none), skipped"
  else
    # the test files whose tests take the device fixture (their CUDA cases are named [cuda...])
    mapfile -t DEVICE_TESTS < <(grep -rlE "def test_[A-Za-z0-9_]+\([^)]*\bdevice\b" tests --include='test_*.py' | sort)
    PARITY="$DEVICE and transformers"  # the greedy decodes compared with transformers' own model
    step "greedy parity with transformers on $DEVICE (pytest -k '$PARITY')" "$(limit 240)" "$WORK/parity.log" \
      python -m pytest -q -p no:cacheprovider -rs -k "$PARITY" "${DEVICE_TESTS[@]}" \
      && tail -n 3 "$WORK/parity.log" | sed 's/^/  /' | tee -a "$SUMMARY"
    step "test suite, $DEVICE cases (pytest -k $DEVICE, ${#DEVICE_TESTS[@]} files)" "$(limit 240)" \
      "$WORK/tests_device.log" \
      python -m pytest -q -p no:cacheprovider -rs -k "$DEVICE and not ($PARITY)" "${DEVICE_TESTS[@]}" \
      && tail -n 3 "$WORK/tests_device.log" | sed 's/^/  /' | tee -a "$SUMMARY"
    step "prefill/decode tok/s, $DTYPE, ours vs transformers" "$(limit 180)" "$WORK/device_speed.log" \
      python benchmarks/device_speed.py --device "$DEVICE" --dtype "$DTYPE" "${SPEED[@]}" --no-save \
      && grep '^| ' "$WORK/device_speed.log" | tail -n 5 | sed 's/^/  /' | tee -a "$SUMMARY"
    step "serve throughput at ${LEVELS[*]} clients, $DTYPE" "$(limit 180)" "$WORK/serve.log" \
      python benchmarks/serve.py --only ours-fp32 --levels "${LEVELS[@]}" --device "$DEVICE" --dtype "$DTYPE" \
      --no-save \
      && grep '^| ours' "$WORK/serve.log" | sed 's/^/  /' | tee -a "$SUMMARY"
  fi
  [ "$WHAT" = infer ] && finish
fi

# ---------------------------------------------------------------------------------------- (a)
if [ -f benchmarks/train_step.py ]; then
  if timeout 300 python benchmarks/train_step.py --device cuda --no-save > "$WORK/train_step.log" 2>&1; then
    note "train_step: ok"; tail -n 15 "$WORK/train_step.log" | sed 's/^/  /' | tee -a "$SUMMARY"
  else
    STATUS=1; note "train_step: FAILED (exit $?)"; tail -n 30 "$WORK/train_step.log" | sed 's/^/  /' | tee -a "$SUMMARY"
  fi
else
  note "train_step: benchmarks/train_step.py not present, skipped"
fi

# ---------------------------------------------------------------------------------------- (b)
if [ "$GPUS" -lt 1 ]; then
  note "parity: no GPU (nvidia-smi lists none), skipped"; finish
fi
if ! timeout 300 python - "$WORK/data" > "$WORK/data.log" 2>&1 <<'EOF'
import shutil, sys, sysconfig
from pathlib import Path
sys.path.insert(0, "tests")
from training_data import PACKAGES, BuildConfig, build, model_dir, train_tokenizer
root = Path(sys.argv[1])
src = root / "stdlib"
stdlib = Path(sysconfig.get_paths()["stdlib"])
for name in PACKAGES:
    shutil.copytree(stdlib / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "test*"))
train_tokenizer([src], 512, root / "tok", show_progress=False)
build(BuildConfig(sources=[str(src)], out=str(root / "corpus"), tokenizer=str(root / "tok" / "tokenizer.json"),
                  split=True, seq_len=64, shard_sequences=256, val_fraction=0.2, decontaminate=False, workers=1),
      progress=None)
model_dir(root / "llama", "tiny-llama", root / "tok")
model_dir(root / "v2", "tiny-v2-lite", root / "tok")
EOF
then
  STATUS=1; note "parity: building the test corpus FAILED"; tail -n 30 "$WORK/data.log" | tee -a "$SUMMARY"; finish
fi

SETS=(-s seq_len=64 -s global_batch=4 -s micro_batch=1 -s steps=6 -s lr=3e-3 -s warmup_steps=2
      -s warmup_max_fraction=0.5 -s schedule=v2-cosine -s eval_every=3 -s eval_rows=8 -s fim_eval=2
      -s save_every=0 -s precision=fp32)
train() {  # name model out device nproc [parallel]
  local name=$1 model=$2 out=$3 device=$4 nproc=$5 parallel=${6:-}
  local launch=(python)
  [ "$nproc" -gt 1 ] && launch=(python -m torch.distributed.run --standalone --nproc-per-node "$nproc")
  local extra=()
  [ -n "$parallel" ] && extra=(-s "parallel=$parallel")
  local t0=$SECONDS
  if timeout 300 "${launch[@]}" -m dscoder.cli train pretrain --model "$WORK/data/$model" --scratch \
       --data "$WORK/data/corpus" --out "$WORK/$out" "${SETS[@]}" -s "device=$device" "${extra[@]}" \
       --no-progress > "$WORK/$out.log" 2>&1; then
    note "  run $name: ok ($((SECONDS - t0)) s)"
  else
    STATUS=1; note "  run $name: FAILED"; tail -n 30 "$WORK/$out.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    return 1
  fi
}
compare() {  # label reference candidate rel_tolerance
  python - "$WORK/$2" "$WORK/$3" "$4" "$1" <<'EOF' | tee -a "$SUMMARY"
import json, sys
a, b, tol, label = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
read = lambda d: {r["step"]: r for r in map(json.loads, open(f"{d}/metrics.jsonl")) if r.get("step")}
A, B = read(a), read(b)
worst = {k: 0.0 for k in ("loss", "grad_norm", "val_loss")}
for step in A:
    for k in worst:
        if k in A[step]:
            worst[k] = max(worst[k], abs(B[step][k] - A[step][k]) / max(abs(A[step][k]), 1e-12))
ok = set(A) == set(B) and all(v <= tol for v in worst.values())
print(f"  {label}: {'ok' if ok else 'MISMATCH'} over {len(A)} steps; max relative difference " +
      ", ".join(f"{k} {v:.2e}" for k, v in worst.items()) + f" (tolerance {tol:g}); "
      f"last loss {A[max(A)]['loss']:.6f} vs {B[max(B)]['loss']:.6f}")
sys.exit(0 if ok else 1)
EOF
  [ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
}

if [ "$GPUS" -ge 2 ]; then
  note "parity: 1 GPU vs 2 GPUs (torchrun, NCCL)"
  for case in "llama ddp" "v2 fsdp" "v2 ddp"; do
    set -- $case
    [ -d "$WORK/one-$1" ] || train "$1 1 GPU" "$1" "one-$1" cuda 1 || continue
    train "$1 2 GPUs $2" "$1" "two-$1-$2" cuda 2 "$2" && compare "$1 $2 2 GPUs vs 1" "one-$1" "two-$1-$2" 1e-4
  done
else
  note "parity: 1 GPU vs CPU (fp32 both; only one GPU)"
  for model in llama v2; do
    train "$model cpu" "$model" "cpu-$model" cpu 1 && train "$model cuda" "$model" "gpu-$model" cuda 1 \
      && compare "$model cuda vs cpu" "cpu-$model" "gpu-$model" 1e-3
  done
fi

# ---------------------------------------------------------------------------------------- (c)
finish
