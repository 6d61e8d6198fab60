"""The Train screen's preference chart for the reference-free methods: ORPO's and SimPO's reward margin and
accuracy, named after the method (the DPO run's chart is tested in test_charts.py)."""

from __future__ import annotations

import pytest

from humanlike_tui.ui.widgets.charts import MetricChart
from support.fakes import FakeClock, FakeEngine, ramp_readings
from ui_helpers import SIZE, build, run_to_hold


@pytest.mark.parametrize("method, name", [("orpo", "ORPO"), ("simpo", "SimPO")])
async def test_reference_free_runs_chart_their_margin_and_accuracy(method, name):
    engine, clock = FakeEngine(total_steps=20, eval_every=10, hold_at=12, method=method), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_hold(pilot, engine, clock, readings=4, pattern=ramp_readings)
        screen = app.screen
        while screen.chart != "reward":
            await pilot.press("c")
            await pilot.pause(0.05)
        chart = screen.query_one(MetricChart)
        assert chart.shown_title == f"{name} reward margin (left) and accuracy (right)"
        assert chart.shown_points == 24  # 12 steps of margin and 12 of accuracy
        assert app.state.tracker.reward_margins[-1][0] == 12
