#!/usr/bin/env bash
# The real-model proof of docs/scorecard.md: SmolLM2-135M-Instruct (builtin:smollm2-135m) tuned with SFT, DPO
# and SFT-then-DPO on the Human-Like-DPO rows, each scored against the base on prompts never trained on.
# CPU only; about 1.5 hours on 2 cores. Usage: tools/real_model_proof.sh [ROWS.jsonl] [OUT_DIR]
set -euo pipefail
ROWS=${1:-../shared/data/human_like_dpo.jsonl}
OUT=${2:-/tmp/hlt-proof}
mkdir -p "$OUT"
export HUMANLIKE_TUI_HOME=${HUMANLIKE_TUI_HOME:-$OUT/home}
T=".venv/bin/humanlike-tui"
# Held-out prompts: 60 prompts (87 rows) chosen by a fixed seed; training never sees them.
.venv/bin/python - "$ROWS" "$OUT" <<'PY'
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
D="--set data.source=$OUT/train.jsonl"
$T train --preset smol-cpu $D --name dpo24 --json | tail -1
$T train --preset smol-cpu $D --set train.method=sft --set train.max_steps=16 --name sft16 --json | tail -1
$T train --preset smol-cpu $D --set train.method=sft+dpo --set train.max_steps=32 --set train.sft_steps=12 \
    --name sftdpo --json | tail -1
for run in dpo24 sft16 sftdpo; do
  $T eval --adapter $run --data "$OUT/heldout.jsonl" --limit 40 --max-new-tokens 192 --json > "$OUT/$run.eval.json"
done
.venv/bin/python tools/scorecard_table.py "$OUT"/sft16.eval.json "$OUT"/dpo24.eval.json "$OUT"/sftdpo.eval.json
