"""DPO and sft+dpo on the builtin tiny model (CPU): stop + resume replays the uninterrupted run, and the
scorecard shows the held-out preference accuracy rising above the base's after DPO and after SFT.
Also `humanlike-tui eval` end to end (--json names, --data, exit codes)."""

from __future__ import annotations

import json
import threading

import pytest

from humanlike_tui import cli
from humanlike_tui import events as E
from humanlike_tui.engine import evaluation as ev
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.training.schedule import check_resume_compatible
from humanlike_tui.engine.training.run import run_training
from humanlike_tui.errors import ConfigError, StoreError
from humanlike_tui import records
from humanlike_tui.engine.evaluation import scoring

# Held-out share raised from the preset's 0.1 so the accuracy is measured on ~30 rows, not 9.
# The trainer's own final evaluation is cut to the minimum: the scorecard measures instead.
EVIDENCE = {"data.eval_fraction": 0.25, "train.eval_every": 0, "train.sample_prompts": 0, "train.eval_max_rows": 2}


class Recorder:
    def __init__(self, stop_at: int | None = None):
        self.events: list[E.Event] = []
        self.stop = threading.Event()
        self.stop_at = stop_at

    def __call__(self, event):
        self.events.append(event)
        if isinstance(event, E.Step) and event.step == self.stop_at:
            self.stop.set()

    def steps(self):
        return [e for e in self.events if isinstance(e, E.Step)]


_uninterrupted: dict[str, list[E.Step]] = {}


def _resume_cfg(demo_cfg, method):
    return demo_cfg.replace(**{"train.method": method, "train.max_steps": 4, "train.sft_steps": 2,
                               "train.eval_every": 0, "train.sample_prompts": 0, "train.eval_max_rows": 2,
                               "lora.dropout": 0.1})


# Stopping inside DPO after SFT (3) covers both references; the other two cost a minute each and run under `slow`.
@pytest.mark.parametrize("method,stop_at", [pytest.param("dpo", 2, marks=pytest.mark.slow),
                                            pytest.param("sft+dpo", 2, marks=pytest.mark.slow), ("sft+dpo", 3)])
def test_stop_then_resume_matches_uninterrupted_run(demo_cfg, method, stop_at):
    """Stopping at the SFT -> DPO switch (2) and inside DPO (3) both resume onto the same curve:
    the DPO reference (base, or the SFT adapter) and the reference log-probs come back exactly."""
    cfg = _resume_cfg(demo_cfg, method)
    if method not in _uninterrupted:
        full = Recorder()
        run_training(cfg, full)
        _uninterrupted[method] = full.steps()
    full_steps = _uninterrupted[method]

    first = Recorder(stop_at=stop_at)
    res = run_training(cfg, first, first.stop)
    assert res.status == "stopped" and S.get_run(res.run_id).latest_checkpoint()[0] == stop_at
    second = Recorder()
    res2 = run_training(None, second, resume=res.run_id)
    assert res2.status == "finished"
    resumed = first.steps() + second.steps()
    assert [s.step for s in resumed] == [s.step for s in full_steps] == [1, 2, 3, 4]
    assert [s.phase for s in resumed] == [s.phase for s in full_steps]
    assert [s.loss for s in resumed] == pytest.approx([s.loss for s in full_steps], abs=1e-4)
    for a, b in zip(resumed, full_steps):
        if a.phase == "dpo":
            assert a.metrics["reward_margin"] == pytest.approx(b.metrics["reward_margin"], abs=1e-4)
            assert a.metrics["reward_accuracy"] == b.metrics["reward_accuracy"]


def test_resume_keeps_the_sft_to_dpo_switch(demo_cfg):
    """sft_steps = 0 means half of max_steps: extending the run must not move the switch silently."""
    old = demo_cfg.replace(**{"train.method": "sft+dpo", "train.max_steps": 10, "train.sft_steps": 0})
    with pytest.raises(ConfigError, match="train.sft_steps = 5"):
        check_resume_compatible(old, old.replace(**{"train.max_steps": 20}))
    check_resume_compatible(old, old.replace(**{"train.max_steps": 20, "train.sft_steps": 5}))  # allowed


