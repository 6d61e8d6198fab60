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
