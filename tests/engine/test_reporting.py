"""train.report_to = ["tensorboard"]: every step/eval figure of metrics.jsonl as TensorBoard scalars, read
back with TensorBoard's own EventAccumulator; W&B only when installed, and offline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tiny_run import install_run, tiny_config

pytest.importorskip("tensorboard")


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for key, value in rec.items():
            if key not in ("step", "kind") and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(f"{rec['kind']}/{key}", []).append((rec["step"], float(value)))
    return out


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag  # float32 there


def test_training_writes_every_figure_to_tensorboard(home):
    from humanlike_tui.engine.training.run import run_training
    from humanlike_tui.events import Log

    logs = []
    cfg = tiny_config().replace(**{"train.report_to": ["tensorboard", "wandb"], "train.max_steps": 2,
                                   "train.eval_every": 1})
    result = run_training(cfg, emit=lambda e: logs.append(e) if isinstance(e, Log) else None, run_name="tb")
    assert result.status == "finished"
    run_dir = Path(result.run_dir)
    got = read_scalars(run_dir / "tensorboard")
    want = expected(run_dir)
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens", "eval/eval_loss"} <= set(want)
    assert [s for s, _ in want["train/loss"]] == [1, 2] and [s for s, _ in want["eval/eval_loss"]] == [1, 2]
    assert_same(got, want)
    if importlib.util.find_spec("wandb") is None:  # a missing reporter is a warning, never a failed run
        assert any(m.level == "warning" and "wandb is not installed" in m.message for m in logs)
    else:
        assert (run_dir / "wandb").is_dir()  # offline: a local run folder, nothing sent


def test_existing_run_exported_to_tensorboard(home):
    from humanlike_tui.engine.training.reporting import export_tensorboard

    run_dir = install_run(home)
    assert_same(read_scalars(export_tensorboard(run_dir)), expected(run_dir))


def test_report_to_is_validated():
    from humanlike_tui.config import load_preset
    from humanlike_tui.errors import ConfigError

    assert load_preset("demo").train.report_to == ()
    with pytest.raises(ConfigError, match="train.report_to: unknown 'mlflow'; choose from tensorboard, wandb"):
        load_preset("demo").replace(**{"train.report_to": ["mlflow"]})
    with pytest.raises(ConfigError, match="at most once"):
        load_preset("demo").replace(**{"train.report_to": ["tensorboard", "tensorboard"]})
    with pytest.raises(ConfigError, match="train.report_to: must be a list of strings"):
        load_preset("demo").replace(**{"train.report_to": "tensorboard"})
