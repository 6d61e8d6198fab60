"""Streaming generation on ONE base model: the builtin tiny model, trained for 4 steps, answers as
the base (adapter disabled) and as the adapter; tokens stream, Stop stops, the lock serialises,
out-of-memory is a clear error; `humanlike-tui chat --json` prints both answers."""

from __future__ import annotations

import json
import threading

import pytest

from humanlike_tui import cli
from humanlike_tui.engine import data as D
from humanlike_tui.errors import GenerationError
from humanlike_tui.events import AnswerDone, AnswerStarted, AnswerText
from humanlike_tui.formatting import printable
from humanlike_tui.records import GenSettings, Turn
from humanlike_tui.engine.inference.generator import Generator, resolve_adapter
from humanlike_tui.engine.inference.streaming import TextStream, format_conversation, split_at_marker
from support.memory_probe import memory_report
from humanlike_tui.errors import ConfigError, InputError, ModelError, StoreError
from tiny_run import RUN_NAME, install_run, tiny_config, trained_run_dir


@pytest.fixture(scope="module")
def gen():
    """One generator for the module (loading costs seconds), opened from the run's adapter folder."""
    g = Generator.open(str(trained_run_dir() / "adapter"))
    yield g
    g.close()


@pytest.fixture(scope="module")
def tok(gen):
    return gen.tok


def collect():
    events = []
    return events, events.append


# --- pure parts -----------------------------------------------------------------------------------------

def test_first_turn_is_formatted_exactly_as_in_training(tok):
    for template in ("instruct", "chat"):
        expected = D.format_prompt("How are you?", template, tok)
        assert format_conversation("  How are you? ", [], template, tok) == expected


def test_history_is_earlier_training_examples_then_the_prompt(tok):
    text = format_conversation("And you?", [("Hi", "Hey there!"), ("Skipped", "  ")], "instruct", tok)
    expected = D.format_example(D.Row("Hi", "Hey there!", None), "instruct", tok, tok.eos_token) \
        + D.format_prompt("And you?", "instruct", tok)
    assert text == expected  # the turn with an empty answer (stopped before a word) is left out
    chat = format_conversation("And you?", [("Hi", "Hey there!")], "chat", tok)
    # The tiny model's template closes no assistant turn, so each answer ends with EOS, as it is trained.
    assert chat == "<|user|>\nHi\n<|assistant|>\nHey there!<|endoftext|>\n<|user|>\nAnd you?\n<|assistant|>\n"


def test_end_marker_is_held_back_then_cut():
    markers = (D.INSTRUCT_END,)
    assert split_at_marker("Sure thing\n##", markers) == ("Sure thing", False)  # could become '\n### End'
    assert split_at_marker("Sure thing\n## no", markers) == ("Sure thing\n## no", False)
    assert split_at_marker("Sure thing\n### End\nmore", markers) == ("Sure thing", True)
    assert split_at_marker("Sure thing\n##", markers, final=True) == ("Sure thing\n##", False)


def test_stream_emits_every_piece_once_and_never_the_marker(tok):
    pieces = []
    stream = TextStream(tok, (D.INSTRUCT_END,), pieces.append)
    ids = tok("Oh wow, that sounds great! 😀\n### End", add_special_tokens=False)["input_ids"]
    import torch

    stream.put(torch.tensor([[5, 6, 7]]))  # the prompt comes first and is skipped
    for i in ids:
        stream.put(torch.tensor([i]))
        if stream.marker_hit:
            break
    assert stream.marker_hit
    assert stream.final_text() == "Oh wow, that sounds great! 😀"
    assert "".join(pieces) == "Oh wow, that sounds great! 😀"
    assert not any("#" in p or "\ufffd" in p for p in pieces)


def test_settings_come_from_the_config_and_are_validated():
    cfg = tiny_config()
    s = GenSettings.from_config(cfg, temperature=0, seed=None)
    assert (s.max_new_tokens, s.temperature, s.seed, s.greedy) == (8, 0.0, cfg.generate.seed, True)
    with pytest.raises(ConfigError, match="generate.top_p"):
        GenSettings.from_config(cfg, top_p=1.5)
    with pytest.raises(InputError, match="unknown generation setting"):
        GenSettings.from_config(cfg, top_k=3)


def test_printable_removes_terminal_escapes():
    assert printable("hi\x1b[2J\nok\x9b1m\t!") == "hi\ufffd[2J\nok\ufffd1m\t!"


# --- the tiny model ---------------------------------------------------------------------------------------

