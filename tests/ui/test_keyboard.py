"""Every flow with the keyboard alone (no clicks, no values set from the test): choosing a preset and
editing a field, training (start, pause, resume, stop, an earlier run), chatting (choose an adapter,
ask, stop, save, new chat), the adapter library (open, rename, export, delete, scorecard); Down in a
Select lands on the first real option, not the placeholder; the command palette offers each screen's
actions by name; and a click on a field's name or help puts the cursor in its editor (it used to focus
the scrolling form, where End scrolled away and typed digits were lost)."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Input

from humanlike_tui import config as cfgmod
from humanlike_tui.ui.screens.adapters import AdaptersScreen
from humanlike_tui.ui.screens.chat import ChatScreen
from humanlike_tui.ui.screens.chat_dialogs import ExportDialog, TextPromptDialog
from humanlike_tui.ui.screens.config import ConfigScreen
from humanlike_tui.ui.screens.dialogs import ConfirmDialog, RunPicker
from humanlike_tui.ui.screens.train import TrainScreen
from support.chat_fakes import FakeGeneration, FakeLibrary, FakeScorecard
from support.fakes import FakeClock, FakeEngine
from ui_helpers import SIZE, build, settle, wait_until


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def keyboard_app(initial_screen: str = "config", engine: FakeEngine | None = None, **kw):
    library = FakeLibrary()
    return build(engine, FakeClock(), initial_screen=initial_screen, library=library,
                 generation=FakeGeneration(library), scorecard=FakeScorecard({"rows": 1, "base": {}, "adapter": {}}),
                 transcripts_dir=kw.pop("transcripts_dir", None) or (lambda: __import__("pathlib").Path("/tmp")), **kw)


async def palette(pilot, query: str) -> None:
    """ctrl+p, type the command's words, Enter (the best match)."""
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: pilot.app.screen.__class__.__name__ == "CommandPalette", what="the palette")
    await pilot.press(*query)
    await pilot.pause(0.3)  # the providers search
    await pilot.press("enter")
    await pilot.pause(0.1)


