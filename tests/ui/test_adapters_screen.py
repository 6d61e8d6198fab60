"""Adapters screen on a scripted library: the table with incomplete runs marked, details, rename,
delete with confirmation, export, open in Chat, resume; plus a snapshot."""

from __future__ import annotations

import time

import pytest
from textual.widgets import DataTable, Input, Select, Static

from humanlike_tui.records import FIGURES
from humanlike_tui.ui.screens.adapters import AdaptersScreen
from humanlike_tui.ui.screens.chat import ChatScreen
from humanlike_tui.ui.screens.chat_dialogs import ExportDialog, TextPromptDialog
from humanlike_tui.ui.screens.dialogs import ConfirmDialog
from support.chat_fakes import FIXED_NOW, FakeGeneration, FakeLibrary, FakeScorecard, fake_info
from support.fakes import FakeEngine
from ui_helpers import SIZE, build, no_blink, wait_until


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Dates are shown in local time: pin the zone so tests and snapshots read the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def library_app(library: FakeLibrary | None = None, engine: FakeEngine | None = None,
                scorecard: FakeScorecard | None = None):
    library = library or FakeLibrary()
    app = build(engine, initial_screen="adapters", library=library, generation=FakeGeneration(library),
                scorecard=scorecard)
    return app, app.services


async def listed(pilot) -> AdaptersScreen:
    screen = pilot.app.screen
    assert isinstance(screen, AdaptersScreen)
    await wait_until(pilot, lambda: screen.listed, what="the library")
    await pilot.pause(0.05)
    return screen


def cell_text(table: DataTable, row: int, column: int) -> str:
    return str(table.get_cell_at((row, column)))


async def highlight(pilot, screen: AdaptersScreen, name: str) -> None:
    table = screen.query_one(DataTable)
    table.move_cursor(row=[i.name for i in screen.infos].index(name))
    await wait_until(pilot, lambda: name in screen.details, what="the details")
    await pilot.pause(0.02)


async def test_table_shows_every_run_with_incomplete_ones_marked():
    app, _ = library_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        table = screen.query_one(DataTable)
        assert table.row_count == 4
        assert [cell_text(table, 0, c) for c in range(8)] == [
            "warm-sft-v2", "finished", "microsoft/phi-2", "…ike-DPO-Dataset", "60/60", "1.8421", "2026-01-01 11:00",
            "58.0 MB"]
        assert cell_text(table, 1, 1) == "⚠ paused" and cell_text(table, 3, 1) == "⚠ interrupted"
        assert cell_text(table, 3, 5) == "—"  # no eval loss yet
        assert "2 incomplete (no finished adapter): u resumes" in str(screen.query_one("#library-status").render())
        await highlight(pilot, screen, "warm-sft-v2")
        details = str(screen.query_one("#details", Static).render())
        assert "LoRA r 16" in details and "checkpoints at step 30, 60" in details and "enter/o: chat" in details
        await highlight(pilot, screen, "cozy-dpo")
        assert "u resumes it from step 30" in str(screen.query_one("#details", Static).render())
        assert screen.check_action("open_in_chat", ()) is None and screen.check_action("export", ()) is None
        assert screen.check_action("resume", ()) is True
        await highlight(pilot, screen, "crashed-run")
        # Killed before its first checkpoint: resume restarts it from step 0.
        assert screen.check_action("resume", ()) is True and screen.check_action("delete", ()) is True
        assert "u resumes it from the start (no checkpoint yet)" in str(screen.query_one("#details", Static).render())


TWINS = ("20261202-133012-tiny-phi-sft", "20261202-133455-tiny-phi-sft")


