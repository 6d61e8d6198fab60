"""Reliability round 3, signals before the first step: SIGTERM (and the first Ctrl+C) while the data is
being templated with a chat template that would loop for hours ends the command at once, exit 130, with no
run folder (issue 25 item 10). After the first step a stop still waits for the step and saves (round 2)."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from reliability_helpers import FAST, start

from humanlike_tui.engine.models.builtins import ensure_builtin

# The sandboxed Jinja allows range() up to 100,000 items; nested, that is 10^10 turns: hours.
LOOPING_TEMPLATE = ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                    "{% for m in messages %}{{ m['content'] }}{% endfor %}")


def looping_model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(ensure_builtin("builtin:tiny-phi"), folder)
    (folder / "chat_template.jinja").write_text(LOOPING_TEMPLATE)
    return folder


def catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask & (1 << (sig - 1)))


def maps(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def collect(stream, lines: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return thread


@pytest.mark.slow  # ~10-30 s each: a real process imports torch first
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_a_signal_while_templating_stops_at_once_leaving_no_run(home, tmp_path, sig):
    proc = start(home, ["train", *FAST, "--set", f"model.name={looping_model(tmp_path)}",
                        "--set", "data.template=chat", "--set", "train.max_steps=2"])
    lines: list[str] = []
    reader = collect(proc.stderr, lines)
    try:
        deadline = time.monotonic() + 120
        # the command's handler is in place and the tokenizer library is loaded: the template is rendering
        while not catches(proc.pid, signal.SIGTERM) or not maps(proc.pid, "tokenizers"):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        time.sleep(3)  # rendering the template takes hours
        assert proc.poll() is None, "".join(lines)
    except BaseException:
        proc.kill()
        raise
    proc.send_signal(sig)
    t0 = time.monotonic()
    try:
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - t0
    reader.join(timeout=5)
    err = "".join(lines)
    assert proc.returncode == 130, err
    assert took < 10 and "stopping now (no step has run yet" in err, (took, err)
    runs = home / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")], err
