"""Loading a model for chat or the scorecard while a run trains on the GPU asks first: pause the
run (then load once it has let go of the GPU), go ahead anyway, or cancel. On the CPU nothing asks."""

from __future__ import annotations

from textual.widgets import Select

from humanlike_tui.ui.screens.chat import ChatScreen
from humanlike_tui.ui.screens.dialogs import GpuShareDialog
from support.chat_fakes import FakeGeneration, FakeLibrary, FakeScorecard
from support.fakes import FakeClock, FakeEngine
from ui_helpers import SIZE, build, run_to_hold, wait_until

ADAPTER = "warm-sft-v2"


def app_with_run(device: str = "NVIDIA GeForce RTX 4060 Laptop GPU (bf16)"):
    engine, clock = FakeEngine(total_steps=20, hold_at=5, device=device), FakeClock()
    library = FakeLibrary()
    generation = FakeGeneration(library)
    app = build(engine, clock, library=library, generation=generation,
                scorecard=FakeScorecard({"rows": 1, "base": {}, "adapter": {}}))
    return app, engine, clock, generation


async def choose_adapter(pilot) -> ChatScreen:
    await pilot.press("f4")
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
    screen.query_one("#adapter-select", Select).value = ADAPTER
    return screen


async def answer(pilot, key: str) -> None:
    """Wait for the GPU question and press `key` (escape, g or p)."""
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, GpuShareDialog), what="the question")
    await pilot.press(key)


async def test_cancel_loads_nothing_and_training_goes_on():
    app, engine, clock, chat = app_with_run()
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        screen = await choose_adapter(pilot)
        await answer(pilot, "escape")
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        await pilot.pause(0.1)
        assert chat.opened == [] and screen.loaded_name is None and screen.opening is None
        assert screen.query_one("#adapter-select", Select).is_blank()  # the choice is undone
        assert app.state.tracker.status == "training"
        engine.release()


async def test_go_ahead_loads_beside_the_run():
    app, engine, clock, chat = app_with_run()
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        screen = await choose_adapter(pilot)
        await answer(pilot, "g")
        await wait_until(pilot, lambda: screen.loaded_name == ADAPTER, what="the adapter")
        assert app.state.tracker.status == "training" and len(chat.opened) == 1
        engine.release()


async def test_pause_first_loads_once_the_run_has_let_go():
    app, engine, clock, chat = app_with_run()
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        screen = await choose_adapter(pilot)
        await answer(pilot, "p")
        await wait_until(pilot, lambda: app.state.tracker.status == "paused", what="the pause")
        await wait_until(pilot, lambda: screen.loaded_name == ADAPTER, what="the adapter after the pause")
        assert len(chat.opened) == 1 and app._after_gpu_free == []
        assert app.state.tracker.can_resume  # r on the Train screen picks the run up again


async def test_training_on_the_cpu_does_not_ask():
    app, engine, clock, chat = app_with_run(device="CPU (fp32)")
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        screen = await choose_adapter(pilot)
        await wait_until(pilot, lambda: screen.loaded_name == ADAPTER, what="the adapter")
        assert not isinstance(app.screen, GpuShareDialog) and app.state.tracker.status == "training"
        engine.release()


async def test_no_run_no_question():
    app, _, _, chat = app_with_run()
    async with app.run_test(size=SIZE) as pilot:
        screen = await choose_adapter(pilot)
        await wait_until(pilot, lambda: screen.loaded_name == ADAPTER, what="the adapter")
        assert len(chat.opened) == 1


async def test_the_scorecard_asks_too_and_runs_after_the_pause():
    from textual.widgets import DataTable

    from humanlike_tui.ui.screens.adapters import AdaptersScreen

    app, engine, clock, chat = app_with_run()
    scored = app.services.scorecard.calls
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        await pilot.press("f5")
        screen = app.screen
        assert isinstance(screen, AdaptersScreen)
        await wait_until(pilot, lambda: screen.listed, what="the library")
        screen.query_one(DataTable).move_cursor(row=[i.name for i in screen.infos].index(ADAPTER))
        await wait_until(pilot, lambda: ADAPTER in screen.details, what="the details")
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, GpuShareDialog), what="the question")
        assert scored == []  # nothing loads before the answer
        await answer(pilot, "p")
        await wait_until(pilot, lambda: scored == [(ADAPTER, None)] and not screen.working, what="the scorecard")
        assert app.state.tracker.status == "paused"
