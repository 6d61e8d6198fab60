"""Shared fixtures: every test gets its own HUMANLIKE_TUI_HOME; the builtin tiny model is made once
per session in a shared cache (it is deterministic) and copied in by reference."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_CACHE = Path(os.environ.get("HLT_TEST_CACHE", "/tmp/humanlike-tui-test-cache"))


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A private home for runs and configs; the builtin-model cache is shared across tests."""
    root = tmp_path / "home"
    (root / "data").mkdir(parents=True)
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    (root / "cache").symlink_to(SHARED_CACHE, target_is_directory=True)
    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return root


@pytest.fixture
def demo_cfg():
    """The demo preset, shortened for tests."""
    from humanlike_tui.config import load_preset

    return load_preset("demo").replace(**{"train.max_steps": 8, "train.eval_every": 4, "train.save_every": 0,
                                          "train.warmup_steps": 1, "train.sample_prompts": 1,
                                          "generate.max_new_tokens": 8})
