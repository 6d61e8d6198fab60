"""Train screen with a scripted engine: progress and charts move, pause frees and resumes the same
run exactly, stop keeps a checkpoint, a failure is shown clearly, quitting mid-run asks first."""

from __future__ import annotations

import pytest
from textual.widgets import Button, ProgressBar, RichLog, Static

from humanlike_tui.protocols import RunChoice
from humanlike_tui.ui.screens.dialogs import ConfirmDialog, RunPicker
from humanlike_tui.ui.screens.train import TrainScreen
from support.chat_fakes import FakeLibrary
from support.fakes import FakeClock, FakeEngine
from ui_helpers import SIZE, build, feed_readings, run_to_hold, settle, wait_until


def log_text(app) -> str:
    return "\n".join(app.state.tracker.log)


async def test_run_to_the_end_moves_progress_charts_and_samples():
    engine, clock = FakeEngine(total_steps=40, eval_every=10), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        assert isinstance(app.screen, TrainScreen)
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.tracker.status == "finished")
        await settle(pilot)
        t = app.state.tracker
        assert [s for s, _ in t.train] == list(range(1, 41))
        assert [s for s, _ in t.evals] == [10, 20, 30, 40]
        assert len(t.samples) == 4 and t.samples[0].answers[0][0] == "How was your weekend?"
        bar = app.screen.query_one(ProgressBar)
        assert (bar.progress, bar.total) == (40, 40)
        assert "step 40/40" in str(app.screen.query_one("#step-label", Static).render())
        assert "finished run 20260101-120000-demo" in log_text(app)
        samples = app.screen.query_one("#samples", RichLog)
        assert len(samples.lines) >= 4 * 5  # heading + two prompts with answers per evaluation
        assert app.screen.query_one("#new", Button).disabled is False
        assert app.screen.query_one("#stop", Button).disabled is True


async def test_pause_then_resume_continues_the_same_run():
    engine, clock = FakeEngine(total_steps=30, eval_every=10, hold_at=12), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        assert app.state.tracker.status == "training" and app.state.tracker.step == 12
        assert app.screen.query_one("#pause", Button).disabled is False
        await pilot.press("p")
        await wait_until(pilot, lambda: app.state.tracker.status == "paused")
        assert app.state.tracker.checkpoint.endswith("step-12")
        assert engine.calls == [None]
        await settle(pilot)
        assert app.screen.query_one("#resume", Button).disabled is False
        await pilot.press("r")
        await wait_until(pilot, lambda: app.state.tracker.status == "finished")
        assert engine.calls == [None, "20260101-120000-demo"]
        steps = [s for s, _ in app.state.tracker.train]
        assert steps == list(range(1, 31))  # one curve, no gap and no repeat across the pause
        assert "paused at step 12" in log_text(app)


async def test_stop_saves_a_checkpoint_and_resume_key_continues_it():
    engine, clock = FakeEngine(total_steps=20, hold_at=5), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        await pilot.click("#stop")
        await wait_until(pilot, lambda: app.state.tracker.status == "stopped")
        assert "checkpoint (stop) at step 5" in log_text(app)
        await pilot.press("r")
        await wait_until(pilot, lambda: app.state.tracker.status == "finished")
        assert engine.calls == [None, "20260101-120000-demo"]


async def test_failure_is_shown_with_its_reason():
    engine, clock = FakeEngine(total_steps=20, fail_at=7), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", "n")
        await wait_until(pilot, lambda: app.state.tracker.status == "failed")
        await settle(pilot)
        assert "loss became NaN at step 7" in app.state.tracker.failure
        hint = str(app.screen.query_one("#hint", Static).render())
        assert "Failed: loss became NaN" in hint
        assert any("training failed" == n.title for n in app._notifications)
        assert app.screen.query_one("#new", Button).disabled is False  # a new run can start


