"""Training on picks (issue 23) on the builtin tiny model: `train --from RUN` starts a new run from a finished
run's adapter and leaves that run untouched, and a short run on scripted picks raises the adapter's preference
accuracy on the held-out newest fifth (the scorecard against a collection)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from humanlike_tui.cli import main
from humanlike_tui.engine.storage import picks as P
from humanlike_tui.engine.storage import runs as S
from tiny_run import install_run


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def lora_tensors(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def add_picks(n: int, name: str = "my-picks") -> None:
    for i in range(n):
        P.append_pick(name, P.pick_row(prompt=f"Tell me about thing {i}", chosen=f"Thing {i} is fun, do you like it?",
                                       rejected=f"Thing {i} is a thing.", chosen_by="adapter", rejected_by="base",
                                       adapter="tiny-chat", when=1767268800.0 + i))


def test_train_from_a_run_starts_from_its_adapter_and_leaves_it_untouched(home, capsys):
    old = install_run(home)
    before = folder_digest(old)
    add_picks(10)
    code = main(["train", "--from", "tiny-chat", "--name", "nudged", "--quiet", "--set", "data.source=picks:my-picks",
                 "--set", "train.max_steps=1", "--set", "train.learning_rate=1e-12", "--set", "train.eval_every=0",
                 "--set", "data.eval_fraction=0", "--set", "train.method=dpo"])
    assert code == 0, capsys.readouterr().err
    assert folder_digest(old) == before
    new = S.get_run("nudged")
    assert new.config().train.from_run == "tiny-chat"
    assert new.config().data.source == "picks:my-picks"
    start, now = lora_tensors(old / "adapter"), lora_tensors(new.adapter_dir)
    assert start.keys() == now.keys()
    b = [k for k in start if "lora_B" in k]
    assert b and all(float(start[k].abs().max()) > 0 for k in b)  # a trained adapter, not a fresh LoRA's zeros
    assert all(float((start[k] - now[k]).abs().max()) < 1e-6 for k in start)


def test_train_from_refuses_an_unfinished_run_or_resume_together(home, capsys):
    install_run(home)
    assert main(["train", "--from", "tiny-chat", "--resume", "tiny-chat"]) == 2
    assert "give only one of them" in capsys.readouterr().err
    assert main(["train", "--from", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    code = main(["train", "--from", "tiny-chat", "--set", "lora.r=4", "--quiet", "--set", "train.max_steps=1"])
    assert code == 2
    assert "has rank 16, this config lora.r = 4; set lora.r = 16" in capsys.readouterr().err
    assert [r.run_id for r in S.list_runs()] == ["tiny-chat"]  # the refused run left no folder behind


QUESTIONS = ("do you like it?", "what about you?", "have you tried it?", "shall we go?")
STATEMENTS = ("I like it.", "that is all.", "it is fine.", "we went there.")
THINGS = ("tea", "rain", "music", "cats", "books", "bread", "walks", "snow", "films", "games", "soup", "trains",
          "kites", "boats", "maps")


def question_picks(n: int) -> None:
    """n picks where the person always prefers the answer that asks something back."""
    for i in range(n):
        thing = THINGS[i % len(THINGS)]
        ask, tell = QUESTIONS[i % len(QUESTIONS)], STATEMENTS[(i * 3) % len(STATEMENTS)]
        left_is_question = i % 2 == 0  # the question sits on either side: the pick follows the question
        base, adapter = (f"Oh, {thing}! {ask}", f"Oh, {thing}. {tell}") if left_is_question else \
            (f"Oh, {thing}. {tell}", f"Oh, {thing}! {ask}")
        chosen_by = "base" if left_is_question else "adapter"
        chosen, rejected = (base, adapter) if left_is_question else (adapter, base)
        P.append_pick("my-picks", P.pick_row(prompt=f"What do you think of {thing}?", chosen=chosen,
                                             rejected=rejected, chosen_by=chosen_by,
                                             rejected_by="adapter" if chosen_by == "base" else "base",
                                             adapter="tiny-chat", when=1767268800.0 + i))


@pytest.mark.slow  # ~35 s of CPU: three model loads (two scorecards and the run) and six DPO steps
def test_thirty_question_picks_raise_the_preference_accuracy_on_the_held_out_picks(home, capsys):
    from humanlike_tui.engine.evaluation.scoring import scorecard

    install_run(home)
    question_picks(30)
    before = scorecard("tiny-chat", data="picks:my-picks", max_new_tokens=2)
    assert before.rows == 6  # the newest fifth
    code = main(["train", "--from", "tiny-chat", "--name", "asks-back", "--quiet", "--set", "data.source=picks:my-picks",
                 "--set", "train.method=dpo", "--set", "train.max_steps=6", "--set", "train.learning_rate=5e-3",
                 "--set", "train.eval_every=0", "--set", "data.eval_fraction=0", "--set", "train.warmup_steps=0",
                 "--set", "train.batch_size=8", "--set", "train.grad_accum=1", "--set", "train.dpo_beta=0.5"])
    assert code == 0, capsys.readouterr().err
    assert S.get_run("asks-back").meta().get("data", {}).get("rows_kept") == 24  # never the held-out six
    capsys.readouterr()
    assert main(["eval", "--adapter", "asks-back", "--data", "picks:my-picks", "--max-new-tokens", "2", "--json",
                 "--quiet"]) == 0  # the command line's way to the same scorecard
    after = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert after["rows"] == 6
    acc_before, acc_after = before.adapter["preference_accuracy"], after["adapter"]["preference_accuracy"]
    print(f"preference accuracy on the 6 held-out picks: {acc_before:.3f} -> {acc_after:.3f}")
    assert acc_after > acc_before
    assert acc_after >= 5 / 6
