"""`humanlike-tui data inspect` (issue 22.6) and the shipped multi-turn sample with its chat-demo preset
(issue 22.7): the same look as the Config screen's data panel, headless."""

from __future__ import annotations

import json

from humanlike_tui import cli
from humanlike_tui.config import DataConfig, load_preset
from humanlike_tui.engine import data as D


def test_the_chat_sample_ships_warm_conversations_with_personas():
    rows, counts = D.load_rows(DataConfig(source="builtin:chat-sample"))
    assert len(rows) >= 30 and not counts.dropped
    assert set(counts.shapes) == {"messages", "sharegpt"}
    assert sum(1 for r in rows if r.messages[0][0] == "system") >= 10
    assert all(sum(1 for role, _ in r.messages if role == "user") >= 2 for r in rows)  # multi-turn, every one


def test_the_chat_demo_preset_trains_on_the_sample_with_a_persona():
    cfg = load_preset("chat-demo")
    assert (cfg.model.name, cfg.data.source, cfg.train.method) == ("builtin:smollm2-135m", "builtin:chat-sample", "sft")
    assert cfg.data.system_prompt and cfg.data.loss_on == "all_assistant"


def write_rows(tmp_path):
    path = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "system", "content": "You are Sam."}, {"role": "user", "content": "hi!"},
                          {"role": "assistant", "content": "hey you"}, {"role": "user", "content": "bored"},
                          {"role": "assistant", "content": "wanna hear a silly fact?"}]},
            {"conversations": [{"from": "human", "value": "rain again"}, {"from": "gpt", "value": "tea weather!"}]},
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_data_inspect_prints_shapes_drops_and_turns(tmp_path, capsys):
    path = write_rows(tmp_path)
    assert cli.main(["data", "inspect", str(path), "--set", "data.loss_on=last"]) == 0
    out = capsys.readouterr().out
    assert "3 rows read, 2 usable (messages 1, ShareGPT 1); dropped: 1 two user turns in a row" in out
    assert "the last assistant turn (data.loss_on = last)" in out
    lines = out.splitlines()
    assert "  system     You are Sam." in lines and "  user       hi!" in lines
    assert "  assistant  hey you" in lines and "* assistant  wanna hear a silly fact?" in lines
    assert "* assistant  tea weather!" in lines


def test_data_inspect_json_and_persona(tmp_path, capsys):
    path = write_rows(tmp_path)
    assert cli.main(["data", "inspect", str(path), "--json", "--set", "data.system_prompt=Be kind."]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["shapes"] == {"messages": 1, "sharegpt": 1}
    first, second = (r["turns"] for r in report["rows"])
    assert first[0] == {"role": "system", "text": "You are Sam.", "loss": False}  # its own system prompt stays
    assert second[0] == {"role": "system", "text": "Be kind.", "loss": False}
    assert [t["loss"] for t in first] == [False, False, True, False, True]


def test_data_inspect_with_tokens_shows_the_exact_text(tmp_path, capsys):
    path = write_rows(tmp_path)
    assert cli.main(["data", "inspect", str(path), "--preset", "demo", "--tokens", "--rows", "1"]) == 0
    out = capsys.readouterr().out
    assert "tokens (builtin:tiny-phi): median" in out
    assert "### System:\nYou are Sam.\n\n### Instruct:\nhi!" in out


def test_data_inspect_of_an_unusable_file_is_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "only me"}]}\n', encoding="utf-8")
    assert cli.main(["data", "inspect", str(path)]) == 2
    assert "conversation ends on the user" in capsys.readouterr().err
