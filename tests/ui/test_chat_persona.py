"""The persona on the Chat screen (issue 22.4): the run's data.system_prompt is used and shown in the
transcript when the adapter opens, F8 edits it (the change shown where it starts to apply), every answer
is asked with it, and the saved transcript says which persona each turn had."""

from __future__ import annotations

from textual.widgets import Input

from humanlike_tui.config import load_preset
from humanlike_tui.ui.screens.chat_dialogs import TextPromptDialog
from support.chat_fakes import FakeGenerator
from ui_helpers import wait_until

from test_chat_screen import ask, chat_app, one, open_adapter

PERSONA = "You are Sam: warm, curious, brief."


def transcript(screen, side: str) -> str:
    return "\n".join(str(w.render()) for w in screen.pane(side).column.children)


async def test_the_runs_persona_is_used_shown_and_editable(tmp_path):
    generator = FakeGenerator("warm-sft-v2", load_preset("demo").replace(**{"data.system_prompt": PERSONA}))
    app = chat_app(one(generator))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_adapter(pilot)
        assert screen.persona == PERSONA
        assert f"persona: {PERSONA}" in transcript(screen, "base") and f"persona: {PERSONA}" in transcript(screen, "adapter")
        await ask(pilot, screen, "hi!")
        assert generator.systems == [PERSONA]

        await pilot.press("f8")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptDialog), what="the persona dialog")
        assert app.screen.query_one("#answer", Input).value == PERSONA
        app.screen.query_one("#answer", Input).value = "You are Robin, cheeky."
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.persona == "You are Robin, cheeky.", what="the new persona")
        assert "persona: You are Robin, cheeky." in transcript(screen, "adapter")
        await ask(pilot, screen, "and now?")
        assert generator.systems == [PERSONA, "You are Robin, cheeky."]

        screen.save_transcript(str(tmp_path / "t.md"))
        text = (tmp_path / "t.md").read_text(encoding="utf-8")
        assert text.index(f"*persona: {PERSONA}*") < text.index("## 1. You") < \
            text.index("*persona: You are Robin, cheeky.*") < text.index("## 2. You")