@pytest.mark.parametrize("size", [SIZE, (80, 24)])
async def test_runs_of_one_day_can_be_told_apart(size):
    """Names cut at their end (the stamp stays), the time beside the date, the name taking the spare width."""
    infos = [fake_info(name, created=FIXED_NOW + i * 283, base="builtin:tiny-phi") for i, name in enumerate(TWINS)]
    app, _ = library_app(FakeLibrary(infos=infos))
    async with app.run_test(size=size) as pilot:
        screen = await listed(pilot)
        table = screen.query_one(DataTable)
        titles = [str(c.label) for c in table.ordered_columns]
        names = [cell_text(table, r, 0) for r in range(2)]
        assert names[0] != names[1] and all(n.startswith(t[:16]) for n, t in zip(names, TWINS))
        assert "Started" in titles
        started = [cell_text(table, r, titles.index("Started")) for r in range(2)]
        assert started == ["2026-01-01 12:00", "2026-01-01 12:04"]
        used = sum(c.get_render_width(table) for c in table.ordered_columns)
        assert used >= size[0] - 4  # the name column took what the others leave
        if size == SIZE:
            assert names == list(TWINS) and len(titles) >= 7  # whole at 120 columns, with nearly every column


async def test_rename_checks_the_name_then_renames():
    app, services = library_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v1")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptDialog), what="the rename dialog")
        dialog = app.screen
        box = dialog.query_one(Input)
        assert box.value == "warm-sft-v1"

        def problem() -> str:
            return str(dialog.query_one(".dialog-problem").render())

        box.value = "../evil"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "not a valid run name" in problem(), what="the bad name refused")
        box.value = "warm-sft-v2"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "already exists" in problem(), what="the taken name refused")
        assert app.screen is dialog and services.library.names()[2] == "warm-sft-v1"  # nothing renamed yet
        box.value = "warm-final"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "warm-final" in [i.name for i in screen.infos], what="the rename")
        assert "warm-sft-v1" not in [i.name for i in screen.infos]
        await wait_until(pilot, lambda: not screen.working, what="the screen to settle")
        assert screen.selected.name == "warm-final"  # the renamed run stays highlighted


async def test_renaming_the_chat_adapter_renames_it_in_the_chat():
    app, services = library_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v2")
        await pilot.press("o")  # open it in Chat
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.loaded_name == "warm-sft-v2",
                         what="the chat's model")
        chat = app.screen
        await pilot.press("f5")
        screen = await listed(pilot)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptDialog), what="the rename dialog")
        await pilot.press("end", "ctrl+u", *"warm-final", "enter")
        await wait_until(pilot, lambda: "warm-final" in [i.name for i in screen.infos], what="the rename")
        await pilot.press("f4")
        await wait_until(pilot, lambda: app.screen is chat and chat.adapters is not None
                         and "warm-final" in [a.name for a in chat.adapters], what="the chat's list")
        await pilot.pause(0.05)
        assert chat.loaded_name == "warm-final" and app.state.chat.name == "warm-final"
        assert str(chat.pane("adapter").query_one(".pane-title").render()) == "Adapter warm-final"
        assert "warm-final on microsoft/phi-2" in chat.status_text() and "warm-sft-v2" not in chat.status_text()
        assert chat.query_one("#adapter-select", Select).value == "warm-final"
        assert services.generation.opened[0].closed is False  # the same model: nothing loaded again
        assert len(services.generation.opened) == 1


async def test_delete_asks_first():
    app, services = library_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "crashed-run")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        assert "crashed-run" in [i.name for i in screen.infos] and not screen.working
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
        await pilot.press("y")
        await wait_until(pilot, lambda: "crashed-run" not in [i.name for i in screen.infos], what="the delete")
        assert len(screen.infos) == 3 and services.library.adapters() == screen.infos


async def test_export_writes_where_asked_and_errors_are_shown(tmp_path):
    library = FakeLibrary()
    app, _ = library_app(library)
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v2")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
        app.screen.query_one("#folder", Input).value = str(tmp_path / "merged")
        await pilot.press("enter")
        await wait_until(pilot, lambda: library.exports, what="the export")
        assert library.exports == [("warm-sft-v2", tmp_path / "merged", "auto")]
        await wait_until(pilot, lambda: not screen.working, what="the screen to settle")
        library.fail_export = "/x exists and is not empty; give a new folder"
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("not empty" in str(n.message) for n in app._notifications),
                         what="the error")
        await highlight(pilot, screen, "cozy-dpo")
        await pilot.press("x")  # an unfinished run has nothing to export: the key does nothing
        await pilot.pause(0.05)
        assert not isinstance(app.screen, ExportDialog)


