#!/usr/bin/env bash
# The tiny run: DeepSeek-Coder's whole recipe at toy scale on 2 CPU cores, in about 25 minutes.
#
#   Python's standard library  -> dscoder tokenizer train   (byte-level BPE, 4096 tokens)
#                              -> dscoder data build        (repository documents, FIM 50% PSM, shards)
#   a tiny DeepSeek-V2 (MLA + DeepSeekMoE, ~5M parameters)
#                              -> dscoder train pretrain    (V2 cosine schedule, about 20 minutes)
#                              -> dscoder train extend      (1024 -> 4096 tokens, linear RoPE scaling)
#                              -> dscoder serve             (answers a completion over HTTP)
#
# Usage: scripts/tiny.sh [WORKDIR]   (default: ./tiny-run). STEPS=N overrides the pretraining
# steps (STEPS=20 for a smoke test of the whole chain). Every stage resumes or reuses its output
# when run again. The numbers it prints are recorded in benchmarks/RESULTS.md.
set -euo pipefail

WORK=${1:-tiny-run}
STEPS=${STEPS:-900}
EXTEND_STEPS=${EXTEND_STEPS:-40}
PORT=${PORT:-8765}
mkdir -p "$WORK"
PY=${PYTHON:-python3}
STDLIB=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')

echo "== 0. repositories: every package and every top-level module of $STDLIB is one"
if [ ! -d "$WORK/src" ]; then
    mkdir -p "$WORK/src.tmp"
    for path in "$STDLIB"/*; do
        name=$(basename "$path")
        case "$name" in test|idlelib|site-packages|dist-packages|__pycache__|config-*|lib2to3) continue ;; esac
        if [ -d "$path" ] && [ ! -L "$path" ]; then
            cp -r "$path" "$WORK/src.tmp/$name"
        elif [ "${name%.py}" != "$name" ] && [ -f "$path" ] && [ ! -L "$path" ]; then
            mkdir -p "$WORK/src.tmp/${name%.py}" && cp "$path" "$WORK/src.tmp/${name%.py}/"
        fi
    done
    mv "$WORK/src.tmp" "$WORK/src"
fi

echo "== 1. tokenizer: byte-level BPE, 4096 tokens"
if [ ! -f "$WORK/tokenizer/tokenizer.json" ]; then
    dscoder tokenizer train "$WORK/src" --vocab-size 4096 --out "$WORK/tokenizer"
fi

echo "== 2. corpus: repository documents (files in import order), FIM on 50% (PSM), 15% of repositories held out"
dscoder data build "$WORK/src" --split --out "$WORK/corpus" --tokenizer "$WORK/tokenizer/tokenizer.json" \
    --seq-len 1024 --shard-sequences 1024 --val-fraction 0.15 --no-decontaminate

echo "== 3. model: a tiny DeepSeek-V2 (MLA attention, 16 routed experts + 1 shared, 2 active)"
mkdir -p "$WORK/model"
cp "$WORK/tokenizer/tokenizer.json" "$WORK/tokenizer/tokenizer_config.json" "$WORK/model/"
$PY - "$WORK" <<'PY'
import json, sys
from pathlib import Path
from dscoder.model.config import ModelConfig
from dscoder.tokenizer.tokenizer import Tokenizer
work = Path(sys.argv[1])
tok = Tokenizer.load(work / "tokenizer" / "tokenizer.json")
cfg = ModelConfig(arch="deepseek_v2", vocab_size=tok.vocab_size, hidden_size=256, intermediate_size=768,
                  num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=1024, rope_theta=10000.0,
                  bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, q_lora_rank=None, kv_lora_rank=64,
                  qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=16, n_shared_experts=1,
                  num_experts_per_tok=2, moe_intermediate_size=192, first_k_dense_replace=1,
                  aux_loss_alpha=0.001, norm_topk_prob=False)
hf = cfg.to_hf()
hf["initializer_range"] = 0.02
(work / "model" / "config.json").write_text(json.dumps(hf, indent=1))
total, active = cfg.param_counts()
print(f"parameters: {total / 1e6:.2f}M total, {active / 1e6:.2f}M active per token")
PY

echo "== 4. pretrain: $STEPS steps of 4 x 1024 tokens"
dscoder train pretrain --model "$WORK/model" --scratch --data "$WORK/corpus" --out "$WORK/pretrain" \
    --recipe tiny --set steps="$STEPS" --set eval_every=$(( STEPS / 7 > 0 ? STEPS / 7 : 1 )) \
    --set save_every=$(( STEPS / 2 > 0 ? STEPS / 2 : 1 )) --resume
LAST=$(ls -d "$WORK"/pretrain/checkpoints/step-* | sort | tail -1)

echo "== 5. extend: 1024 -> 4096 tokens (linear RoPE factor 4), $EXTEND_STEPS steps at the final LR"
dscoder train extend --model "$LAST" --data "$WORK/corpus" --out "$WORK/extend" --recipe extend-tiny \
    --set steps="$EXTEND_STEPS" --resume
EXTENDED=$(ls -d "$WORK"/extend/checkpoints/step-* | sort | tail -1)

echo "== 6. serve: the extended model answers over HTTP"
dscoder serve --model "$EXTENDED" --host 127.0.0.1 --port "$PORT" > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
    sleep 1
done
curl -sf "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model": "'"$(basename "$EXTENDED")"'", "prompt": "import os\n\n\ndef read_lines(path):\n", "max_tokens": 48, "temperature": 0}' \
    | $PY -c 'import json, sys; r = json.load(sys.stdin); print("completion:", repr(r["choices"][0]["text"]))'

echo "== results"
$PY - "$WORK" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
rows = [json.loads(l) for l in (work / "pretrain" / "metrics.jsonl").read_text().splitlines() if l.strip()]
first = rows[0]
last_val = [r for r in rows if "val_loss" in r][-1]
speed = sorted(r["tokens_per_s"] for r in rows if "tokens_per_s" in r)
print(f"unigram baseline loss {first['unigram_loss']:.3f}; untrained val loss {first['val_loss']:.3f}, "
      f"FIM exact match {first.get('fim_exact_match', 0):.3f} ({first.get('fim_examples', 0)} documents)")
print(f"after {last_val['step']} steps ({last_val['tokens'] / 1e6:.1f}M tokens): val loss {last_val['val_loss']:.3f}, "
      f"{last_val.get('val_bpb', float('nan')):.3f} bits/byte, FIM exact match {last_val.get('fim_exact_match', 0):.3f}")
print(f"training speed: median {speed[len(speed) // 2]:,.0f} tokens/s (range {speed[0]:,.0f}-{speed[-1]:,.0f})")
ext = json.loads((work / "extend" / "extension.json").read_text())
for label in ("before", "after"):
    print(f"loss by position {label} extension: " + ", ".join(f"{p['to']}:{p['loss']:.2f}" for p in ext[label]))
print(f"curves: {work}/pretrain/curves.png {work}/extend/curves.png")
PY