async def test_unexpected_engine_bug_is_reported_not_swallowed():
    def broken(cfg, emit, stop=None, **kw):
        raise KeyError("boom")

    app = build(clock=FakeClock())
    app.services.training.run = broken
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", "n")
        await wait_until(pilot, lambda: app.state.tracker.status == "failed")
        assert app.state.tracker.failure == "unexpected error: KeyError: 'boom'"
        assert "KeyError" in log_text(app)


async def test_energy_integrates_power_while_training():
    engine, clock = FakeEngine(total_steps=20, hold_at=10), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock, readings=0)
        await feed_readings(pilot, clock, 37)  # 36 intervals of 1 s at 95 W
        assert app.state.tracker.energy.wh == pytest.approx(95 * 36 / 3600)
        assert engine.power() == 95.0  # the engine reads the same power for the run's metadata
        await settle(pilot)
        stats = str(app.screen.query_one("#stats", Static).render())
        assert "0.95 Wh" in stats and "/kWh" in stats
        assert len(app.state.tracker.vram) == 37
        await pilot.press("s")
        await wait_until(pilot, lambda: not app.state.tracker.active)


async def test_quit_while_training_asks_then_stops_with_checkpoint():
    engine, clock = FakeEngine(total_steps=20, hold_at=4), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")  # keep training
        await pilot.pause()
        assert app.state.tracker.status == "training" and app.is_running
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, what="the app to exit after the stop")
    assert app.state.tracker.status == "stopped"
    assert app.state.tracker.checkpoint.endswith("step-4")


async def test_quit_answered_after_the_run_ended_quits_at_once():
    """The run finished while 'Quit while training?' was up: 'Stop and quit' then waited forever for a
    run end that had already come (found in the tmux walk-through)."""
    engine, clock = FakeEngine(total_steps=6, hold_at=3), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        engine.release()
        await wait_until(pilot, lambda: not app.state.tracker.active, what="the run to finish behind the question")
        train = app.mode_screen("train")
        # the screen behind the question follows the run (it stayed at 'step 3/6')
        await wait_until(pilot, lambda: "step 6/6" in str(train.query_one("#step-label", Static).render()),
                         timeout=5, what="the Train screen to show the end under the dialog")
        assert isinstance(app.screen, ConfirmDialog) and "FINISHED" in str(train.query_one("#status", Static).render())
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, timeout=5, what="the app to exit")
    assert app.state.tracker.status == "finished"


async def test_resume_an_earlier_run_from_the_picker():
    engine, clock = FakeEngine(total_steps=12), FakeClock()
    earlier = RunChoice("20251231-090000-demo", "20251231-090000-demo · paused · step 6/12", None)
    app = build(engine, clock, runs=[earlier])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, RunPicker))
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.state.tracker.status == "finished")
        assert engine.calls == ["20251231-090000-demo"]
        # its history from disk (steps 1-6), then the resumed steps: one curve
        assert [s for s, _ in app.state.tracker.train] == list(range(1, 13))
        assert [s for s, _ in app.state.tracker.evals] == [5, 10]


async def test_no_earlier_runs_says_so_and_cancels():
    app = build(runs=[], library=FakeLibrary(infos=[]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, RunPicker))
        assert "No earlier runs found" in str(app.screen.query_one("#no-runs", Static).render())
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen))
        assert app.state.tracker.status == "idle"


async def test_only_finished_runs_are_named_not_called_no_runs():
    """e said 'No earlier runs found' while the folder held finished runs (nothing left to resume there)."""
    app = build(runs=[])  # the fake store: two finished runs, two incomplete ones without a checkpoint
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, RunPicker))
        text = str(app.screen.query_one("#no-runs", Static).render())
        assert "No earlier runs found" not in text
        assert "Nothing to resume" in text and "2 finished runs (warm-sft-v2, warm-sft-v1)" in text
        assert "Chat (F4)" in text


async def test_keys_that_do_not_apply_are_refused_with_a_message():
    app = build()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        assert app.check_action("stop_training", ()) is None
        app.action_stop_training()
        app.action_pause_training()
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert "No run is training." in messages and "Only a training run can be paused." in messages
