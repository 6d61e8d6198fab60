"""Data: reading, bad rows counted, formatting, label masking with a learned EOS, and the split."""

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
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_builtin_sample_has_100_plus_good_rows():
    rows, counts = D.load_rows(DataConfig(source="builtin:sample"), need_rejected=True)
    assert len(rows) >= 100 and counts.rows_read == len(rows) and not counts.dropped
    assert all(r.prompt and r.chosen and r.rejected for r in rows)


def test_bad_rows_are_skipped_and_counted(tmp_path):
    good = {"prompt": "hi", "chosen": "hey!", "rejected": "Greetings."}
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [good, {"prompt": "x", "chosen": ""}, {"prompt": "x"}, {"prompt": 3, "chosen": "a"},
                       "{not json", [1, 2], good])
    with open(path, "ab") as f:
        f.write(b'{"prompt": "\xff\xfe", "chosen": "a"}\n')
    rows, counts = D.load_rows(DataConfig(source=str(path)))
    assert len(rows) == 2
    assert counts.rows_read == 8
    assert dict(counts.dropped) == {"empty chosen": 1, "missing chosen": 1, "prompt not a string": 1,
                                    "malformed JSON line": 1, "not an object": 1, "not UTF-8": 1}


@pytest.mark.parametrize("content,match", [
    (None, "not found"),
    ("", "is empty"),
    ('{"question": "a", "answer": "b"}\n', "no rows with the columns 'prompt', 'chosen'"),
])
def test_unusable_files_give_clear_errors(tmp_path, content, match):
    path = tmp_path / "d.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=match):
        D.load_rows(DataConfig(source=str(path)))


def test_other_formats(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(3)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.csv").write_text("prompt,chosen,rejected\n" + "".join(f"p{i},c{i},r{i}\n" for i in range(3)))
    for name in ("a.json", "b.csv"):
        got, _ = D.load_rows(DataConfig(source=str(tmp_path / name)), need_rejected=True)
        assert [r.chosen for r in got] == ["c0", "c1", "c2"]


def test_instruct_template_is_the_original_one():
    assert D.format_prompt("  How are you? ", "instruct") == "### Instruct:\nHow are you?\n\n### Output:\n"


def test_chat_template_uses_the_models_template(tok):
    text = D.format_prompt("hello", "chat", tok)
    assert "hello" in text and text.endswith("<|assistant|>\n")


def test_labels_mask_the_prompt_and_learn_the_eos(tok):
    row = D.Row("How was your day?", "Great, thanks! 😊 You?", "I am an AI.")
    ex = D.tokenize_rows([row], tok, DataConfig(max_length=512, template="instruct"), D.DataCounts("t"), need_rejected=True)[0]
    ids, labels = D.sft_tensors(ex, train_on_prompt=False)
    n_prompt = len(ex.prompt_ids)
    assert labels[:n_prompt] == [D.IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id and labels[-1] == tok.eos_token_id  # EOS is learned
    assert tok.decode(ids[n_prompt:]).startswith("Great, thanks! 😊 You?\n### End")
    ids2, labels2 = D.sft_tensors(ex, train_on_prompt=True)
    assert labels2 == ids2


def test_padding_is_masked_by_position_even_when_pad_equals_eos():
    eos = 0
    ids, labels, att = D.pad_batch([([5, 6, eos], [-100, 6, eos]), ([7, eos], [-100, eos])], pad_id=eos)
    assert ids.tolist() == [[5, 6, eos], [7, eos, eos]]
    assert labels.tolist() == [[-100, 6, eos], [-100, eos, -100]]  # the real EOS kept, the pad masked
    assert att.tolist() == [[1, 1, 1], [1, 1, 0]]


def test_long_rows_are_dropped_and_counted(tok):
    rows = [D.Row("hi", "short answer", None), D.Row("hi there", "word " * 400, None)]
    counts = D.DataCounts("t")
    out = D.tokenize_rows(rows, tok, DataConfig(max_length=64), counts, need_rejected=False)
    assert len(out) == 1 and counts.dropped["over max_length"] == 1 and counts.rows_kept == 1


def test_split_is_grouped_by_prompt_and_deterministic(tok):
    rows = [D.Row(f"prompt {i % 30}", f"answer {i}", None) for i in range(120)]
    exs = D.tokenize_rows(rows, tok, DataConfig(), D.DataCounts("t"), False)
    train, evals = D.split_by_prompt(exs, 0.2, seed=1)
    assert evals and train and len(train) + len(evals) == 120
    assert not ({e.prompt for e in train} & {e.prompt for e in evals})
    again = D.split_by_prompt(exs, 0.2, seed=1)
    assert [e.chosen_ids for e in again[1]] == [e.chosen_ids for e in evals]
    assert D.split_by_prompt(exs, 0.0, 1)[1] == []


def test_step_order_is_a_pure_function_of_the_step():
    lengths = [10 + (i * 7) % 50 for i in range(37)]
    a = [D.step_indices(s, 4, lengths, 3, {}) for s in range(30)]
    cache: dict = {}
    b = [D.step_indices(s, 4, lengths, 3, cache) for s in range(30)]
    assert a == b
    first_epoch = sorted(i for step in a[:9] for i in step)[:36]
    assert len(set(first_epoch)) == 36  # no repeats inside an epoch


def test_bucketing_reduces_padding():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(20, 400) for _ in range(800)]
    order = D.epoch_order(lengths, 0, 0, group=8)
    padded = sum(8 * max(lengths[i] for i in order[j:j + 8]) for j in range(0, 800, 8))
    shuffled = list(range(800))
    rng.shuffle(shuffled)
    padded_random = sum(8 * max(lengths[i] for i in shuffled[j:j + 8]) for j in range(0, 800, 8))
    assert padded < 0.8 * padded_random
    assert sorted(order) == list(range(800))


def test_preview_shows_lengths_against_max_length(tok):
    from humanlike_tui.config import load_preset

    cfg = load_preset("demo").replace(**{"data.max_length": 100})
    p = D.preview(cfg, tok)
    assert p.rows >= 100 and len(p.lengths) == p.rows
    assert p.dropped_share == pytest.approx(sum(n > 100 for n in p.lengths) / p.rows)
    assert p.examples[0].startswith("### Instruct:\n") and p.examples[0].endswith("### End<|endoftext|>")