def test_both_answers_stream_on_one_base_model(gen):
    events, emit = collect()
    ex = gen.answer_both("How was your weekend?", settings=gen.settings(max_new_tokens=6), emit=emit)
    kinds = [(type(e).__name__, e.side) for e in events]
    assert kinds[0] == ("AnswerStarted", "base") and kinds[-1] == ("AnswerDone", "adapter")
    assert kinds.index(("AnswerDone", "base")) < kinds.index(("AnswerStarted", "adapter"))  # one after the other
    for side in ("base", "adapter"):
        pieces = "".join(e.text for e in events if isinstance(e, AnswerText) and e.side == side)
        done = next(e for e in events if isinstance(e, AnswerDone) and e.side == side)
        assert pieces.strip() == done.text == ex.answers[side].text
        assert 1 <= done.tokens <= 6 and done.finish in ("end", "length")
    started = next(e for e in events if isinstance(e, AnswerStarted))
    assert started.prompt_tokens == len(gen.tok(D.format_prompt("How was your weekend?", "instruct"),
                                                 add_special_tokens=False)["input_ids"])
    report = memory_report()
    assert report["base_models"] == 1, report["models"]  # the base answer reused the adapter's base
    assert report["bytes"] == gen.memory()["bytes"] > 0
    assert report["lora_parameters"] == gen.memory()["lora_parameters"] > 0


def test_disable_adapter_is_undone_and_seeds_repeat(gen):
    greedy = gen.settings(max_new_tokens=6, temperature=0)
    both = gen.answer_both("Any plans tonight?", settings=greedy)
    alone = gen.answer("adapter", "Any plans tonight?", settings=greedy)
    assert alone.text == both.answers["adapter"].text  # the adapter is on again after the base answer
    sampled = gen.settings(max_new_tokens=6, temperature=1.0, seed=7)
    first = gen.answer_both("Any plans tonight?", settings=sampled)
    again = gen.answer_both("Any plans tonight?", settings=sampled)
    assert {s: a.text for s, a in first.answers.items()} == {s: a.text for s, a in again.answers.items()}


def test_the_base_really_answers_without_the_adapter(gen):
    import torch

    ids = torch.tensor([gen.tok("### Instruct:\nHi\n\n### Output:\n")["input_ids"]])
    with torch.no_grad():
        adapter_logits = gen.model(input_ids=ids).logits
        with gen.model.disable_adapter():
            base_logits = gen.model(input_ids=ids).logits
    assert not torch.allclose(adapter_logits, base_logits)  # so 'base' and 'adapter' are different models


def test_stop_in_the_middle_ends_this_answer_and_skips_the_next(gen):
    stop = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, AnswerText) and sum(isinstance(e, AnswerText) for e in events) == 2:
            stop.set()

    ex = gen.answer_both("Tell me a long story", settings=gen.settings(max_new_tokens=40, temperature=0),
                         emit=emit, stop=stop)
    assert ex.answers["base"].finish == "stopped" and ex.answers["base"].tokens < 40
    assert ex.answers["adapter"].finish == "stopped" and ex.answers["adapter"].tokens == 0
    assert ex.stopped and [type(e).__name__ for e in events][-2:] == ["AnswerStarted", "AnswerDone"]


