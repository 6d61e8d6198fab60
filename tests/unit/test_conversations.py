"""Conversations (issue 22): every shape told from its rows (or set by data.format), bad conversations dropped
and counted with the reason, loss on assistant turns only (all or the last), long conversations keep their
most recent whole turns, and the persona (data.system_prompt) for rows without a system message."""

from __future__ import annotations

import json

import pytest

from humanlike_tui.config import DataConfig
from humanlike_tui.engine import data as D
from humanlike_tui.errors import DataError


@pytest.fixture(scope="module")
def tok():
    from humanlike_tui.config import load_preset
    from humanlike_tui.engine.models.loading import load_tokenizer, resolve_model_path

    cfg = load_preset("demo")
    return load_tokenizer(cfg, resolve_model_path(cfg))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def msg(role, content):
    return {"role": role, "content": content}


OPENAI = {"messages": [msg("system", "You are Sam, warm and brief."), msg("user", "hi!"),
                       msg("assistant", "hey you :) how's it going?"), msg("user", "tired, long day"),
                       msg("assistant", "ugh, those are the worst. want to talk about it?")]}
SHAREGPT = {"conversations": [{"from": "human", "value": "do you like rain?"},
                              {"from": "gpt", "value": "honestly? I love it. cosy tea weather."}]}
PAIR = {"prompt": "what's up?", "chosen": "not much, just chilling!", "rejected": "I am an AI and have no status."}
PREFERENCE = {"messages": [msg("user", "hey"), msg("assistant", "hi! what's new?"), msg("user", "got the job!")],
              "chosen": "NO WAY, congrats!! when do you start?",
              "rejected": [msg("assistant", "Congratulations on your new employment.")]}
TRL_PREFERENCE = {"prompt": [msg("user", "any plans tonight?")],
                  "chosen": [msg("assistant", "pizza and a movie, you?")],
                  "rejected": [msg("assistant", "I do not have plans as I am a language model.")]}


def test_every_shape_is_told_from_its_rows(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [OPENAI, SHAREGPT, PAIR, PREFERENCE, TRL_PREFERENCE])
    rows, counts = D.load_rows(DataConfig(source=path))
    assert [r.shape for r in rows] == ["messages", "sharegpt", "prompt_chosen", "preference_messages",
                                       "preference_messages"]
    assert dict(counts.shapes) == {"messages": 1, "sharegpt": 1, "prompt_chosen": 1, "preference_messages": 2}
    openai, sharegpt, pair, pref, trl = rows
    assert openai.messages == (("system", "You are Sam, warm and brief."), ("user", "hi!"),
                               ("assistant", "hey you :) how's it going?"), ("user", "tired, long day"))
    assert (openai.prompt, openai.chosen, openai.rejected) == ("tired, long day", OPENAI["messages"][-1]["content"],
                                                               None)
    assert sharegpt.messages == (("user", "do you like rain?"),) and sharegpt.chosen.startswith("honestly")
    assert pair == D.Row("what's up?", "not much, just chilling!", "I am an AI and have no status.")
    assert pref.messages[-1] == ("user", "got the job!") and pref.rejected.startswith("Congratulations")
    assert trl.messages == (("user", "any plans tonight?"),) and trl.chosen == "pizza and a movie, you?"


def test_data_format_forces_the_shape(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [OPENAI, PAIR])
    rows, counts = D.load_rows(DataConfig(source=path, format="messages"))
    assert len(rows) == 1 and dict(counts.dropped) == {"missing messages": 1}


@pytest.mark.parametrize("turns, reason", [
    ([msg("user", "a"), msg("user", "b"), msg("assistant", "c")], "two user turns in a row"),
    ([msg("user", "a"), msg("assistant", "b"), msg("user", "c")], "conversation ends on the user"),
    ([msg("user", "a"), msg("robot", "b")], "unknown role"),
    ([msg("user", "a"), msg("assistant", "  ")], "empty turn"),
    ([msg("assistant", "a"), msg("user", "b"), msg("assistant", "c")], "conversation starts with the assistant"),
    ([msg("user", "a"), msg("system", "b"), msg("assistant", "c")], "system turn after the start"),
    ([msg("user", 3), msg("assistant", "c")], "turn content not text"),
    ("not a list", "turns not a list"),
])
def test_bad_conversations_are_dropped_and_counted(tmp_path, turns, reason):
    path = write_jsonl(tmp_path / "d.jsonl", [OPENAI, {"messages": turns}])
    rows, counts = D.load_rows(DataConfig(source=path))
    assert len(rows) == 1 and dict(counts.dropped) == {reason: 1}


