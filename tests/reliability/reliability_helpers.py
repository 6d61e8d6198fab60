"""Helpers for the reliability tests: the headless command in a subprocess, and a fast demo config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

# The demo preset made small: 32 rows, no evaluation during the run, no sample answers.
FAST = ["--preset", "demo", "--set", "data.max_rows=32", "--set", "train.eval_every=0",
        "--set", "train.sample_prompts=0", "--set", "train.warmup_steps=1", "--set", "generate.max_new_tokens=8"]
FAST_OVERRIDES = {"data.max_rows": 32, "train.eval_every": 0, "train.sample_prompts": 0, "train.warmup_steps": 1,
                  "generate.max_new_tokens": 8}

PLANTED_TOKEN = "hf_PlantedTokenForLeakTest0123456789abcd"
HOSTILE = [
    "../../../../etc/passwd",
    "/etc/shadow",
    "__import__('os').system('touch PWNED')",
    "$(touch PWNED) `touch PWNED`; rm -rf ~",
    "{{ ''.__class__.__mro__[1].__subclasses__() }} {% for x in range(9) %}PWNED{% endfor %}",
    "file:///etc/hosts https://example.com/x.safetensors",
    "\x1b]0;PWNED\x07\x1b[2J",
]


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HUMANLIKE_TUI_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


def start(home: Path, args: list[str], **extra_env: str) -> subprocess.Popen:
    """`python -m humanlike_tui ARGS` in its own process, output captured."""
    return subprocess.Popen([sys.executable, "-m", "humanlike_tui", *args], env=child_env(home, **extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen | None = None, timeout: float = 180, every: float = 0.02):
    """Poll until condition() is truthy; fail early if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended (rc {proc.returncode}) before the condition:\n{err[-3000:]}")
        time.sleep(every)
    raise AssertionError("timed out waiting")


def train_steps(run_dir: Path) -> list[int]:
    """Steps logged in metrics.jsonl (a line cut by a kill is skipped)."""
    path = run_dir / "metrics.jsonl"
    steps = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if m.get("kind") == "train":
                steps.append(int(m["step"]))
    return steps


def all_files(root: Path) -> list[Path]:
    """Every file under root, not following symlinks (the shared model cache is one)."""
    out = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        out += [Path(folder) / f for f in files]
    return out
