"""The Chat screen on the real generator (the builtin tiny model, support/scripted_model.py) never
shows a template marker: an answer that starts with '### End' shows as no answer, in both panes,
and the marker never flashes while the answer streams."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select

from humanlike_tui.ui.screens.chat import ChatScreen
from humanlike_tui.ui.widgets.chat_pane import ChatPane
from support.chat_fakes import FakeGeneration, FakeLibrary, fake_info
from ui_helpers import SIZE, build, wait_until


@pytest.fixture(scope="module")
def tiny():
    from support.scripted_model import open_tiny

    g = open_tiny()
    yield g
    g.close()


async def test_an_answer_that_starts_with_the_end_marker_shows_as_no_answer(tiny, monkeypatch):
    from support.scripted_model import scripted

    library = FakeLibrary(infos=[fake_info("tiny-markers", base="builtin:tiny-phi")])
    generation = FakeGeneration(library, make=lambda name: tiny)
    tiny_close = tiny.close
    monkeypatch.setattr(tiny, "close", lambda: None)  # the module's generator outlives the app
    drawn: list[str] = []
    append = ChatPane.append
    monkeypatch.setattr(ChatPane, "append", lambda pane, text: (drawn.append(text), append(pane, text))[1])
    app = build(initial_screen="chat", library=library, generation=generation)
    with scripted(tiny, "### End\nThen some more words"):
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
            screen.query_one("#adapter-select", Select).value = "tiny-markers"
            await wait_until(pilot, lambda: screen.loaded_name == "tiny-markers", what="the model")
            screen.query_one("#prompt", Input).value = "How are you?"
            await pilot.press("enter")
            await wait_until(pilot, lambda: not screen.busy, timeout=120, what="both answers")
            await pilot.pause(0.1)
            for side in ("base", "adapter"):
                assert screen.turns[0].answers[side].text == "" and screen.turns[0].answers[side].finish == "end"
                shown = " ".join(str(w.render()) for w in screen.pane(side).query(".chat-answer"))
                assert "(no answer)" in shown and "###" not in shown
            assert not any("#" in piece for piece in drawn)
    monkeypatch.setattr(tiny, "close", tiny_close)
