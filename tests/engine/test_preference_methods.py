"""train.method orpo and simpo on the tiny model: a few steps on the same rows raise the preference margin,
without ever asking DPO's reference for log-probs, and the step records carry the method's figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from humanlike_tui.engine.training import reference
from humanlike_tui.engine.training.run import run_training
from humanlike_tui.errors import ConfigError


@pytest.mark.parametrize("method", ["orpo", "simpo"])
def test_reference_free_methods_train_and_the_margin_rises(home, demo_cfg, monkeypatch, method):
    def no_reference(*args, **kwargs):
        raise AssertionError(f"{method} asked for the reference's log-probs")

    monkeypatch.setattr(reference.DpoReference, "logps", no_reference)
    # Every step sees the same 8 rows, so the figures move with training, not with the batch.
    cfg = demo_cfg.replace(**{"quant.mode": "none", "train.method": method, "train.max_steps": 3, "train.eval_every": 0,
                              "train.sample_prompts": 0, "data.max_rows": 10, "data.eval_fraction": 0.2,
                              "train.batch_size": 8, "train.grad_accum": 1, "train.warmup_steps": 0,
                              "train.lr_scheduler": "constant", "train.learning_rate": 1e-2})
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    if tensorboard:
        cfg = cfg.replace(**{"train.report_to": ["tensorboard"]})
    result = run_training(cfg)
    assert result.status == "finished"
    records = [json.loads(line) for line in (Path(result.run_dir) / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["phase"] for r in steps] == [method] * 3
    first, last = steps[0], steps[-1]
    assert last["loss"] < first["loss"]
    assert last["logp_margin"] > first["logp_margin"] and last["reward_margin"] > first["reward_margin"]
    for key in ("reward_chosen", "reward_rejected", "reward_accuracy", "logp_chosen", "logp_rejected"):
        assert key in last
    assert ("nll_loss" in last) == (method == "orpo")
    evals = [r for r in records if r["kind"] == "eval"]
    assert "eval_logp_accuracy" in evals[-1] and "eval_reward_accuracy" not in evals[-1]  # no reference
    if tensorboard:  # the same figures as TensorBoard scalars
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(Path(result.run_dir) / "tensorboard"))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"train/reward_margin", "train/reward_accuracy", "train/logp_chosen", "train/logp_rejected",
                "eval/eval_logp_accuracy"} <= tags


def test_preference_settings_are_checked_with_their_key(demo_cfg):
    with pytest.raises(ConfigError, match="train.simpo_beta"):
        demo_cfg.replace(**{"train.method": "simpo", "train.simpo_beta": 0})
    with pytest.raises(ConfigError, match="data.rejected_column"):
        demo_cfg.replace(**{"train.method": "orpo", "data.rejected_column": ""})
