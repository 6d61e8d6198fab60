"""tools/scorecard_table.py, the proof's table: the judge's share and the stopped rate are rows, and each
run's judge accuracy is printed beside its figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from humanlike_tui.records import FIGURES

TOOL = Path(__file__).resolve().parents[2] / "tools" / "scorecard_table.py"


def tool():
    spec = importlib.util.spec_from_file_location("scorecard_table", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def card(run_id: str, adapter_judge: float, stopped: float, accuracy: float) -> dict:
    return {"run_id": run_id, "data_source": "held.jsonl", "rows": 40, "prompts": 40,
            "settings": {"seed": 0, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256},
            "base": {"judge_human_rate": 0.05, "stopped_rate": 0.8},
            "adapter": {"judge_human_rate": adapter_judge, "stopped_rate": stopped},
            "reference": {"chosen": {"judge_human_rate": 0.975}, "rejected": {"judge_human_rate": 0.025}},
            "judge": {"accuracy": accuracy, "train_answers": 1600, "heldout_answers": 400}, "samples": []}


def test_table_has_the_judge_and_stopped_rows(tmp_path, capsys):
    paths = []
    for c in (card("sft", 0.6, 0.7, 0.95), card("dpo", 0.85, 0.825, 0.9625)):
        path = tmp_path / f"{c['run_id']}.eval.json"
        path.write_text(json.dumps(c), encoding="utf-8")
        paths.append(str(path))
    tool().main(paths)
    out = capsys.readouterr().out
    labels = dict((k, label) for k, label, _ in FIGURES)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert rows[labels["judge_human_rate"]].split(" | ")[1:] == ["5.0%", "60.0%", "85.0%", "97.5%", "2.5% |"]
    assert rows[labels["stopped_rate"]].split(" | ")[1:4] == ["80.0%", "70.0%", "82.5%"]
    assert rows["judge's own accuracy (held-out training answers)"].split(" | ")[1:4] == ["95.0%", "95.0%", "96.2%"]
    assert "95.0% right on 400 held-out" in out


def test_checkpoint_curve_makes_a_scorable_run_of_each_checkpoint(home):
    """tools/checkpoint_curve.py: a checkpoint becomes a run of its own whose adapter is the checkpoint's
    weights and the run's tokenizer, with a manifest that loading accepts (it checks every file's sha256)."""
    import shutil

    from tiny_run import RUN_NAME, install_run

    from humanlike_tui.engine.evaluation.scoring import finished_adapter
    from humanlike_tui.engine.storage import files as F
    from humanlike_tui.engine.storage import runs as S

    run_dir = install_run(home)
    checkpoint = run_dir / "checkpoints" / "step-000002"
    checkpoint.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy2(run_dir / "adapter" / name, checkpoint / name)
    with open(checkpoint / "adapter_model.safetensors", "ab") as weights:
        weights.write(b"\0")  # other bytes than the final adapter's, as a checkpoint's weights would be
    (checkpoint / F.COMPLETE).write_text("{}", encoding="utf-8")

    spec = importlib.util.spec_from_file_location("checkpoint_curve", TOOL.parent / "checkpoint_curve.py")
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    name = curve.checkpoint_run(RUN_NAME, 2, checkpoint)

    assert name == f"{RUN_NAME}-at-2"
    copy = finished_adapter(name)
    assert copy.meta()["run_id"] == name and copy.meta()["steps"] == 2 and not copy.checkpoints()
    assert (copy.adapter_dir / "adapter_model.safetensors").read_bytes() == \
        (checkpoint / "adapter_model.safetensors").read_bytes()
    assert F.verify_manifest(copy.adapter_dir) is None
    assert F.verify_manifest(S.get_run(RUN_NAME).adapter_dir) is None  # the run itself is untouched
    assert curve.checkpoint_run(RUN_NAME, 2, checkpoint) == name  # a second call keeps the copy

    # A stopped run has checkpoints and no adapter yet: its checkpoint is scored all the same.
    stopped = install_run(home, "stopped-run")
    shutil.copytree(checkpoint, stopped / "checkpoints" / "step-000002")
    shutil.rmtree(stopped / "adapter")
    copy = finished_adapter(curve.checkpoint_run("stopped-run", 2, stopped / "checkpoints" / "step-000002"))
    assert F.verify_manifest(copy.adapter_dir) is None and (copy.adapter_dir / "tokenizer.json").is_file()
