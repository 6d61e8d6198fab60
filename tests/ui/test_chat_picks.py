"""Picks on the Chat screen (issue 23): after both answers are in, prefer the left or the right answer, ask
either side for another one, or edit an answer into the wanted one; each pick is saved at once to the picks
store (the real one, in the test's home) with its exact content. A skip records nothing. At 120x40 and 80x24."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Select, TextArea
from textual.widgets._footer import FooterKey

from humanlike_tui.engine.storage import picks as P
from humanlike_tui.ui.chat_services import EnginePicks
from humanlike_tui.ui.screens.pick_dialogs import EditAnswerDialog
from support.chat_fakes import FIXED_NOW, SCRIPTS, FakeGeneration, FakeGenerator, FakeLibrary
from ui_helpers import build, wait_until

SIZES = [(120, 40), (80, 24)]
BASE, ADAPTER = "".join(SCRIPTS["base"]).strip(), "".join(SCRIPTS["adapter"]).strip()
PICK_KEYS = {"ctrl+b", "ctrl+f", "f6", "f7", "ctrl+y"}


def picks_app(generator: FakeGenerator | None = None):
    library = FakeLibrary()
    generation = FakeGeneration(make=lambda name: generator) if generator else FakeGeneration(library)
    return build(initial_screen="chat", library=library, generation=generation, picks=EnginePicks())


async def ready(pilot, prompt: str = "How was your weekend?"):
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
    screen.query_one("#adapter-select", Select).value = "warm-sft-v2"
    await wait_until(pilot, lambda: screen.loaded_name == "warm-sft-v2", what="the adapter")
    await ask(pilot, prompt)
    return screen


async def ask(pilot, prompt: str) -> None:
    screen = pilot.app.screen
    screen.query_one("#prompt").value = prompt
    await pilot.press("enter")
    await wait_until(pilot, lambda: not screen.busy, what="both answers")
    await pilot.pause(0.05)


def saved() -> list[dict]:
    path = P.collection_path("my-picks")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def until_saved(pilot, n: int) -> list[dict]:
    await wait_until(pilot, lambda: len(saved()) >= n, what=f"{n} saved picks")
    await pilot.pause(0.05)
    return saved()


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
async def test_prefer_left_and_right_save_exact_rows_once(size):
    app = picks_app()
    async with app.run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert screen.check_action("prefer_left", ()) is False  # nothing to pick before an answer
        screen = await ready(pilot)
        await pilot.press("ctrl+b")
        rows = await until_saved(pilot, 1)
        row = rows[0]
        assert {k: row[k] for k in ("prompt", "chosen", "rejected", "chosen_by", "rejected_by", "adapter",
                                    "base_model", "history", "time")} == {
            "prompt": "How was your weekend?", "chosen": BASE, "rejected": ADAPTER, "chosen_by": "base",
            "rejected_by": "adapter", "adapter": "warm-sft-v2", "base_model": "microsoft/phi-2", "history": [],
            "time": FIXED_NOW}
        assert row["settings"]["seeds"] == {"base": 0, "adapter": 0}
        assert row["settings"]["max_new_tokens"] == screen.turns[-1].settings["max_new_tokens"]
        await pilot.press("ctrl+f")
        rows = await until_saved(pilot, 2)
        assert (rows[1]["chosen_by"], rows[1]["chosen"], rows[1]["rejected"]) == ("adapter", ADAPTER, BASE)
        await pilot.press("ctrl+f")  # the same pick again: saved once
        await pilot.pause(0.2)
        assert len(saved()) == 2
        assert "Already saved" in str([n.message for n in app._notifications])

        await ask(pilot, "And today?")  # a skip: the next message without a pick records nothing
        await pilot.press("ctrl+f")
        rows = await until_saved(pilot, 3)
        assert rows[2]["history"] == [{"role": "user", "content": "How was your weekend?"},
                                      {"role": "assistant", "content": ADAPTER}]  # what the adapter saw
        assert len(saved()) == 3


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
async def test_keys_show_in_the_footer_and_palette_once_both_answers_are_in(size):
    app = picks_app()
    async with app.run_test(size=size) as pilot:
        screen = pilot.app.screen
        await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
        assert not PICK_KEYS & {k.key for k in screen.query(FooterKey)}
        await ready(pilot)
        await pilot.pause(0.1)
        shown = {k.key for k in screen.query(FooterKey)}
        assert {"ctrl+b", "ctrl+f"} <= shown  # the two picks stay when the footer is short of room
        assert "f1" in shown  # and the screen keys are not all pushed out
        if size == (120, 40):
            assert "ctrl+y" in shown
        commands = [text for text, _, _ in __import__("humanlike_tui.ui.palette", fromlist=["x"]).ScreenCommands
                    ._commands(type("P", (), {"screen": screen})())]
        for name in ("Left better", "Right better", "Left again", "Right again", "Edit answer"):
            assert f"Chat: {name}" in commands


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
async def test_another_answer_from_either_side_uses_the_next_seed(size):
    generator = FakeGenerator("warm-sft-v2")
    app = picks_app(generator)
    async with app.run_test(size=size) as pilot:
        screen = await ready(pilot)
        await pilot.press("f6")
        await wait_until(pilot, lambda: not screen.busy and screen.turns[-1].answers["base"].finish == "end",
                         what="the base's other answer")
        assert generator.calls[-1][2].seed == 1 and generator.calls[-1][1] == []
        await pilot.press("f7")
        await wait_until(pilot, lambda: not screen.busy and len(generator.calls) == 3, what="the adapter's")
        await pilot.pause(0.05)
        assert generator.calls[-1][2].seed == 1
        assert "another answer (seed 1)" in str([w.render() for w in screen.pane("adapter").query(".chat-divider")])
        await pilot.press("f7")
        await wait_until(pilot, lambda: not screen.busy and len(generator.calls) == 4, what="a third")
        await pilot.press("ctrl+b")
        rows = await until_saved(pilot, 1)
        assert rows[0]["settings"]["seeds"] == {"base": 1, "adapter": 2}


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
async def test_edit_dialog_saves_the_edit_as_chosen_and_the_model_answer_as_rejected(size):
    app = picks_app()
    async with app.run_test(size=size) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+y")
        await wait_until(pilot, lambda: isinstance(app.screen, EditAnswerDialog), what="the edit dialog")
        dialog = app.screen
        area = dialog.query_one(TextArea)
        await pilot.pause(0.05)
        for widget in (area, dialog.query_one("#ok"), dialog.query_one("#cancel")):  # all of it on screen
            assert widget.region.height >= 1 and widget.region.bottom <= size[1], widget
        assert area.text == ADAPTER  # starts from the adapter's answer
        await pilot.press("ctrl+s")  # unchanged: refused, the dialog stays
        await pilot.pause(0.05)
        assert isinstance(app.screen, EditAnswerDialog)
        assert "Unchanged" in str(dialog.query_one(".dialog-problem").render())
        dialog.query_one(Select).value = "base"  # start from the left answer instead
        await pilot.pause(0.05)
        assert area.text == BASE and dialog.side == "base"
        area.text = "Oh, lovely! Slept in. How about yours?"
        await pilot.press("ctrl+s")
        rows = await until_saved(pilot, 1)
        assert app.screen is screen
        assert (rows[0]["chosen"], rows[0]["rejected"], rows[0]["chosen_by"], rows[0]["rejected_by"]) == (
            "Oh, lovely! Slept in. How about yours?", BASE, "edited", "base")
        await pilot.press("ctrl+y")  # cancelled: nothing recorded
        await wait_until(pilot, lambda: isinstance(app.screen, EditAnswerDialog), what="the edit dialog")
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.screen is screen and len(saved()) == 1


async def test_a_stopped_answer_cannot_be_preferred_but_can_be_asked_again():
    generator = FakeGenerator("warm-sft-v2", hold_after=3)
    app = picks_app(generator)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = pilot.app.screen
        await wait_until(pilot, lambda: screen.adapters is not None)
        screen.query_one("#adapter-select", Select).value = "warm-sft-v2"
        await wait_until(pilot, lambda: screen.loaded_name == "warm-sft-v2")
        screen.query_one("#prompt").value = "Hi"
        await pilot.press("enter")
        await wait_until(pilot, generator.holding.is_set, what="mid-answer")
        assert screen.check_action("prefer_left", ()) is False  # hidden while answers are written
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.busy, what="the stop")
        assert screen.check_action("prefer_left", ()) is None  # shown dimmed: the base answer was stopped
        screen.action_prefer_left()
        await pilot.pause(0.1)
        assert saved() == []
        assert screen.check_action("again_left", ()) is True


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
async def test_the_adapters_screen_lists_each_collection_with_its_count(size):
    from humanlike_tui.ui.widgets.picks_panel import PicksPanel

    for i, name in enumerate(["other", "my-picks", "my-picks", "my-picks"]):
        P.append_pick(name, P.pick_row(prompt="p", chosen="a?", rejected="b.", chosen_by="base",
                                       rejected_by="adapter", when=FIXED_NOW + i))
    app = build(initial_screen="adapters", picks=EnginePicks())
    async with app.run_test(size=size) as pilot:
        panel = app.screen.query_one(PicksPanel)
        await wait_until(pilot, lambda: panel.collections is not None, what="the picks")
        assert panel.collections == [("my-picks", 3), ("other", 1)]
        text = str(panel.render())
        assert "Picks: my-picks 3 · other 1" in text and "data.source = picks:my-picks" in text
        assert panel.region.height >= 1  # on screen, not squeezed out
    async with build(initial_screen="adapters").run_test(size=size) as pilot:  # no picks service: no panel
        assert not pilot.app.screen.query_one(PicksPanel).display


async def test_a_pick_keeps_the_persona_the_answers_were_given_under():
    app = picks_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = pilot.app.screen
        await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
        screen.query_one("#adapter-select", Select).value = "warm-sft-v2"
        await wait_until(pilot, lambda: screen.loaded_name == "warm-sft-v2", what="the adapter")
        screen.persona = "You are a warm friend."
        await ask(pilot, "Hi")
        screen.persona = "Changed after the answers."  # applies from the next message on, not to this pick
        await pilot.press("ctrl+f")
        rows = await until_saved(pilot, 1)
        assert rows[0]["system"] == "You are a warm friend."
        assert P.export_rows(P.read_picks("my-picks").rows)[0]["prompt"] == [
            {"role": "system", "content": "You are a warm friend."}, {"role": "user", "content": "Hi"}]


async def test_no_pick_keys_when_one_side_was_never_asked():
    from humanlike_tui.ui.chat_transcript import SideAnswer

    app = picks_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        assert screen.check_action("prefer_left", ()) is True
        screen.turns[-1].answers["adapter"] = SideAnswer()  # as when a base model alone answers
        assert {screen.check_action(a, ()) for a in ("prefer_left", "prefer_right", "again_left", "again_right",
                                                     "edit_answer")} == {False}


async def test_picks_go_to_the_collection_chosen_in_the_palette():
    from humanlike_tui.ui.screens.chat_dialogs import TextPromptDialog

    app = picks_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        command = next(c for c in screen.palette_commands() if c[0] == "picks collection…")
        command[2]()
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptDialog) and app.screen.query("#answer"),
                         what="the name dialog")
        app.screen.query_one("#answer").value = "bad name"
        await pilot.press("enter")
        assert isinstance(app.screen, TextPromptDialog)  # refused with the rule
        app.screen.query_one("#answer").value = "evening-chats"
        await pilot.press("enter")
        await pilot.pause(0.05)
        await pilot.press("ctrl+b")
        await wait_until(pilot, lambda: P.collection_path("evening-chats").exists(), what="the pick")
        assert P.read_picks("evening-chats").rows[0]["chosen_by"] == "base" and saved() == []