def test_dpo_raises_heldout_preference_accuracy_and_eval_json(demo_cfg, capsys, tmp_path):
    cfg = demo_cfg.replace(**EVIDENCE, **{"train.method": "dpo", "train.max_steps": 6})
    steps = Recorder()
    res = run_training(cfg, steps)
    last = steps.steps()[-1].metrics
    assert last["reward_margin"] > 0 and last["reward_chosen"] > last["reward_rejected"]

    out_file = tmp_path / "answers.jsonl"
    code = cli.main(["eval", "--adapter", res.run_id, "--limit", "30", "--max-new-tokens", "4", "--json",
                     "--answers", str(out_file)])
    out = capsys.readouterr().out
    assert code == 0
    card = json.loads(out)  # exactly one object on stdout: progress went to stderr
    assert set(card) >= {"base", "adapter", "reference", "judge"}
    for side in ("base", "adapter"):
        assert set(card[side]) == set(records.LIKELIHOOD_KEYS) | set(records.STYLE_KEYS) | set(records.JUDGE_KEYS)
        assert 0 <= card[side]["judge_human_rate"] <= 1
    assert set(card["reference"]) == {"chosen", "rejected"}
    assert set(card["reference"]["chosen"]) == set(records.STYLE_KEYS) | set(records.JUDGE_KEYS)
    # The judge learned from the training rows' answers: it tells the held-out rows' answers apart too.
    judge = card["judge"]
    assert judge["accuracy"] >= 0.8 and judge["heldout_answers"] >= 10, judge
    assert card["reference"]["chosen"]["judge_human_rate"] > card["reference"]["rejected"]["judge_human_rate"]
    # Every generated answer, both sides, as JSON lines; the same kept beside the run's scorecard.json.
    answers = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert len(answers) == 2 * card["prompts"] and {a["side"] for a in answers} == {"base", "adapter"}
    assert all(set(a) == {"prompt", "side", "text", "tokens", "stopped", "judge_human"} for a in answers)
    assert all(0 <= a["tokens"] <= 4 and (a["stopped"] or a["tokens"] == 4) for a in answers)
    stopped = sum(a["stopped"] for a in answers if a["side"] == "adapter") / card["prompts"]
    assert stopped == pytest.approx(card["adapter"]["stopped_rate"])
    assert card["answers_file"] == "answers.jsonl" and ev.last_answers(res.run_id) == answers
    assert card["rows"] >= 20
    base, adapter = card["base"]["preference_accuracy"], card["adapter"]["preference_accuracy"]
    assert adapter >= base + 0.2, (base, adapter)
    assert card["adapter"]["preference_margin"] > card["base"]["preference_margin"]
    # The data itself: the human answers use emoji and ask back, the formal ones disclaim.
    chosen, rejected = card["reference"]["chosen"], card["reference"]["rejected"]
    assert chosen["emoji_rate"] > rejected["emoji_rate"]
    assert rejected["ai_disclaimer_rate"] > chosen["ai_disclaimer_rate"]
    assert chosen["stopped_rate"] is None and 0 <= card["adapter"]["stopped_rate"] <= 1
    assert ev.last_scorecard(res.run_id) == card  # kept in the run folder for the Adapters screen


