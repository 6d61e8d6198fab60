"""One short training run shared by the reliability tests that need a finished adapter.

It trains with a planted Hugging Face token in the environment (the token test greps every file
for it) on a data file full of hostile rows (paths, shell and Python code, template syntax) mixed
into ordinary ones (nothing of a row may be executed or used as a path)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pytest
from reliability_helpers import FAST_OVERRIDES, HOSTILE, PLANTED_TOKEN


@dataclass
class Trained:
    home: Path
    run_id: str
    run_dir: Path
    adapter_dir: Path
    data_file: Path
    events: list = field(default_factory=list)


def hostile_rows() -> list[dict]:
    return [{"prompt": f"What is {h}?", "chosen": f"Oh, {h} haha, no idea!", "rejected": f"{h} is a path."}
            for h in HOSTILE]


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    from humanlike_tui.config import load_preset
    from humanlike_tui.engine.training.run import run_training

    home = tmp_path_factory.mktemp("trained-home")
    (home / "data").mkdir()
    cache = Path(os.environ.get("HLT_TEST_CACHE", "/tmp/humanlike-tui-test-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    (home / "cache").symlink_to(cache, target_is_directory=True)
    sample = resources.files("humanlike_tui.data").joinpath("sample.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in sample.splitlines() if line.strip()][:24] + hostile_rows()
    data_file = home / "rows.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    events: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)  # a relative path in a row would land here
        for key, value in {"HUMANLIKE_TUI_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": PLANTED_TOKEN,
                           "HUGGING_FACE_HUB_TOKEN": PLANTED_TOKEN}.items():
            mp.setenv(key, value)
        cfg = load_preset("demo").replace(**{
            **FAST_OVERRIDES, "data.source": str(data_file), "data.max_rows": 0, "train.max_steps": 3,
            "train.sample_prompts": 1, "train.eval_every": 2, "train.save_every": 1})
        result = run_training(cfg, events.append)
    return Trained(home, result.run_id, Path(result.run_dir), Path(result.adapter_dir), data_file, events)