async def test_config_by_keys_preset_and_a_field():
    app = keyboard_app("config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConfigScreen)
        await pilot.press("ctrl+r", "enter")  # the preset list opens on the first preset, not on its prompt
        first = cfgmod.preset_names()[0]
        await wait_until(pilot, lambda: f"loaded preset {first}" in [n.message for n in app._notifications],
                         what="the preset loaded")
        # Tab from the preset list into the form's fields (its scrolling panes are no focus stops)
        await pilot.press("shift+tab", "shift+tab", "shift+tab")
        for _ in range(30):
            if isinstance(app.focused, Input) and (app.focused.id or "").startswith("field-"):
                break
            await pilot.press("tab")
        editor = app.focused
        assert isinstance(editor, Input) and editor.id.startswith("field-"), app.focused
        before = editor.value
        await pilot.press("end", "backspace", "7")
        await pilot.pause(0.1)
        assert editor.value == before[:-1] + "7"


async def test_a_click_on_a_fields_name_or_help_puts_the_cursor_in_its_editor():
    app = keyboard_app("config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        field = await app.screen.form.reveal("lora.r")
        await pilot.pause(0.1)
        for part in (".field-name", ".field-note"):
            await pilot.click(f"#row-lora--r {part}")
            await pilot.pause(0.05)
            assert app.focused is field.editor
            before = field.editor.value
            await pilot.press("end", "backspace", "4", "2")
            assert field.editor.value == before[:-1] + "42"  # digits typed after End and Backspace are kept


async def test_training_by_keys():
    engine = FakeEngine(total_steps=30, hold_at=10)
    app = keyboard_app("config", engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+t")  # start from the Config screen
        await wait_until(pilot, engine.holding.is_set, what="the hold step")
        assert isinstance(app.screen, TrainScreen)
        await pilot.press("p")
        await wait_until(pilot, lambda: app.state.tracker.status == "paused", what="the pause")
        await pilot.press("r")
        await wait_until(pilot, lambda: app.state.tracker.status == "finished", what="the resumed run")
        await pilot.press("e")  # an earlier run, picked with the keyboard
        await wait_until(pilot, lambda: isinstance(app.screen, RunPicker), what="the run picker")
        await pilot.press("enter")
        await wait_until(pilot, lambda: engine.calls[-1] == "20251231-090000-demo", what="the earlier run resumed")
        await wait_until(pilot, lambda: not app.state.tracker.active, what="it to end")


async def test_chat_by_keys(tmp_path):
    app = keyboard_app("chat", transcripts_dir=lambda: tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
        assert app.focused is screen.query_one("#prompt")
        for _ in range(15):  # back to the adapter list, closed and blank
            await pilot.press("shift+tab")
            if app.focused is screen.query_one("#adapter-select"):
                break
        assert app.focused is screen.query_one("#adapter-select") and screen.query_one("#adapter-select").is_blank()
        await pilot.press("down", "enter")  # the first Down opens it on the first adapter: Enter takes it
        await wait_until(pilot, lambda: screen.loaded_name == screen.adapters[0].name, what="the first adapter")
        assert app.focused is screen.query_one("#prompt")  # chosen: typing goes to the message at once
        await pilot.press("ctrl+o", "down", "enter")  # ctrl+o opens the list too: Down is the second adapter
        await wait_until(pilot, lambda: screen.loaded_name == screen.adapters[1].name, what="the second adapter")
        assert app.focused is screen.query_one("#prompt")
        for _ in range(10):  # back to the prompt box
            if app.focused is screen.query_one("#prompt"):
                break
            await pilot.press("tab")
        await pilot.press(*"hello", "enter")
        await wait_until(pilot, lambda: screen.turns and not screen.busy, what="both answers")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptDialog), what="the save dialog")
        await pilot.press("enter")
        await wait_until(pilot, lambda: list(tmp_path.glob("*.md")), what="the transcript")
        await pilot.press("ctrl+n")
        assert screen.turns == []


async def test_adapters_by_keys():
    app = keyboard_app("adapters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, AdaptersScreen)
        await wait_until(pilot, lambda: screen.listed, what="the store")
        await pilot.press("s")  # the scorecard of the highlighted (first) run
        await wait_until(pilot, lambda: app.services.scorecard.calls, what="the scorecard")
        await wait_until(pilot, lambda: not screen.working, what="the scorecard to end")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.services.library.exports, what="the export")
        await wait_until(pilot, lambda: not screen.working and app.screen is screen, what="the export to end")
        await pilot.press("down", "down", "down")  # crashed-run
        await wait_until(pilot, lambda: screen.selected.name == "crashed-run", what="the cursor")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: "crashed-run" not in [i.name for i in screen.infos], what="the delete")
        await pilot.press("up", "up", "up", "r")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptDialog), what="the rename dialog")
        await pilot.press("end", "ctrl+u", *"renamed-by-keys", "enter")
        await wait_until(pilot, lambda: "renamed-by-keys" in [i.name for i in screen.infos], what="the rename")
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen)
                         and app.screen.loaded_name == "renamed-by-keys", what="the chat")


async def test_the_palette_offers_every_screen_action():
    app = keyboard_app("hardware")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await palette(pilot, "load preset smol-cpu")
        await wait_until(pilot, lambda: app.state.config.model.name == "builtin:smollm2-135m", what="the preset")
        assert isinstance(app.screen, ConfigScreen)
        await palette(pilot, "open an adapter in chat")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.adapters, what="the chat")
        await pilot.press("escape")
        chat = app.screen
        from humanlike_tui.ui.palette import ScreenCommands

        names = [text for text, _, _ in ScreenCommands(chat, None)._commands()]
        assert "Chat: open adapter warm-sft-v2" in names and "Chat: Serve" in names  # hidden keys too
        await palette(pilot, "open adapter warm-sft-v1")
        await wait_until(pilot, lambda: chat.loaded_name == "warm-sft-v1", what="the adapter from the palette")
        await pilot.press("f5")
        await wait_until(pilot, lambda: app.screen.listed, what="the store")
        names = [text for text, _, _ in ScreenCommands(app.screen, None)._commands()]
        for action in ("Export merged", "Rename", "Delete", "Resume", "Scorecard", "Chat"):
            assert f"Adapters: {action}" in names
        system = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Start training", "Stop training", "Pause training", "Resume training", "Load preset demo",
                      "Config screen", "Open an adapter in Chat"):
            assert title in system
