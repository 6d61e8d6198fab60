"""Score a run's checkpoints, to see a figure (the judge's share, preference accuracy, ...) against steps.

Usage: .venv/bin/python tools/checkpoint_curve.py RUN HELDOUT.jsonl OUT_DIR [--limit N] [--max-new-tokens N]

Each kept checkpoint of RUN (train.save_every, train.keep_checkpoints) becomes a run of its own, RUN-at-STEP,
whose adapter is that checkpoint's; `humanlike-tui eval` scores it against the base on HELDOUT exactly as the
proof does (tools/real_model_proof.sh), writing OUT_DIR/RUN-at-STEP.eval.json and .answers.jsonl. The table
printed at the end has one row per step. The copies are left in the library; delete them with
`humanlike-tui adapters delete RUN-at-STEP`."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

FIGURES = ["preference_accuracy", "stopped_rate", "question_rate", "emoji_rate", "ai_disclaimer_rate",
           "distinct_2", "judge_human_rate"]


def checkpoint_run(run_id: str, step: int, checkpoint: Path) -> str:
    """A copy of the run (config, meta, metrics) whose adapter folder holds the checkpoint's weights and the
    tokenizer the run trained with, written as training writes an adapter (with its sha256 manifest). Works
    for a stopped run too, which has checkpoints but no adapter yet."""
    from humanlike_tui.engine import models as M
    from humanlike_tui.engine.storage import files as F
    from humanlike_tui.engine.storage import runs as S

    run = S.get_run(run_id)
    name = f"{run_id}-at-{step}"
    target = run.run_dir.parent / name
    if target.exists():
        return name
    cfg = run.config()
    shutil.copytree(run.run_dir, target, ignore=shutil.ignore_patterns(
        "checkpoints", "adapter", "scorecard.json", "answers.jsonl", "run.lock"))
    with F.atomic_dir(target / "adapter", manifest=True) as tmp:
        for weights in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy2(checkpoint / weights, tmp / weights)
        M.load_tokenizer(cfg, M.resolve_model_path(cfg)).save_pretrained(tmp)
        (tmp / "base_model.txt").write_text(cfg.model.name + "\n", encoding="utf-8")
    S.Run(target).update_meta(run_id=name, adapter_dir=str(target / "adapter"), steps=step, status="finished")
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("heldout")
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--steps", type=int, nargs="*", help="only these checkpoints (default: every kept one)")
    args = parser.parse_args()
    from humanlike_tui.engine.storage import runs as S

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for step, path in S.get_run(args.run).checkpoints():
        if args.steps and step not in args.steps:
            continue
        name = checkpoint_run(args.run, step, path)
        card_path = args.out / f"{name}.eval.json"
        if not card_path.exists() or not card_path.stat().st_size:
            with open(card_path, "w", encoding="utf-8") as out:
                subprocess.run([str(Path(sys.executable).parent / "humanlike-tui"), "eval", "--adapter", name, "--data",
                                args.heldout, "--limit", str(args.limit), "--max-new-tokens", str(args.max_new_tokens),
                                "--answers", str(args.out / f"{name}.answers.jsonl"), "--json", "--quiet"],
                               stdout=out, check=True)
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if not rows:
            rows.append(["base (step 0)"] + [card["base"][k] for k in FIGURES])
        rows.append([f"step {step}"] + [card["adapter"][k] for k in FIGURES])
    print("| step | " + " | ".join(FIGURES) + " |")
    print("|---" * (len(FIGURES) + 1) + "|")
    for row in rows:
        print("| " + " | ".join([row[0]] + [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row[1:]]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