def test_only_bad_conversations_give_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [msg("user", "a"), msg("user", "b")]}])
    with pytest.raises(DataError, match="two user turns in a row.*take turns"):
        D.load_rows(DataConfig(source=path))


def test_dpo_needs_a_rejected_answer(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [OPENAI, PREFERENCE])
    rows, counts = D.load_rows(DataConfig(source=path), need_rejected=True)
    assert [r.shape for r in rows] == ["preference_messages"] and dict(counts.dropped) == {"missing rejected": 1}


def labelled_text(tok, ex: D.Example) -> list[str]:
    """The text of each run of labelled tokens, in order."""
    ids, labels = D.sft_tensors(ex, False)
    runs, current = [], []
    for i, lab in zip(ids, labels):
        if lab != D.IGNORE:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    runs += [current] if current else []
    return [tok.decode(r) for r in runs]


@pytest.mark.parametrize("template", ["instruct", "chat"])
def test_loss_on_every_assistant_turn_or_the_last(tmp_path, tok, template):
    path = write_jsonl(tmp_path / "d.jsonl", [OPENAI])
    answers = [m["content"] for m in OPENAI["messages"] if m["role"] == "assistant"]
    end = D.INSTRUCT_END + tok.eos_token if template == "instruct" else tok.eos_token
    for loss_on, expected in (("all_assistant", answers), ("last", answers[-1:])):
        dcfg = DataConfig(source=path, template=template, loss_on=loss_on, eval_fraction=0)
        rows, counts = D.load_rows(dcfg)
        (ex,) = D.tokenize_rows(rows, tok, dcfg, counts, need_rejected=False)
        assert labelled_text(tok, ex) == [a + end for a in expected]  # never system or user text
        ids, _ = D.sft_tensors(ex, False)
        whole = D.render_conversation(list(rows[0].messages) + [("assistant", rows[0].chosen)],
                                      D.resolve_template(template, tok), tok)
        assert tok.decode(ids) == whole.text[:whole.spans[-1][1]]  # the conversation, cut after its last answer


def test_the_step_normaliser_counts_earlier_assistant_turns(tmp_path, tok):
    from humanlike_tui.engine.training.steps import sft_normaliser

    dcfg = DataConfig(source=write_jsonl(tmp_path / "d.jsonl", [OPENAI]), template="instruct", eval_fraction=0)
    rows, counts = D.load_rows(dcfg)
    (ex,) = D.tokenize_rows(rows, tok, dcfg, counts, need_rejected=False)
    _, labels = D.sft_tensors(ex, False)
    assert sft_normaliser(ex, False) == sum(1 for t in labels if t != D.IGNORE) > len(ex.chosen_ids)


def long_conversation(n: int, system: bool = True) -> dict:
    turns = [msg("system", "You are Sam.")] if system else []
    for i in range(n):
        turns += [msg("user", f"question {i} " + "blah " * 20), msg("assistant", f"answer {i} " + "yada " * 20)]
    return {"messages": turns}


def test_long_conversations_keep_their_most_recent_whole_turns(tmp_path, tok):
    dcfg = DataConfig(source=write_jsonl(tmp_path / "d.jsonl", [long_conversation(8), OPENAI]),
                      template="instruct", max_length=160, eval_fraction=0)
    rows, counts = D.load_rows(dcfg)
    long_ex, short_ex = D.tokenize_rows(rows, tok, dcfg, counts, need_rejected=False)
    assert counts.shortened == 1 and not counts.dropped and counts.to_dict()["shortened"] == 1
    assert long_ex.length <= 160
    text = tok.decode(list(long_ex.prompt_ids) + list(long_ex.chosen_ids))
    assert text.startswith("### System:\nYou are Sam.\n\n### Instruct:\nquestion ")  # the persona stays
    kept = [i for i in range(8) if f"question {i} " in text]
    assert kept == list(range(8 - len(kept), 8)) and 1 <= len(kept) < 8  # the most recent whole turns
    assert "answer 7" in tok.decode(long_ex.chosen_ids)
    assert labelled_text(tok, short_ex)  # the short one is untouched