def test_sft_raises_heldout_preference_accuracy_and_scores_a_file(demo_cfg, tmp_path):
    cfg = demo_cfg.replace(**EVIDENCE, **{"train.method": "sft", "train.max_steps": 8})
    res = run_training(cfg)
    seen: list[E.Event] = []
    card = ev.scorecard(res.run_id, limit=30, max_new_tokens=4, emit=seen.append)
    assert card.adapter["preference_accuracy"] >= card.base["preference_accuracy"] + 0.2, card.to_dict()
    assert card.adapter["eval_loss"] < card.base["eval_loss"]  # it imitated chosen
    progress = [e for e in seen if isinstance(e, E.EvalProgress)]
    assert {(e.side, e.stage) for e in progress} == {(s, t) for s in ("base", "adapter")
                                                   for t in ("likelihood", "generate")}
    assert all(e.done == e.total for e in progress if e.done == max(p.done for p in progress
                                                                      if (p.side, p.stage) == (e.side, e.stage)))

    rows = [{"prompt": "Any plans for the weekend?", "chosen": "Oh yeah, hiking! 🥾 You?",
             "rejected": "As an AI, I do not have plans."},
            {"prompt": "Do you like pizza?", "chosen": "Who doesn't?! 🍕", "rejected": "I am a language model."},
            {"prompt": "Tell me a joke.", "chosen": "Why did the chicken cross the road? 😂"}]  # no rejected
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    filed = ev.scorecard(res.run_id, data=str(path), max_new_tokens=2)
    assert filed.rows == 3 and filed.prompts == 3 and filed.data_source == str(path)
    assert filed.reference["chosen"]["emoji_rate"] == 1.0 and filed.reference["chosen"]["question_rate"] == 1.0
    assert filed.reference["rejected"]["ai_disclaimer_rate"] == 1.0  # over the two rows that have one
    assert filed.adapter["preference_accuracy"] in (0.0, 0.5, 1.0)  # over the two pairs only
    assert ev.last_scorecard(res.run_id)["data_source"] == "builtin:sample"  # a file's card is not kept
    assert [a["prompt"] for a in ev.last_answers(res.run_id)][:1] != [rows[0]["prompt"]]

    # ... unless its answers are asked for: then card and answers are kept together, for the Adapters screen.
    kept = ev.scorecard(res.run_id, data=str(path), max_new_tokens=2, answers=tmp_path / "file.answers.jsonl")
    assert ev.last_scorecard(res.run_id)["data_source"] == str(path)
    assert ev.last_answers(res.run_id) == kept.answers and len(kept.answers) == 6
    assert [a["prompt"] for a in kept.answers if a["side"] == "base"] == [r["prompt"] for r in rows]


def test_eval_of_an_unknown_or_unfinished_adapter_exits_2(demo_cfg, capsys):
    assert cli.main(["eval", "--adapter", "no-such-run"]) == 2
    assert "no run named 'no-such-run'" in capsys.readouterr().err
    S.create_run(demo_cfg, "half-done")  # a run folder without a finished adapter
    assert cli.main(["eval", "--adapter", "half-done"]) == 2
    assert "has no finished adapter" in capsys.readouterr().err
    with pytest.raises(StoreError):
        ev.scorecard("../escape")


def test_scorecard_borrows_a_loaded_generator_and_gives_the_same_card(demo_cfg, monkeypatch):
    # The Chat screen may already hold this adapter: the scorecard uses that model (no second base
    # in memory), under its lock, and leaves it loaded for the chat.
    from humanlike_tui.engine import models as M
    from humanlike_tui.engine.inference.generator import Generator

    res = run_training(demo_cfg.replace(**{"train.max_steps": 3, "train.eval_every": 0, "train.sample_prompts": 0}))
    fresh = ev.scorecard(res.run_id, limit=6, max_new_tokens=3)
    gen = Generator.open(res.run_id)

    def no_second_load(*a, **k):
        raise AssertionError("the scorecard loaded a second base model")

    monkeypatch.setattr(M, "load_base_model", no_second_load)
    seen: list[E.Event] = []
    borrowed = ev.scorecard(res.run_id, limit=6, max_new_tokens=3, emit=seen.append, loaded=gen)
    assert borrowed.base == fresh.base and borrowed.adapter == fresh.adapter
    assert any("already loaded" in e.message for e in seen if isinstance(e, E.Log))
    assert gen.model is not None and gen.answer("adapter", "Hi there!").tokens > 0  # still the chat's
    other = S.get_run(res.run_id)
    assert not scoring._holds_adapter(None, other)


def test_eval_answers_to_a_folder_exits_2_before_loading(home, capsys, monkeypatch):
    from tiny_run import RUN_NAME, install_run

    from humanlike_tui.engine import models as M

    install_run(home)

    def no_load(*a, **k):
        raise AssertionError("the model loaded before the --answers path was checked")

    monkeypatch.setattr(M, "load_base_model", no_load)
    assert cli.main(["eval", "--adapter", RUN_NAME, "--answers", str(home)]) == 2
    assert "that is a folder; give a file name" in capsys.readouterr().err
