"""The real thing: the workbench trains the builtin tiny model through the real engine (CPU), the
progress bar and loss chart move while the UI stays responsive, and Stop leaves a checkpoint on disk
that the store can resume from."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import ProgressBar

from humanlike_tui.config import load_preset
from humanlike_tui.ui.app import make_app, production_services
from humanlike_tui.ui.screens.train import TrainScreen
from humanlike_tui.ui.widgets.charts import LossChart
from ui_helpers import SIZE, SHOWN_CONFIG_PATH, wait_until


async def test_train_the_tiny_model_from_the_ui_and_stop_with_a_checkpoint():
    cfg = load_preset("demo").replace(**{"train.max_steps": 500, "train.eval_every": 2, "train.save_every": 0,
                                         "train.warmup_steps": 1, "train.sample_prompts": 1,
                                         "train.eval_max_rows": 4, "generate.max_new_tokens": 6})
    app = make_app(production_services(), cfg, SHOWN_CONFIG_PATH, initial_screen="train")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        tracker = app.state.tracker
        await wait_until(pilot, lambda: (len(tracker.train) >= 3 and tracker.evals) or tracker.status == "failed",
                         timeout=120, what="three steps and an evaluation from the real engine")
        assert tracker.status == "training", "\n".join(tracker.log)
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        chart = screen.query_one(LossChart)
        await wait_until(pilot, lambda: chart.shown_points[0] >= 3 and chart.shown_points[1] >= 1,
                         what="the batched redraw of the chart")
        assert screen.query_one(ProgressBar).progress >= 3 and screen.query_one(ProgressBar).total == 500
        assert tracker.device.startswith("CPU") and tracker.samples  # the fixed prompts were answered
        await pilot.press("s")
        await wait_until(pilot, lambda: tracker.status == "stopped", timeout=60, what="the stop checkpoint")
    checkpoint = Path(tracker.checkpoint)
    assert checkpoint.is_dir() and checkpoint.parent.name == "checkpoints"
    from humanlike_tui.engine.storage import runs as store

    run = store.get_run(tracker.run_id)
    assert run.status() == "stopped" and run.latest_checkpoint()[1] == checkpoint
    assert run.meta()["steps"] == tracker.step
