"""A real trained run for the chat and library tests: the builtin tiny model trained for 4 steps,
once per test session, then copied into each test's own HUMANLIKE_TUI_HOME (1.5 MB, milliseconds).

Importable from every test folder: tests/conftest.py puts tests/ on sys.path (pytest's default
'prepend' import mode)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from humanlike_tui.config import load_preset

_TRAINED: dict[str, Path] = {}
RUN_NAME = "tiny-chat"
SHARED_CACHE = Path(os.environ.get("HLT_TEST_CACHE", "/tmp/humanlike-tui-test-cache"))  # as in conftest.py


def tiny_config():
    """The demo preset cut to 4 steps, one evaluation mid-run and one at the end, no sample answers."""
    return load_preset("demo").replace(**{"train.max_steps": 4, "train.eval_every": 2, "train.save_every": 0,
                                          "train.warmup_steps": 1, "train.sample_prompts": 0,
                                          "generate.max_new_tokens": 8})


def trained_run_dir() -> Path:
    """The run folder of a finished 4-step run, trained on first use in a private home."""
    if "run" not in _TRAINED:
        from humanlike_tui.engine.training.run import run_training

        root = Path(tempfile.mkdtemp(prefix="hlt-tiny-run-"))
        atexit.register(shutil.rmtree, root, True)
        (root / "data").mkdir()
        SHARED_CACHE.mkdir(parents=True, exist_ok=True)
        (root / "cache").symlink_to(SHARED_CACHE, target_is_directory=True)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HUMANLIKE_TUI_HOME", str(root))
            mp.setenv("HF_HUB_OFFLINE", "1")
            result = run_training(tiny_config(), run_name=RUN_NAME)
        assert result.status == "finished", result
        _TRAINED["run"] = Path(result.run_dir)
    return _TRAINED["run"]


def install_run(home: Path, name: str = RUN_NAME) -> Path:
    """Copy the trained run into `home` (the test's HUMANLIKE_TUI_HOME) under `name`; returns its folder."""
    target = home / "data" / "runs" / name
    shutil.copytree(trained_run_dir(), target)
    if name != RUN_NAME:
        from humanlike_tui.engine.storage.runs import Run

        Run(target).update_meta(run_id=name)
    return target