def test_the_lock_serialises_two_callers(gen):
    events, emit = collect()
    settings = gen.settings(max_new_tokens=4, temperature=0)
    threads = [threading.Thread(target=gen.answer_both, args=(f"Question {i}",), kwargs={"settings": settings,
                                "emit": emit}) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    starts = [i for i, e in enumerate(events) if isinstance(e, AnswerStarted)]
    assert len(starts) == 4
    # Each exchange's events are contiguous: base start, texts, base done, adapter start, ... done.
    for a, b in zip(starts, starts[1:]):
        assert isinstance(events[b - 1], AnswerDone)
    assert [e.side for e in events if isinstance(e, AnswerStarted)] == ["base", "adapter", "base", "adapter"]


def test_history_is_dropped_oldest_first_to_fit_the_context(gen, monkeypatch):
    events, emit = collect()
    history = [Turn(f"Question number {i} about the weather", "It was sunny and warm", "Sunny!") for i in range(8)]
    monkeypatch.setattr(gen, "context_length", lambda: 90)
    ex = gen.answer_both("And today?", history, settings=gen.settings(max_new_tokens=4), emit=emit)
    started = [e for e in events if isinstance(e, AnswerStarted)]
    assert all(0 < s.history_turns < 8 and s.prompt_tokens + 4 <= 90 for s in started)
    assert ex.turn() == Turn("And today?", ex.answers["base"].text, ex.answers["adapter"].text)


def test_out_of_memory_is_a_clear_error_and_the_model_stays_usable(gen, monkeypatch):
    import torch

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(gen.model, "generate", oom)
    with pytest.raises(GenerationError, match="out of .*memory while generating the base answer.*max new tokens"):
        gen.answer_both("Hi", settings=gen.settings(max_new_tokens=4))
    monkeypatch.undo()
    assert gen.answer("adapter", "Hi", settings=gen.settings(max_new_tokens=2)).tokens >= 1


def test_empty_prompt_is_refused(gen):
    with pytest.raises(InputError, match="empty"):
        gen.answer_both("   ")


# --- finding adapters, errors, closing ------------------------------------------------------------------

def test_unknown_names_and_bad_folders_are_clear_errors(home):
    with pytest.raises(StoreError, match="no run named 'nope'"):
        resolve_adapter("nope")
    with pytest.raises(ModelError, match="adapter folder not found"):
        resolve_adapter(str(home / "missing"))
    run = install_run(home)
    (run / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelError, match="incomplete adapter, missing adapter_model.safetensors"):
        Generator.open(RUN_NAME)
    (run / "adapter" / "COMPLETE").unlink()
    with pytest.raises(StoreError, match="no finished adapter.*resume it"):
        Generator.open(RUN_NAME)


# --- the command ----------------------------------------------------------------------------------------

def test_chat_with_a_temperature_of_1e_300_answers_greedily(home, capsys, gen):
    """1e-300 is inside the documented 0-5: the logits divided by it overflowed (issue 25: chat exited 1).
    Temperatures below 1e-4 decode greedily, the limit of sampling."""
    install_run(home)
    code = cli.main(["chat", "--adapter", RUN_NAME, "--prompt", "How are you?", "--json", "--max-new-tokens", "5",
                     "--temperature", "1e-300", "--seed", "3"])
    assert code == 0
    answers = json.loads(capsys.readouterr().out)["answers"]
    expected = gen.answer_both("How are you?", settings=gen.settings(max_new_tokens=5, temperature=0, seed=3))
    assert all(answers[side]["text"] == expected.answers[side].text for side in ("base", "adapter"))


def test_chat_json_prints_both_answers(home, capsys, gen):
    install_run(home)
    code = cli.main(["chat", "--adapter", RUN_NAME, "--prompt", "How are you?", "--json", "--max-new-tokens", "5",
                     "--temperature", "0", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    assert data["adapter"] == RUN_NAME and data["base_model"] == "builtin:tiny-phi"
    assert data["formatted_prompt"] == "### Instruct:\nHow are you?\n\n### Output:\n"
    assert data["settings"] == {"max_new_tokens": 5, "temperature": 0.0, "top_p": 0.9, "repetition_penalty": 1.1,
                                "seed": 3}
    expected = gen.answer_both("How are you?", settings=gen.settings(max_new_tokens=5, temperature=0, seed=3))
    for side in ("base", "adapter"):
        answer = data["answers"][side]
        assert set(answer) == {"text", "tokens", "finish", "stopped", "seconds"}
        assert answer["text"] == expected.answers[side].text and answer["stopped"] is False
    assert memory_report()["base_models"] == 1  # the command closed its generator


def test_chat_errors_exit_2_before_loading_anything(home, capsys):
    assert cli.main(["chat", "--adapter", "nope", "--prompt", "x"]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err
    install_run(home)
    assert cli.main(["chat", "--adapter", RUN_NAME, "--prompt", "x", "--top-p", "2"]) == 2
    assert "generate.top_p: must be <= 1" in capsys.readouterr().err
    assert cli.main(["chat", "--adapter", str(home / "nowhere"), "--prompt", "x"]) == 2
    assert "adapter folder not found" in capsys.readouterr().err


def test_chat_with_a_base_model_alone(capsys):
    """`chat --model NAME`: a new user talks to a base model before training anything (no adapter, no run);
    the base is loaded as its preset loads it (builtin:tiny-phi: the demo preset)."""
    import json

    from humanlike_tui.cli import main

    assert main(["chat", "--model", "builtin:tiny-phi", "--prompt", "How was your weekend?", "--json",
                 "--max-new-tokens", "4", "--temperature", "0"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["adapter"] is None and out["base_model"] == "builtin:tiny-phi" and list(out["answers"]) == ["base"]
    assert out["formatted_prompt"].startswith("### Instruct:") and out["answers"]["base"]["tokens"] <= 4
    assert main(["chat", "--model", "builtin:tiny-phi", "--prompt", "hi", "--max-new-tokens", "2"]) == 0
    assert "base model builtin:tiny-phi" in capsys.readouterr().out
    assert main(["chat", "--model", "builtin:tiny-phi", "--prompt", "hi", "--only", "adapter"]) == 2
    assert "--adapter RUN" in capsys.readouterr().err


def test_serving_a_base_model_alone_answers_as_the_base():
    """ctrl+g on the Chat screen serves whatever is loaded: a base model alone has no adapter side."""
    from types import SimpleNamespace

    from humanlike_tui.config import load_preset
    from humanlike_tui.engine.inference.server import ChatServer

    base_only = SimpleNamespace(name="builtin:tiny-phi", config=load_preset("demo"), has_adapter=False)
    assert ChatServer(base_only).models == {"builtin:tiny-phi": "base"}
    with_adapter = SimpleNamespace(name="my-run", config=load_preset("demo"), has_adapter=True)
    assert ChatServer(with_adapter).models == {"my-run": "adapter"}