def test_a_conversation_whose_last_exchange_is_too_long_is_dropped(tmp_path, tok):
    dcfg = DataConfig(source=write_jsonl(tmp_path / "d.jsonl", [long_conversation(3), OPENAI]),
                      template="instruct", max_length=40, eval_fraction=0)
    rows, counts = D.load_rows(dcfg)
    with pytest.raises(DataError, match="longer than data.max_length"):
        D.tokenize_rows(rows, tok, dcfg, counts, need_rejected=False)
    assert counts.dropped["over max_length"] == 2


def test_the_persona_goes_to_rows_without_a_system_message(tmp_path, tok):
    dcfg = DataConfig(source=write_jsonl(tmp_path / "d.jsonl", [OPENAI, SHAREGPT, PAIR]), template="instruct",
                      system_prompt="You are Robin, cheerful.", eval_fraction=0)
    rows, counts = D.load_rows(dcfg)
    texts = [tok.decode(e.prompt_ids) for e in D.tokenize_rows(rows, tok, dcfg, counts, need_rejected=False)]
    assert texts[0].startswith("### System:\nYou are Sam, warm and brief.")  # its own system message wins
    assert all(t.startswith("### System:\nYou are Robin, cheerful.\n\n### Instruct:\n") for t in texts[1:])
    assert D.format_prompt("hi", "instruct", tok, system="You are Robin.") == \
        "### System:\nYou are Robin.\n\n### Instruct:\nhi\n\n### Output:\n"


def test_preference_conversations_compare_the_final_answers_only(tmp_path, tok):
    dcfg = DataConfig(source=write_jsonl(tmp_path / "d.jsonl", [PREFERENCE]), template="instruct", eval_fraction=0)
    rows, counts = D.load_rows(dcfg, need_rejected=True)
    (ex,) = D.tokenize_rows(rows, tok, dcfg, counts, need_rejected=True)
    assert ex.prompt_labels is None  # as TRL's DPO: the history is the prompt
    assert tok.decode(ex.prompt_ids).endswith("### Instruct:\ngot the job!\n\n### Output:\n")
    assert tok.decode(ex.chosen_ids) == PREFERENCE["chosen"] + D.INSTRUCT_END + tok.eos_token
    assert tok.decode(ex.rejected_ids).startswith("Congratulations on your new employment.")


def test_conversations_sharing_their_user_turns_stay_on_one_side_of_the_split(tmp_path, tok):
    rows = [OPENAI, dict(OPENAI, messages=OPENAI["messages"][:-1] + [msg("assistant", "aw, rest up")])]
    rows += [{"messages": [msg("user", f"topic {i}"), msg("assistant", f"reply {i}")]} for i in range(30)]
    dcfg = DataConfig(source=write_jsonl(tmp_path / "d.jsonl", rows), template="instruct", eval_fraction=0.3)
    loaded, counts = D.load_rows(dcfg)
    train, evals = D.split_by_prompt(D.tokenize_rows(loaded, tok, dcfg, counts, False), 0.3, seed=1)
    sides = {"train" if any(e.group == g for e in train) else "eval" for g in ("hi!\ntired, long day",)}
    assert len(sides) == 1 and evals


def test_a_chat_template_is_needed_for_chat_and_the_error_says_so(tmp_path, tok):
    import copy

    bare = copy.deepcopy(tok)
    bare.chat_template = None
    dcfg = DataConfig(source=write_jsonl(tmp_path / "d.jsonl", [OPENAI]), template="chat", eval_fraction=0)
    rows, counts = D.load_rows(dcfg)
    with pytest.raises(DataError, match="'chat' needs a model with a chat template"):
        D.tokenize_rows(rows, bare, dcfg, counts, need_rejected=False)
