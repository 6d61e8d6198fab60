"""The judge (engine/evaluation/judge.py): on hand-written rows whose chosen answers have clear human
features (contractions, emoji, a question back) and rejected ones the formal assistant's, it tells held-out
answers apart and calls a new human-like text human; it never sees a prompt; the answers file is whole."""

from __future__ import annotations

import json
import random

import pytest

from humanlike_tui.engine.evaluation import answers as A
from humanlike_tui.engine.evaluation import judge as J
from humanlike_tui.errors import InputError
from humanlike_tui.records import FIGURES, scorecard_caption, scorecard_rows

TOPICS = ["pizza", "hiking", "the beach", "old movies", "board games", "coffee", "rainy days", "jazz", "cats",
          "gardening", "road trips", "baking bread", "sci-fi books", "running", "karaoke", "camping"]
HUMAN = ["Oh man, {t}? I'm obsessed 😄 Honestly it's the best. What about you?",
         "Haha {t} is my jam! 🙌 Can't get enough, tbh. You into it too?",
         "Ugh, {t}... love it, hate it, y'know? 😅 Do you have a favorite?",
         "Ooh {t}! We did that last weekend and it was awesome 🎉 Ever tried it?"]
FORMAL = ["As an AI language model, I do not have personal preferences regarding {t}. However, it is widely "
          "regarded as an enjoyable activity.",
          "I am an artificial intelligence and cannot experience {t}. Nevertheless, many individuals find it "
          "beneficial for various reasons.",
          "{t} is a topic that can be approached from several perspectives. It is important to consider "
          "multiple factors before forming an opinion.",
          "I do not possess personal experiences. In general, {t} is considered to offer numerous benefits, "
          "including relaxation and social interaction."]


def pairs(n: int, seed: int = 0) -> list[J.Pair]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = rng.choice(TOPICS)
        out.append(J.Pair(rng.choice(HUMAN).format(t=t), rng.choice(FORMAL).format(t=t), f"prompt {i}"))
    return out


def test_the_judge_separates_human_answers_and_reports_its_accuracy():
    judge = J.train_judge(pairs(80))
    assert judge.accuracy >= 0.95  # measured on answers of held-out prompts, not the ones it learned from
    assert judge.heldout_answers >= 20 and judge.train_answers + judge.heldout_answers == 160
    human = "lol yeah, I'm totally into that 😂 what's yours?"
    formal = "As an AI, I do not have personal opinions. It is important to consider various perspectives."
    assert judge.human_probability([human])[0] > 0.5 > judge.human_probability([formal])[0]
    assert judge.human_rate([human, human, formal, formal]) == 0.5
    assert judge.human_rate([]) is None
    info = judge.describe()
    assert info["accuracy"] == judge.accuracy and "never the prompts" in info["trained_on"]


def test_the_judge_never_sees_the_prompts(monkeypatch):
    """What the classifier is fitted on and asked about: answers only (the pair's group never reaches it)."""
    seen: list[str] = []
    real = J._pipeline

    def spying(n):
        model = real(n)
        fit, proba = model.fit, model.predict_proba

        def spy_fit(texts, labels):
            seen.extend(texts)
            return fit(texts, labels)

        def spy_proba(texts):
            seen.extend(texts)
            return proba(texts)

        model.fit, model.predict_proba = spy_fit, spy_proba
        return model

    monkeypatch.setattr(J, "_pipeline", spying)
    data = [J.Pair(p.chosen, p.rejected, f"SECRET PROMPT {i}") for i, p in enumerate(pairs(20))]
    judge = J.train_judge(data)
    judge.human_probability(["hey there 😄"])
    assert seen and not any("SECRET" in text for text in seen)


def test_too_few_rows_or_huge_data():
    with pytest.raises(ValueError, match="at least 4"):
        J.train_judge(pairs(3))
    capped = J.train_judge(pairs(200), max_pairs=50)  # a sample, so 6,000 rows cost what 1,000 do
    assert capped.train_answers + capped.heldout_answers == 100
    assert len(J.sample_pairs(range(10), max_pairs=20)) == 10 and len(set(J.sample_pairs(range(100), max_pairs=20))) == 20
    long = "word " * 1000
    assert len(J._clip(long)) < J.HEAD_CHARS + J.TAIL_CHARS + 5


def test_split_keeps_a_prompts_rows_together():
    data = [J.Pair("a", "b", f"g{i % 5}") for i in range(20)]
    fit, held = J.split_pairs(data, 0.2, seed=0)
    assert fit and held and not {p.group for p in fit} & {p.group for p in held}
    one = [J.Pair("a", "b", "only") for _ in range(10)]  # one prompt: its rows are split instead
    fit, held = J.split_pairs(one, 0.2, seed=0)
    assert len(held) == 2 and len(fit) == 8


def test_the_table_prints_the_judge_with_its_accuracy():
    card = {"rows": 4, "base": {"judge_human_rate": 0.1}, "adapter": {"judge_human_rate": 0.75},
            "reference": {"chosen": {"judge_human_rate": 0.95}, "rejected": {"judge_human_rate": 0.05}},
            "judge": {"accuracy": 0.9625, "train_answers": 1600, "heldout_answers": 400}}
    row = next(r for r in scorecard_rows(card) if r[0].startswith("judged human-like"))
    assert row == ("judged human-like (judge 96% right)", "10.0%", "75.0%", "95.0%", "5.0%")
    assert "96.2% right on 400 held-out" in scorecard_caption(card) and "not a ground truth" in scorecard_caption(card)
    none = {**card, "judge": J.unavailable("no rejected answers")}
    assert scorecard_rows(none)[-1][0] == "judged human-like (no judge)"
    assert "judge: none (no rejected answers)" in scorecard_caption(none)
    assert FIGURES[-1][0] == "judge_human_rate"


def test_answers_file_is_written_whole_and_read_back(tmp_path, monkeypatch):
    path = tmp_path / "out" / "answers.jsonl"
    records = [A.answer_record("Hi?", "base", "Hello 👋", 3, True), A.answer_record("Hi?", "adapter", "hey", 200, False)]
    assert A.write_answers(path, records) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records and "👋" in lines[0]  # UTF-8, not \\u escapes
    assert A.read_answers(path) == records
    assert A.read_answers(tmp_path / "none.jsonl") == []

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)  # the rename never happens: the old file stays whole
    with pytest.raises(OSError):
        A.write_answers(path, records[:1])
    monkeypatch.undo()
    assert A.read_answers(path) == records and [p.name for p in path.parent.iterdir()] == ["answers.jsonl"]


def test_answers_path_is_checked_before_any_work(tmp_path):
    with pytest.raises(InputError, match="that is a folder"):
        A.check_answers_path(tmp_path)
    assert A.check_answers_path(tmp_path / "new" / "a.jsonl") == tmp_path / "new" / "a.jsonl"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        import os

        if os.access(locked, os.W_OK):  # root writes anywhere: nothing to check
            pytest.skip("running as root")
        with pytest.raises(InputError, match="cannot write"):
            A.check_answers_path(locked / "a.jsonl")
    finally:
        locked.chmod(0o700)
