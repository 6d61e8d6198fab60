"""The charts people expect: beside the loss on the Train screen, memory, learning rate, tokens/s,
gradient norm and DPO's reward margin and accuracy (c cycles them); on the Adapters screen the loss
curves of two or more marked runs overlaid."""

from __future__ import annotations

import time

import pytest

from humanlike_tui.ui.screens.adapters import AdaptersScreen
from humanlike_tui.ui.widgets.charts import CompareChart, MetricChart, VramChart
from support.chat_fakes import FakeGeneration, FakeLibrary
from support.fakes import FakeClock, FakeEngine, ramp_readings
from ui_helpers import SIZE, build, no_blink, run_to_hold, wait_until


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def dpo_scene():
    engine, clock = FakeEngine(total_steps=60, eval_every=15, hold_at=45, method="dpo"), FakeClock()
    return build(engine, clock), engine, clock


async def test_c_cycles_the_charts_beside_the_loss():
    app, engine, clock = dpo_scene()
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock, readings=10, pattern=ramp_readings)
        screen = app.screen
        assert screen.chart == "memory" and screen.query_one(VramChart).display
        seen = {}
        for _ in range(4):
            await pilot.press("c")
            await pilot.pause(0.05)
            chart = screen.query_one(MetricChart)
            assert chart.display and not screen.query_one(VramChart).display
            seen[screen.chart] = (chart.shown_title, chart.shown_points)
        assert seen["lr"] == ("learning rate", 45)
        assert seen["speed"] == ("tokens/s", 45)
        assert seen["grad"] == ("gradient norm (before clipping)", 45)
        assert seen["reward"] == ("DPO reward margin (left) and accuracy (right)", 90)  # margin and accuracy
        t = app.state.tracker
        assert t.reward_accuracies[-1] == (45, min(1.0, 0.5 + 45 / 80))
        await pilot.press("c")
        assert screen.chart == "memory"


def test_dpo_reward_chart_snapshot(snap_compare):
    app, engine, clock = dpo_scene()

    async def run_before(pilot):
        await run_to_hold(pilot, engine, clock, readings=10, pattern=ramp_readings)
        await pilot.press("c", "c", "c", "c")
        await pilot.pause(0.3)
        app.redraw_train()
        no_blink(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_an_sft_run_says_its_reward_chart_is_empty():
    engine, clock = FakeEngine(total_steps=20, hold_at=5), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock, readings=2)
        await pilot.press("c", "c", "c", "c")
        await pilot.pause(0.1)
        chart = app.screen.query_one(MetricChart)
        assert chart.shown_note.startswith("an SFT run has no reward margin")
        # written inside the box, where it shows (as part of the title, plotext left the title out)
        drawn = screen_text(app)
        assert "an SFT run has no reward" in drawn and "DPO reward margin" in drawn


def screen_text(app) -> str:
    """What the terminal shows, as plain text."""
    import io

    from rich.console import Console

    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def library_app():
    library = FakeLibrary()
    return build(initial_screen="adapters", library=library, generation=FakeGeneration(library))


async def marked_and_compared(pilot) -> AdaptersScreen:
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.listed, what="the store")
    await pilot.press("space", "down", "down", "space", "down")  # warm-sft-v2 and warm-sft-v1, cursor elsewhere
    await pilot.press("c")
    await wait_until(pilot, lambda: screen.has_class("-comparing"), what="the compare chart")
    return screen


async def test_marked_runs_loss_curves_overlaid():
    app = library_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.listed, what="the store")
        await pilot.press("c")  # nothing marked: says how
        assert not screen.has_class("-comparing")
        assert any("Mark two or more runs" in n.message for n in app._notifications)
        screen = await marked_and_compared(pilot)
        assert screen.marked == ["warm-sft-v2", "warm-sft-v1"]
        assert screen.query_one(CompareChart).shown_runs == ("warm-sft-v2", "warm-sft-v1")
        assert not screen.query_one("#details-box").display
        from textual.widgets import DataTable

        assert str(screen.query_one(DataTable).get_cell("warm-sft-v1", "Name")).startswith("● ")
        await pilot.press("c")  # back to the details
        assert not screen.has_class("-comparing") and screen.query_one("#details-box").display


async def test_a_renamed_marked_run_stays_marked():
    from textual.widgets import DataTable

    app = library_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await marked_and_compared(pilot)
        screen._change("rename", "warm-sft-v1", "warm-sft-v1b")
        await wait_until(pilot, lambda: "warm-sft-v1b" in {i.name for i in screen.infos}, what="the rename")
        await pilot.pause(0.05)
        assert screen.marked == ["warm-sft-v2", "warm-sft-v1b"]
        assert str(screen.query_one(DataTable).get_cell("warm-sft-v1b", "Name")).startswith("● ")


def test_compare_chart_snapshot(snap_compare):
    app = library_app()

    async def run_before(pilot):
        await marked_and_compared(pilot)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_step_ticks_are_whole_steps():
    from humanlike_tui.ui.widgets.charts import step_ticks

    assert step_ticks(600) == [0, 150, 300, 450, 600]
    assert step_ticks(7) == [0, 2, 4, 5, 7] and step_ticks(1) == [0, 1]
