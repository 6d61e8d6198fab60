"""`humanlike-tui eval` prints the whole scorecard from records.scorecard_rows, the same rows the
Adapters screen draws: every figure of records.FIGURES with base, adapter, data chosen and rejected."""

from __future__ import annotations

from humanlike_tui.commands import eval as eval_command
from humanlike_tui.records import FIGURES, scorecard_rows


class Card:
    def __init__(self, data: dict) -> None:
        self.data = data

    def to_dict(self) -> dict:
        return self.data


CARD = {"run_id": "warm", "base_model": "microsoft/phi-2", "rows": 50, "prompts": 48, "data_source": "builtin:sample",
        "settings": {"seed": 0, "max_new_tokens": 200}, "samples": [],
        "base": {"preference_accuracy": 0.42, "reward_accuracy": None, "mean_words": 80.0},
        "adapter": {"preference_accuracy": 0.875, "reward_accuracy": 0.8125, "mean_words": 40.0},
        "reference": {"chosen": {"mean_words": 35.0}, "rejected": {"mean_words": 120.0}}}


def test_rows_follow_figures():
    rows = scorecard_rows(CARD)
    assert [r[0] for r in rows] == [label for key, label, _ in FIGURES if key != "judge_human_rate"]  # no judge yet
    judged = scorecard_rows(CARD | {"judge": {"accuracy": 0.9}})
    assert [r[0] for r in judged][:-1] == [r[0] for r in rows] and judged[-1][0] == "judged human-like (judge 90% right)"
    labels = {key: label for key, label, _ in FIGURES}
    by_label = {r[0]: r[1:] for r in rows}
    assert by_label[labels["reward_accuracy"]] == ("—", "81.2%", "—", "—")
    assert by_label[labels["mean_words"]] == ("80.0", "40.0", "35.0", "120.0")


def test_eval_prints_every_figure(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    eval_command.render(Card(CARD | {"judge": {"accuracy": 0.9, "train_answers": 80, "heldout_answers": 20}}))
    out = capsys.readouterr().out
    for _, label, _ in FIGURES:
        assert label in out
    assert "data: chosen" in out and "data: rejected" in out and "48 prompts from builtin:sample" in out