async def test_open_in_chat_loads_the_adapter():
    app, services = library_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v1")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the Chat screen")
        chat = app.screen
        await wait_until(pilot, lambda: chat.loaded_name == "warm-sft-v1", what="the adapter")
        assert [g.name for g in services.generation.opened] == ["warm-sft-v1"]


async def test_resume_an_incomplete_run():
    engine = FakeEngine(total_steps=60, eval_every=0)
    app, _ = library_app(engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "cozy-dpo")
        await pilot.press("u")
        await wait_until(pilot, lambda: engine.calls, what="the resumed run")
        assert engine.calls == ["cozy-dpo"]


async def test_empty_store():
    app, _ = library_app(FakeLibrary(infos=[]))
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        assert "No runs yet" in str(screen.query_one("#adapters-empty", Static).render())
        assert screen.check_action("delete", ()) is None


def test_adapters_screen_snapshot(snap_compare):
    app, _ = library_app()

    async def run_before(pilot):
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v2")
        no_blink(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def full_card() -> dict:
    """A scorecard with every figure, as engine.evaluation's Scorecard.to_dict() gives it."""
    base = {"preference_accuracy": 0.42, "preference_margin": -0.125, "reward_accuracy": None, "eval_loss": 2.5,
            "perplexity": 12.18, "ai_disclaimer_rate": 0.3, "emoji_rate": 0.0, "question_rate": 0.1,
            "exclamation_rate": 0.05, "contractions_per_100_words": 1.5, "mean_words": 80.0, "distinct_2": 0.61,
            "repeated_ngram_rate": 0.08, "stopped_rate": 0.9}
    adapter = {**base, "preference_accuracy": 0.875, "preference_margin": 0.25, "reward_accuracy": 0.8125,
               "eval_loss": 1.75, "perplexity": 5.75, "ai_disclaimer_rate": 0.0, "emoji_rate": 0.125,
               "question_rate": 0.375, "contractions_per_100_words": 4.25, "mean_words": 40.0}
    chosen = {k: None for k in base} | {"ai_disclaimer_rate": 0.0, "emoji_rate": 0.2, "question_rate": 0.4,
                                        "exclamation_rate": 0.3, "contractions_per_100_words": 5.0, "mean_words": 35.0}
    rejected = chosen | {"ai_disclaimer_rate": 0.6, "emoji_rate": 0.0, "mean_words": 120.0}
    return {"run_id": "warm-sft-v2", "base_model": "microsoft/phi-2", "rows": 50, "prompts": 50,
            "data_source": "HumanLLMs/Human-Like-DPO-Dataset", "settings": {"seed": 0, "max_new_tokens": 200},
            "base": base, "adapter": adapter, "reference": {"chosen": chosen, "rejected": rejected}, "samples": []}


def rendered(renderable, width: int) -> str:
    import io

    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


async def scored_screen(pilot, card_shown: str = "87.5%") -> AdaptersScreen:
    screen = await listed(pilot)
    await highlight(pilot, screen, "warm-sft-v2")
    await pilot.press("s")
    await wait_until(pilot, lambda: screen.query_one("#scorecard").display and not screen.working,
                     what="the scorecard")
    await pilot.pause(0.05)
    return screen


async def test_the_whole_scorecard_is_shown_as_eval_prints_it():
    app, services = library_app(scorecard=FakeScorecard(full_card()))
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "cozy-dpo")
        assert screen.check_action("scorecard", ()) is None  # unfinished: nothing to score
        screen = await scored_screen(pilot)
        assert services.scorecard.calls == [("warm-sft-v2", None)]
        box = screen.query_one("#details-box")
        table = screen.query_one("#scorecard", Static).content  # the rich Table drawn there
        text = rendered(table, box.scrollable_content_region.width)
        for key, label, _ in FIGURES[:-1]:  # every figure of `eval`, with its four columns (no judge in this card)
            line = next(line for line in text.splitlines() if label[:20] in line)
            assert len(line.split()) >= 4, line
        assert "base → adapter" in text and "data: chosen" in text and "data: rejected" in text
        assert "87.5%" in text and "81.2%" in text and "60.0%" in text  # adapter, DPO reward accuracy, rejected
        assert "50 held-out rows, 50 prompts from HumanLLMs/Human-Like-DPO-Dataset" in text
        assert box.max_scroll_y == 0  # all of it in view at 120x40: nothing cut, no blank screen above


