"""`humanlike-tui train` as scripts use it: exit codes, the --json line, messages for bad input."""

from __future__ import annotations

import json

from humanlike_tui.cli import main


def test_demo_run_prints_one_json_object_last(capsys):
    code = main(["train", "--preset", "demo", "--set", "train.max_steps=4", "--set", "train.eval_every=2",
                 "--set", "train.sample_prompts=0", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    result = json.loads(out[-1])
    assert {"run_id", "adapter_dir", "steps", "first_loss", "final_loss", "final_eval_loss", "tokens_per_s",
            "peak_memory_bytes"} <= set(result)
    assert result["steps"] == 4 and result["status"] == "finished"
    assert result["final_eval_loss"] > 0 and result["tokens_per_s"] > 0


def test_bad_config_exits_2_with_every_problem(capsys):
    code = main(["train", "--preset", "demo", "--set", "train.learning_rate=-1", "--set", "lora.r=0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "train.learning_rate: must be > 0, got -1" in err and "lora.r: must be >= 1, got 0" in err


def test_bad_data_exits_2(capsys, tmp_path):
    code = main(["train", "--preset", "demo", "--set", f"data.source='{tmp_path / 'missing.jsonl'}'"])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_unknown_model_offline_names_the_offline_choices(capsys):
    code = main(["train", "--preset", "demo", "--set", "model.name=nobody/no-such-model"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'nobody/no-such-model'" in err and "builtin:tiny-phi" in err and "local folder" in err
    assert "builtin:smollm2-135m" in err and "smol-cpu" in err


def test_unknown_hub_dataset_offline_says_what_to_do(capsys):
    code = main(["train", "--preset", "demo", "--set", "data.source=nobody/no-such-data"])
    err = capsys.readouterr().err
    assert code == 2 and "builtin:sample" in err and "local file" in err


def test_training_failure_exits_1(capsys, monkeypatch):
    from humanlike_tui.engine.training import run as T

    def boom(self, step):
        raise RuntimeError("device fell off the bus")

    monkeypatch.setattr(T.Trainer, "train_one", boom)
    code = main(["train", "--preset", "demo", "--set", "train.max_steps=2"])
    assert code == 1 and "device fell off the bus" in capsys.readouterr().err


def test_resume_unknown_run_exits_2(capsys):
    assert main(["train", "--resume", "no-such-run"]) == 2
    assert "no run named 'no-such-run'" in capsys.readouterr().err


def test_json_failure_prints_status_and_error_on_stdout(capsys, monkeypatch):
    """train --json prints one JSON object on stdout when it fails too: bad input (exit 2) and a failure in
    training (exit 1)."""
    from humanlike_tui.engine.training import run as T

    assert main(["train", "--preset", "demo", "--set", "lora.r=0", "--json"]) == 2
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "failed" and out["exit_code"] == 2 and "lora.r: must be >= 1, got 0" in out["error"]

    def boom(self, step):
        raise RuntimeError("device fell off the bus")

    monkeypatch.setattr(T.Trainer, "train_one", boom)
    assert main(["train", "--preset", "demo", "--set", "train.max_steps=2", "--json"]) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert out["status"] == "failed" and out["exit_code"] == 1 and "device fell off the bus" in out["error"]
    assert "device fell off the bus" in captured.err
