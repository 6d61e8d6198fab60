#!/usr/bin/env bash
# The real-model proof of docs/scorecard.md: SmolLM2-135M-Instruct (builtin:smollm2-135m) tuned with SFT, DPO,
# SFT-then-DPO, ORPO and SimPO on the Human-Like-DPO rows, each scored against the base on prompts never trained
# on, with answers long enough to end (384 new tokens: 97.6% of the data's chosen answers fit, 55.6% fit in 192).
# CPU only. Usage: tools/real_model_proof.sh [ROWS.jsonl] [OUT_DIR] [METHOD ...]   (default: every method)
# Each run is timed with /usr/bin/time -v (wall, CPU seconds, peak RSS) into OUT/RUN.time; every answer is kept
# in OUT/RUN.answers.jsonl and the scorecard in OUT/RUN.eval.json.
set -euo pipefail
ROWS=${1:-../shared/data/human_like_dpo.jsonl}
OUT=${2:-/tmp/hlt-proof}
shift $(( $# > 2 ? 2 : $# )) || true
METHODS=${*:-"sft dpo sftdpo orpo simpo"}
mkdir -p "$OUT"
export HUMANLIKE_TUI_HOME=${HUMANLIKE_TUI_HOME:-$OUT/home}
T=".venv/bin/humanlike-tui"
NEW_TOKENS=384
# Held-out prompts: 60 prompts (87 rows) chosen by a fixed seed; training never sees them.
[ -s "$OUT/heldout.jsonl" ] || .venv/bin/python - "$ROWS" "$OUT" <<'PY'
import json, random, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
prompts = sorted({r["prompt"] for r in rows})
random.Random(7).shuffle(prompts)
held = set(prompts[:60])
with open(f"{sys.argv[2]}/train.jsonl", "w", encoding="utf-8") as train, \
        open(f"{sys.argv[2]}/heldout.jsonl", "w", encoding="utf-8") as heldout:
    for r in rows:
        (heldout if r["prompt"] in held else train).write(json.dumps(r) + "\n")
PY
D="--set data.source=$OUT/train.jsonl --set generate.max_new_tokens=$NEW_TOKENS"
declare -A RECIPE=(
  [sft]="--set train.method=sft --set train.max_steps=16"
  [dpo]="--set train.method=dpo --set train.max_steps=24"
  [sftdpo]="--set train.method=sft+dpo --set train.max_steps=32 --set train.sft_steps=12"
  [orpo]="--set train.method=orpo --set train.max_steps=90 --set train.orpo_lambda=1.0"
  [simpo]="--set train.method=simpo --set train.max_steps=40 --set train.learning_rate=1e-4"
)
for m in $METHODS; do
  [ -d "$HUMANLIKE_TUI_HOME/data/runs/$m" ] && continue  # a finished run is kept; delete it to train again
  /usr/bin/time -v -o "$OUT/$m.time" $T train --preset smol-cpu $D ${RECIPE[$m]} --name "$m" --json | tail -1 \
    > "$OUT/$m.train.json"
done
for m in $METHODS; do
  [ -s "$OUT/$m.eval.json" ] && continue
  /usr/bin/time -v -o "$OUT/$m.eval.time" $T eval --adapter "$m" --data "$OUT/heldout.jsonl" --limit 40 \
    --max-new-tokens $NEW_TOKENS --answers "$OUT/$m.answers.jsonl" --json > "$OUT/$m.eval.json"
done
.venv/bin/python tools/scorecard_table.py $(for m in $METHODS; do echo "$OUT/$m.eval.json"; done)
