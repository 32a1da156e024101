#!/usr/bin/env bash
# The GPU checks of the training loop, in one command for a session that has a GPU:
#
#   benchmarks/gpu_check.sh            (from the repository root; writes under ${OUT:-/tmp/gpu_check})
#
# (a) benchmarks/train_step.py --device cuda --no-save, if that script exists;
# (b) with 2+ GPUs: 1 GPU vs 2 GPUs under torchrun (NCCL), DDP on tiny-llama and FSDP2 on the MoE
#     tiny-v2-lite, same seed and global batch: per-step loss and gradient norm must agree;
#     with 1 GPU: the same runs on the GPU vs on the CPU (fp32 both, so the numbers can agree);
# (c) a short summary (also in $OUT/gpu_check/summary.txt); exit status 1 if a check failed.
#
# The corpus and model directories are built here the way tests/training_data.py builds them
# (a 512-token BPE tokenizer and a corpus from a few stdlib packages): nothing is downloaded.
set -u
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
  note "parity: no GPU (nvidia-smi lists none), skipped"; exit $STATUS
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
  note "parity: building the test corpus FAILED"; tail -n 30 "$WORK/data.log" | tee -a "$SUMMARY"; exit 1
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
echo
echo "==== summary ($SUMMARY) ===="
cat "$SUMMARY"
[ "$STATUS" -eq 0 ] && echo "ALL CHECKS PASSED" || echo "SOME CHECK FAILED"
exit $STATUS
