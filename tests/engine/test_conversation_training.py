"""A run on conversations (issue 22): the tiny model trains two steps on OpenAI/ShareGPT rows with a persona,
the run says how many rows of each shape it read and how many it shortened, the persona is saved with the
run and the Chat path (Generator) answers with it."""

from __future__ import annotations

import json
from pathlib import Path

from humanlike_tui import events as E
from humanlike_tui.config import load_config
from humanlike_tui.engine.inference.generator import Generator
from humanlike_tui.engine.training.run import run_training

PERSONA = "You are Sam: warm, curious, brief."


def conversations(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        turns = [{"role": "user", "content": f"hey, how was day {i}?"},
                 {"role": "assistant", "content": "pretty good! a long walk and too much coffee :)"},
                 {"role": "user", "content": "nice, where did you walk?"},
                 {"role": "assistant", "content": f"down by the river, {i} ducks waved at me."}]
        rows.append({"messages": turns} if i % 2 else
                    {"conversations": [{"from": "human" if t["role"] == "user" else "gpt", "value": t["content"]}
                                       for t in turns]})
    long_turns = []
    for i in range(12):
        long_turns += [{"role": "user", "content": f"tell me more, part {i} " + "please " * 12},
                       {"role": "assistant", "content": f"okay, part {i}: " + "and then " * 12}]
    return rows + [{"messages": long_turns}]


def test_a_run_trains_on_conversations_with_a_persona(demo_cfg, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in conversations(12)), encoding="utf-8")
    cfg = demo_cfg.replace(**{"data.source": str(path), "data.system_prompt": PERSONA, "data.max_length": 160,
                              "train.max_steps": 2, "train.eval_every": 2, "train.sample_prompts": 0,
                              "train.batch_size": 4})
    seen: list = []
    result = run_training(cfg, seen.append)
    assert result.status == "finished"
    logs = [e.message for e in seen if isinstance(e, E.Log)]
    assert "rows by shape: messages 7, sharegpt 6; 1 conversation shortened to fit data.max_length" in "\n".join(logs)
    steps = [e for e in seen if isinstance(e, E.Step)]
    assert len(steps) == 2 and all(s.loss == s.loss and s.loss > 0 for s in steps)
    saved = load_config(Path(result.run_dir) / "config.toml")
    assert saved.data.system_prompt == PERSONA
    gen = Generator.open(result.run_id)
    try:
        assert gen.system_prompt == PERSONA
        ids, _, _ = gen._encode("adapter", "hi!", [], gen.default_settings, gen.system_prompt)
        assert gen.tok.decode(ids).startswith(f"### System:\n{PERSONA}\n\n### Instruct:\nhi!")
    finally:
        gen.close()
