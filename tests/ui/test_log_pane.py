"""The Train screen's log and answers panes wrap at their own width (RichLog's default 78 cells hid the
end of every long line in a 58-column pane), wrap again on a resize, keep long paths whole, name the
eval metrics with their values beside them, and stamp lines as time since launch (+mm:ss)."""

from __future__ import annotations

import re

from humanlike_tui import events as ev
from humanlike_tui.ui.event_text import describe
from humanlike_tui.ui.widgets.flow_log import FlowLog
from support.fakes import FakeClock, FakeEngine
from ui_helpers import SIZE, build, run_to_hold, settle, wait_until

LONG_RUN_DIR = "/home/someone/.local/share/humanlike-tui/runs/20261202-133012-tiny-phi-sft"


def shown_lines(log: FlowLog) -> list[str]:
    return [strip.text.rstrip() for strip in log.lines]


def assert_fits(log: FlowLog) -> None:
    width = log.scrollable_content_region.width
    assert width > 0
    widest = max(strip.cell_length for strip in log.lines)
    assert widest <= width, f"a line is {widest} cells wide in a pane of {width}"
    assert log.virtual_size.width <= width  # no horizontal scrolling: nothing hides past the edge


def test_eval_metrics_are_named_with_their_values_beside_them():
    line = describe(ev.Eval(40, 7.1335, {"eval_logp_accuracy": 0.68, "eval_logp_margin": 0.004,
                                         "eval_reward_accuracy": 0.7}))
    assert line == ("eval at step 40: loss 7.1335, log-prob accuracy 68%, log-prob margin +0.004, "
                    "reward accuracy 70%")
    step = describe(ev.Step(20, 20, 0.5, 1e-4, 0.3, 100.0, 1, 1, 1.0, 0.0, phase="dpo",
                            metrics={"grad_norm": 0.3, "reward_accuracy": 0.75, "reward_margin": 0.12}))
    assert step.endswith("reward accuracy 75%, reward margin +0.120")


async def test_log_lines_fit_the_pane_and_rewrap_on_resize():
    engine, clock = FakeEngine(total_steps=60, eval_every=15, hold_at=45, run_dir=LONG_RUN_DIR), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock)
        await pilot.press("s")  # a stop checkpoint: a long path in the log
        await wait_until(pilot, lambda: app.state.tracker.status == "stopped")
        await settle(pilot)
        log = app.screen.query_one("#log", FlowLog)
        assert_fits(log)
        text = "".join(shown_lines(log))  # wrapped lines joined: nothing was cut away
        assert f"{LONG_RUN_DIR}/checkpoints/step-45" in text
        lines = shown_lines(log)
        assert all(re.match(r"\+\d\d:\d\d ", line) for line in lines if line.startswith("+"))
        assert any(line.startswith("+00:") for line in lines)
        # the accuracy's value follows its name (on its line or the next), never another metric's
        assert "log-prob accuracy 65%" in " ".join(lines)
        samples = app.screen.query_one("#samples", FlowLog)
        assert_fits(samples)

        await pilot.resize_terminal(80, 40)  # narrower, and tall enough for the log beside the charts
        await pilot.pause(0.1)
        assert_fits(log)
        assert len(log.lines) > len(lines)  # narrower: wrapped again into more lines
        assert f"{LONG_RUN_DIR}/checkpoints/step-45" in "".join(shown_lines(log))