def test_scorecard_snapshot(snap_compare):
    app, _ = library_app(scorecard=FakeScorecard(full_card()))

    async def run_before(pilot):
        await scored_screen(pilot)
        no_blink(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_scorecard_borrows_the_model_the_chat_has_loaded():
    app, services = library_app(scorecard=FakeScorecard({"rows": 1, "base": {}, "adapter": {}}))
    calls = services.scorecard.calls
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await wait_until(pilot, lambda: chat.adapters is not None, what="the adapter list")
        chat.request_adapter("warm-sft-v2")
        await wait_until(pilot, lambda: chat.loaded_name == "warm-sft-v2", what="the chat's model")
        await pilot.press("f5")
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v2")
        await pilot.press("s")
        await wait_until(pilot, lambda: calls and not screen.working, what="the scorecard")
        assert calls == [("warm-sft-v2", chat.generator)]  # the chat's generator, not a new load
        await highlight(pilot, screen, "warm-sft-v1")
        await pilot.press("s")
        await wait_until(pilot, lambda: len(calls) == 2 and not screen.working, what="the second scorecard")
        assert calls[1] == ("warm-sft-v1", None)  # the chat holds another adapter: the scorecard loads its own


class SlowStore(FakeLibrary):
    """A store whose reads and renames take a while: each adapters() call copies the list when it starts
    and returns it after the next of `delays` seconds, so an older read can come back after a newer one."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []
        self.rename_s = 0.0

    def adapters(self):
        infos = super().adapters()
        time.sleep(self.delays.pop(0) if self.delays else 0)
        return infos

    def rename(self, old: str, new: str) -> None:
        time.sleep(self.rename_s)
        super().rename(old, new)


async def rename_to(pilot, new: str) -> None:
    await pilot.press("r")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, TextPromptDialog), what="the rename dialog")
    await pilot.press("end", "ctrl+u", *new, "enter")
    await wait_until(pilot, lambda: not isinstance(pilot.app.screen, TextPromptDialog), what="the dialog to close")


def names_in_table(screen: AdaptersScreen) -> list[str]:
    table = screen.query_one(DataTable)
    return [cell_text(table, row, 0).removeprefix("● ") for row in range(table.row_count)]


async def test_renames_in_quick_succession_keep_the_new_name_and_the_mark():
    """The rename dialog closing shows the screen again, which reads the store while the rename is under
    way; that read came back after the rename's own read and put the old name back in the table (then
    Export said 'no run named ...') and dropped the mark."""
    library = SlowStore()
    app, services = library_app(library)
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v1")
        await pilot.press("space")  # marked for comparison
        library.rename_s = 0.3
        for new in ("warm-final", "warm-final-2"):
            library.delays = [1.0, 0.1]  # the read on showing the screen again answers last
            # r is refused while a rename is under way: the next one starts as soon as the screen allows it,
            # while the slow read of the screen shown again is still out
            await wait_until(pilot, lambda: not screen.working, what="the previous rename")
            await rename_to(pilot, new)
        await wait_until(pilot, lambda: not screen.working and "warm-final-2" in library.names(), what="the renames")
        await pilot.pause(1.2)  # every read has come back
        assert library.names()[2] == "warm-final-2" and "warm-final" not in library.names()
        assert names_in_table(screen)[2] == "warm-final-2"
        assert screen.marked == ["warm-final-2"] and cell_text(screen.query_one(DataTable), 2, 0) == "● warm-final-2"
        assert screen.selected.name == "warm-final-2"
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
        await pilot.press("enter")
        await wait_until(pilot, lambda: library.exports, what="the export")
        assert library.exports[0][0] == "warm-final-2"


async def test_deleting_the_chat_adapter_warns_then_closes_it_in_the_chat():
    """Deleting the adapter the Chat had loaded said nothing, and the Chat went on answering with it (and
    ctrl+g would have served it)."""
    app, services = library_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v2")
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.loaded_name == "warm-sft-v2",
                         what="the chat's model")
        chat = app.screen
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: chat.server is not None, what="the server")
        await pilot.press("f5")
        screen = await listed(pilot)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
        question = " ".join(str(w.render()) for w in app.screen.query(Static))
        assert "The Chat screen has this adapter loaded: it is closed there" in question
        await pilot.press("y")
        await wait_until(pilot, lambda: services.generation.opened[0].closed, what="the chat's model closed")
        assert app.state.chat.generator is None and chat.loaded_name is None
        assert services.generation.served[0].stopped and chat.server is None
        assert "warm-sft-v2" not in [i.name for i in screen.infos]
        await pilot.press("f4")
        await wait_until(pilot, lambda: app.screen is chat)
        assert "warm-sft-v2" not in chat.status_text() and "warm-sft-v2" not in [a.name for a in chat.adapters]
        await pilot.press(*"hello", "enter")
        await pilot.pause(0.1)
        assert services.generation.opened[0].calls == []  # nothing answered with the deleted adapter
        assert "Choose an adapter first (ctrl+o)." in [n.message for n in app._notifications]


async def test_export_dialog_offers_gguf_and_the_merge_in_the_words_of_the_cli(tmp_path):
    """The dialog said 'the base model in full precision' while the export merged into the trained nf4 base,
    and offered neither GGUF nor the merge choice: now both, in `adapters export --help`'s words."""
    from textual.widgets import Select

    from humanlike_tui.cli import build_parser
    from humanlike_tui.records import EXPORT_FORMATS, EXPORT_MERGE_INTO

    library = FakeLibrary()
    app, _ = library_app(library)
    async with app.run_test(size=SIZE) as pilot:
        screen = await listed(pilot)
        await highlight(pilot, screen, "warm-sft-v2")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
        dialog = app.screen
        shown = " ".join(str(o[0]) for sel in dialog.query(Select) for o in sel._options)
        assert "full precision" not in " ".join(str(w.render()) for w in dialog.query("Static"))
        for words in (*EXPORT_FORMATS.values(), *EXPORT_MERGE_INTO.values()):
            assert words in shown, words
        assert dialog.query_one("#dtype", Select).display and not dialog.query_one("#quant", Select).display
        dialog.query_one("#format", Select).value = "gguf"
        await pilot.pause(0.05)
        assert dialog.query_one("#quant", Select).display and not dialog.query_one("#dtype", Select).display
        dialog.query_one("#quant", Select).value = "q4_0"
        dialog.query_one("#merge-into", Select).value = "original"
        dialog.query_one("#folder", Input).value = str(tmp_path / "gguf")
        await pilot.press("enter")
        await wait_until(pilot, lambda: library.exports, what="the export")
        assert library.export_choices == [("gguf", "q4_0", "original")]
    from humanlike_tui.engine.storage import gguf_export
    from humanlike_tui.records import GGUF_QUANTS

    assert GGUF_QUANTS == gguf_export.GGUF_QUANTS  # the dialog offers what the exporter writes
    parser = build_parser(commands=["adapters"])
    helptext = " ".join(parser._subparsers._group_actions[0].choices["adapters"]._subparsers._group_actions[0]
                        .choices["export"].format_help().split())
    for words in (*EXPORT_FORMATS.values(), *EXPORT_MERGE_INTO.values()):
        assert " ".join(words.split()) in helptext, words
