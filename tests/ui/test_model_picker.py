"""The Config screen's model picker (ctrl+l): the curated list and the builtins with size, licence,
whether the hub gates them and the plan's verdict for this machine (planned in a worker through the
hardware service); Enter takes one, or any hub id typed in; d downloads with bytes, rate and time left,
c cancels, and d again resumes."""

from __future__ import annotations

from textual.containers import Vertical
from textual.widgets import DataTable, Input

from humanlike_tui.ui.screens.config import ConfigScreen
from humanlike_tui.ui.screens.model_dialogs import ModelPicker
from support.fakes import GIB, FakeModels
from ui_helpers import SIZE, build, no_blink, settle, wait_until

CURATED = ("microsoft/phi-2", "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct",
           "HuggingFaceTB/SmolLM2-1.7B-Instruct", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B",
           "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "google/gemma-3-1b-it",
           "microsoft/Phi-4-mini-instruct", "builtin:tiny-phi", "builtin:smollm2-135m")


async def open_picker(pilot) -> ModelPicker:
    app = pilot.app
    await settle(pilot)
    assert isinstance(app.screen, ConfigScreen)
    await pilot.press("ctrl+l")
    await wait_until(pilot, lambda: isinstance(app.screen, ModelPicker), what="the picker")
    picker = app.screen
    await wait_until(pilot, lambda: len(picker.plans) == len(picker.choices), what="every model's plan")
    await pilot.pause(0.05)
    return picker


def cell(table: DataTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


async def highlight(pilot, picker: ModelPicker, name: str) -> None:
    table = picker.query_one(DataTable)
    while picker.highlighted.name != name:
        await pilot.press("down")
    assert table.has_focus


async def test_the_list_with_sizes_licences_gates_and_plans_then_enter_takes_one():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot)
        table = picker.query_one(DataTable)
        assert {c.name for c in picker.choices} == set(CURATED)
        assert picker.highlighted.name == "builtin:tiny-phi"  # the config's model, highlighted
        assert cell(table, "microsoft/phi-2", "size") == "2.78B" and cell(table, "microsoft/phi-2", "licence") == "MIT"
        assert cell(table, "meta-llama/Llama-3.2-1B-Instruct", "hub") == "gated"
        assert cell(table, "builtin:smollm2-135m", "hub") == "offline"
        assert cell(table, "microsoft/phi-2", "plan") == "fits"
        assert cell(table, "Qwen/Qwen3-4B", "plan") == "does not fit"
        assert cell(table, "meta-llama/Llama-3.2-3B-Instruct", "plan") == "tight"
        await highlight(pilot, picker, "Qwen/Qwen3-1.7B")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.state.config.model.name == "Qwen/Qwen3-1.7B", what="the chosen model")
        assert isinstance(app.screen, ConfigScreen)


async def test_any_hub_id_or_folder_typed_in():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot)
        await pilot.press("tab")
        assert isinstance(app.focused, Input)
        await pilot.press(*"my-org/my-model", "enter")
        await wait_until(pilot, lambda: app.state.config.model.name == "my-org/my-model", what="the typed model")
        assert picker not in app.screen_stack


async def test_download_shows_progress_cancels_and_resumes():
    models = FakeModels(size=5 * GIB, chunks=10, hold_at=4)
    app = build(initial_screen="config", models=models)
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot)
        await highlight(pilot, picker, "builtin:smollm2-135m")
        await pilot.press("d")  # a builtin: nothing to download
        assert models.calls == []
        await highlight(pilot, picker, "microsoft/phi-2")
        await pilot.press("d")
        await wait_until(pilot, models.holding.is_set, what="the download under way")
        await wait_until(pilot, lambda: "downloading microsoft/phi-2: 2.0 GB of 5.0 GB (40%), 19.1 MB/s, about "
                         in picker.download_note, what="bytes, rate and time left")
        await pilot.press("c")
        await wait_until(pilot, lambda: "cancelled; what was fetched is kept" in picker.download_note, what="cancel")
        assert models.fetched == 2 * GIB  # kept for the next try
        models.release()
        await pilot.press("d")
        await wait_until(pilot, lambda: "downloaded to /cache/microsoft/phi-2" in picker.download_note,
                         what="the resumed download")
        assert models.calls == ["microsoft/phi-2", "microsoft/phi-2"] and models.fetched == 5 * GIB


def test_model_picker_snapshot(snap_compare):
    app = build(initial_screen="config")

    async def run_before(pilot):
        await open_picker(pilot)
        no_blink(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_at_80x24_every_column_and_the_buttons_are_in_view():
    """The walk-through found the plan column, the hint, the buttons and the footer off screen at 80x24."""
    app = build(initial_screen="config")
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot)
        table = picker.query_one(DataTable)
        columns = sum(column.get_render_width(table) for column in table.columns.values())
        assert columns <= table.content_region.width  # the plan column included, no sideways scrolling
        screen = picker.region
        for widget in ("#model-other", "#model-status", "#choose", "#close", "#download"):
            region = picker.query_one(widget).region
            assert region.height > 0 and screen.contains_region(region), widget
        assert "…" in cell(table, "HuggingFaceTB/SmolLM2-1.7B-Instruct", "model")  # cut with a mark, not mid-word


async def test_a_download_without_internet_says_so_and_what_works_offline(monkeypatch):
    """The picker said 'unexpected error: LocalEntryNotFoundError: ... Name or service not known'. Here the
    real model service runs (ui/services.py, engine/models/download.py) over a hub that cannot be reached."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from humanlike_tui.ui.services import EngineModels

    def unreachable(repo_id, **kw):
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub") from \
            OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    app = build(initial_screen="config", models=EngineModels())
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot)
        await highlight(pilot, picker, "microsoft/phi-2")
        await pilot.press("d")
        await wait_until(pilot, lambda: picker.downloading is None and "phi-2:" in picker.download_note,
                         what="the download's end")
        note = picker.download_note
        assert "no connection: huggingface.co cannot be reached" in note and "builtin:smollm2-135m" in note
        assert "unexpected error" not in note and "LocalEntryNotFoundError" not in note
        box = picker.query_one(Vertical).region
        for widget in ("#model-status", "#choose", "#close"):  # the longer note leaves the buttons in view
            assert box.contains_region(picker.query_one(widget).region), widget
