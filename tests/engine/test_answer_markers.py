"""A template marker is never shown as an answer, and generation stops on the token that completes it.

The builtin tiny model with a fresh LoRA is made to write a scripted text (support/scripted_model.py;
transformers' own generate loop, stopping criteria and streamer run as usual): an answer that starts
with '### End' is an empty answer in the engine and in `chat --json` (the TUI's chat pane:
tests/ui/test_chat_markers.py), and an answer that ends with the marker stops on the marker's last token, not one later
(transformers asks the stopping criteria before it hands the token to the streamer)."""

from __future__ import annotations

import json

import pytest

from humanlike_tui import cli
from humanlike_tui.engine.inference import generator as G
from humanlike_tui.engine.inference.generator import Generator
from humanlike_tui.engine.inference.streaming import cut_answer_text
from humanlike_tui.events import AnswerDone, AnswerText
from support.scripted_model import open_tiny, scripted


@pytest.fixture(scope="module")
def gen():
    g = open_tiny()
    yield g
    g.close()


def test_eval_samples_cut_a_leading_marker():
    assert cut_answer_text("### End\nmore", "instruct") == ""
    assert cut_answer_text("Sure!### Instruct: next", "instruct") == "Sure!"


def test_an_answer_starting_with_the_end_marker_is_empty(gen):
    events = []
    settings = gen.settings(max_new_tokens=30, temperature=0)
    for side in ("base", "adapter"):
        with scripted(gen, "### End\nThen some more words"):
            answer = gen.answer(side, "How are you?", settings=settings, emit=events.append)
        assert answer.text == "" and answer.finish == "end"
    shown = "".join(e.text for e in events if isinstance(e, AnswerText))
    assert "#" not in shown and all(e.text == "" for e in events if isinstance(e, AnswerDone))


def test_generation_stops_on_the_token_that_completes_the_marker(gen):
    settings = gen.settings(max_new_tokens=40, temperature=0)
    with scripted(gen, "Fine, thanks!\n### End\nand words the model should never get to") as (ids, calls):
        pieces = []
        answer = gen.answer("adapter", "How are you?", settings=settings, emit=pieces.append)
    complete = next(n for n in range(1, len(ids)) if "### End" in gen.tok.decode(ids[:n]))
    assert answer.text == "Fine, thanks!" and answer.finish == "end"
    assert answer.tokens == complete  # the marker's last token ends it: not one more
    assert calls["n"] == complete  # and no forward pass was spent past it


def test_chat_json_never_prints_the_marker(capsys, monkeypatch):
    """The command's own path (settings, both sides, the JSON) on the tiny model; only the store lookup
    and the load are handed the model made here."""
    g = open_tiny()
    monkeypatch.setattr(G, "resolve_adapter", lambda name: G.AdapterSource(name, g.config, "/nowhere"))
    monkeypatch.setattr(Generator, "open", classmethod(lambda cls, name, **kw: g))
    with scripted(g, "### End\n### Instruct: more"):
        code = cli.main(["chat", "--adapter", "tiny-markers", "--prompt", "How are you?", "--json",
                         "--temperature", "0", "--max-new-tokens", "20"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    for side in ("base", "adapter"):
        assert data["answers"][side]["text"] == "" and data["answers"][side]["finish"] == "end"
        assert data["answers"][side]["tokens"] <= 4  # stopped at the marker, not at max_new_tokens
