"""`humanlike-tui picks list|show|export|delete` (issue 23), and an exported collection read by TRL's own
dataset processing (DPOTrainer's tokenisation) on the builtin tiny model, unchanged."""

from __future__ import annotations

import json

import pytest

from humanlike_tui.cli import main
from humanlike_tui.engine.storage import picks as P


def add(n: int, name: str = "my-picks", history=()) -> None:
    for i in range(n):
        P.append_pick(name, P.pick_row(prompt=f"How was day {i}?", chosen=f"Lovely, day {i} was sunny! You?",
                                       rejected=f"Day {i} occurred.", chosen_by="edited" if i % 2 else "adapter",
                                       rejected_by="base", history=history, adapter="warm",
                                       settings={"seed": i}, when=1767268800.0 + 60 * i))


def test_list_show_export_delete(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    assert main(["picks", "list"]) == 0
    assert "no picks yet" in capsys.readouterr().out
    add(5)
    add(2, "other", history=[("hi", "hey you")])
    assert main(["picks", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "PICKS", "HELD", "OUT", "MULTI-TURN", "DAMAGED", "NEWEST"]
    assert out[1].split()[:5] == ["my-picks", "5", "1", "0", "0"]
    assert out[2].split()[:5] == ["other", "2", "1", "2", "0"]
    assert main(["picks", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["count"], c["held_out"]) for c in listed] == [("my-picks", 5, 1), ("other", 2, 1)]

    assert main(["picks", "show", "my-picks", "--last", "2"]) == 0
    shown = capsys.readouterr().out
    assert "you:      How was day 4?" in shown and "How was day 2?" not in shown
    assert "chosen: adapter, rejected: base · held out" in shown
    assert "5 picks in" in shown and "(1 held out" in shown

    target = tmp_path / "out.jsonl"
    assert main(["picks", "export", "my-picks", str(target), "--part", "train"]) == 0
    assert "wrote 4 picks (train, prompt/chosen/rejected)" in capsys.readouterr().out
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows[0] == {"prompt": "How was day 0?", "chosen": "Lovely, day 0 was sunny! You?",
                       "rejected": "Day 0 occurred."}
    assert main(["picks", "export", "my-picks", str(target)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["picks", "export", "other", str(target), "--force"]) == 0
    assert "conversational" in capsys.readouterr().out

    assert main(["picks", "delete", "nope", "--yes"]) == 2
    assert "no picks collection 'nope'" in capsys.readouterr().err
    assert main(["picks", "delete", "my-picks"]) == 2  # stdin is no terminal under pytest
    assert main(["picks", "delete", "my-picks", "--yes"]) == 0
    assert "deleted my-picks (5 picks)" in capsys.readouterr().out
    assert [c.name for c in P.list_collections()] == ["other"]


def test_show_says_when_a_line_was_skipped(home, capsys):
    add(2)
    with open(P.collection_path("my-picks"), "ab") as f:
        f.write(b'{"prompt": "cut sho')
    assert main(["picks", "show", "my-picks"]) == 0
    captured = capsys.readouterr()
    assert "warning: my-picks.jsonl: skipped 1 damaged line (line 3: not a whole JSON line)" in captured.err
    assert "2 picks in" in captured.out


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.mark.parametrize("history", [(), [("hi", "hey you")]], ids=["single-turn", "conversational"])
def test_an_export_goes_through_trl_dpo_tokenisation_unchanged(home, tmp_path, capsys, history):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from humanlike_tui.engine.models.builtins import ensure_builtin

    add(3, history=history)
    target = tmp_path / "picks.jsonl"
    assert main(["picks", "export", "my-picks", str(target)]) == 0
    folder = ensure_builtin("builtin:tiny-phi")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = tok.chat_template or CHAT_TEMPLATE
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder)
    data = datasets.load_dataset("json", data_files=str(target), split="train")
    trainer = DPOTrainer(model=model, args=DPOConfig(output_dir=str(tmp_path / "trl"), report_to=[],
                                                     per_device_train_batch_size=1, max_steps=1,
                                                     dataset_num_proc=None, bf16=False, use_cpu=True),
                         train_dataset=data, processing_class=tok)
    first = trainer.train_dataset[0]
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(first)
    chosen = tok.decode(first["chosen_ids"])
    assert "Lovely, day 0 was sunny! You?" in chosen and "Day 0 occurred." in tok.decode(first["rejected_ids"])
    assert "How was day 0?" in tok.decode(first["prompt_ids"])
    if history:
        assert "hey you" in tok.decode(first["prompt_ids"])
