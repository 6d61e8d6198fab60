"""How long the workbench makes people wait, measured in one run (issue: "The workbench as people use it", item 9).

    .venv/bin/python tools/ui_timing.py [--runs 3] [--skip-train] [--json]

1. First frame: the workbench (the demo preset, a private HUMANLIKE_TUI_HOME) and a bare Textual app with a
   Header and a Footer, each started in a pseudo-terminal of 120x40; the time from starting the process to the
   first complete frame on the terminal (its title and its footer keys written). Goal: workbench <= 1.5x bare.
2. Quit: ctrl+q pressed once the first frame is up, while the background work of the start is still running
   (the hardware probe imports torch), and again after it has settled; the time until the terminal is back
   (the alternate screen left) and until the process has exited. Goal: < 1 s.
3. Time to the first step: `humanlike-tui train --preset demo`'s engine in this process, every event
   timestamped: each stage before step 1 (imports, the builtin model, the data, the model load, ...) with the
   message shown while it runs. Goal: no wait over 1 s without a message saying what it is waiting for.

The medians of --runs runs are printed; the machine's load is printed too (a busy machine slows everything).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SIZE = (120, 40)  # columns, rows
BARE_APP = """
from textual.app import App
from textual.widgets import Footer, Header

class Bare(App):
    TITLE = "bare-textual"
    BINDINGS = [("ctrl+q", "quit", "Quit"), ("f1", "bell", "One"), ("f2", "bell", "Two")]

    def compose(self):
        yield Header()
        yield Footer()

Bare().run()
"""
WORKBENCH = "from humanlike_tui.cli import main; import sys; sys.exit(main(['--preset', 'demo']))"
LEAVE_ALT_SCREEN = b"\x1b[?1049l"


def spawn(code: str, env: dict[str, str]) -> tuple[subprocess.Popen, int, float]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "-c", code], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                            start_new_session=True)
    os.close(slave)
    return proc, master, t0


def read_until(master: int, proc: subprocess.Popen, done, timeout: float) -> tuple[bytes, float | None]:
    """Read the terminal until done(buffer) holds; (buffer, the moment it held) or (buffer, None)."""
    buffer = b""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        ready, _, _ = select.select([master], [], [], 0.01)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the process closed the terminal
                break
            buffer += chunk
            if done(buffer):
                return buffer, time.perf_counter()
        elif proc.poll() is not None and not ready:
            break
    return buffer, None


def plain(buffer: bytes) -> bytes:
    """The terminal output without escape sequences: only the text drawn."""
    import re

    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]", b"", buffer)


def first_frame_and_quit(code: str, title: bytes, footer: bytes, env: dict[str, str], settle_s: float) -> dict:
    proc, master, t0 = spawn(code, env)
    try:
        _, at = read_until(master, proc, lambda b: title in plain(b) and footer in plain(b), 60)
        if at is None:
            raise RuntimeError("no first frame within 60 s")
        first = at - t0
        if settle_s:
            read_until(master, proc, lambda b: False, settle_s)  # let it work (drain the output meanwhile)
        pressed = time.perf_counter()
        os.write(master, b"\x11")  # ctrl+q
        _, restored = read_until(master, proc, lambda b: LEAVE_ALT_SCREEN in b, 30)
        while proc.poll() is None and time.perf_counter() - pressed < 30:
            read_until(master, proc, lambda b: False, 0.01)
        exited = time.perf_counter()
        return {"first_frame_s": first, "terminal_back_s": (restored or exited) - pressed,
                "exit_s": exited - pressed}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)


def time_to_first_step() -> list[tuple[float, str]]:
    """The engine's events up to the first step, as the TUI's training worker runs them, timestamped."""
    from humanlike_tui import events as ev
    from humanlike_tui.config import load_preset
    from humanlike_tui.ui.services import EngineTraining

    t0 = time.perf_counter()
    marks: list[tuple[float, str]] = [(0.0, "(start)")]
    stop = __import__("threading").Event()

    def emit(event) -> None:
        now = time.perf_counter() - t0
        if isinstance(event, ev.Log):
            marks.append((now, event.message))
        elif isinstance(event, ev.Step):
            marks.append((now, "step 1 done"))
            stop.set()
        elif isinstance(event, (ev.DataReport, ev.RunStarted)):
            marks.append((now, type(event).__name__))

    cfg = load_preset("demo").replace(**{"train.max_steps": 2, "train.eval_every": 0, "train.save_every": 0})
    EngineTraining().run(cfg, emit, stop)
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds to wait before the second quit")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hlt-timing-")
    env = {**os.environ, "HUMANLIKE_TUI_HOME": home, "TERM": "xterm-256color", "COLUMNS": str(SIZE[0]),
           "LINES": str(SIZE[1]), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("TEXTUAL", None)
    # A user's Python writes bytecode caches on the first start; this sandbox sets PYTHONDONTWRITEBYTECODE,
    # which made every start compile the workbench's sources again (~0.1 s) while Textual's came compiled
    # from pip. Measure what a user gets: caches allowed, one untimed start of each first to write them.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    first_frame_and_quit(BARE_APP, b"bare-textual", b"Quit", env, 0)
    first_frame_and_quit(WORKBENCH, b"humanlike-tui", b"Hardware", env, 0)
    results: dict[str, list[dict]] = {"bare": [], "workbench_early_quit": [], "workbench_settled_quit": []}
    for _ in range(args.runs):
        results["bare"].append(first_frame_and_quit(BARE_APP, b"bare-textual", b"Quit", env, 0))
        results["workbench_early_quit"].append(first_frame_and_quit(WORKBENCH, b"humanlike-tui", b"Hardware", env, 0.3))
        results["workbench_settled_quit"].append(first_frame_and_quit(WORKBENCH, b"humanlike-tui", b"Hardware", env,
                                                                      args.settle))
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    wb_first = statistics.median([r["first_frame_s"] for k in ("workbench_early_quit", "workbench_settled_quit")
                                  for r in results[k]])
    # The ratio of each round's workbench start to the bare start just before it, then the median: the
    # machine's load drifts between rounds, and a ratio of medians taken at different moments drifts with it.
    ratio = statistics.median(run["first_frame_s"] / bare["first_frame_s"]
                              for bare, early, settled in zip(results["bare"], results["workbench_early_quit"],
                                                              results["workbench_settled_quit"])
                              for run in (early, settled))
    out = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "runs": args.runs, "median": med,
           "first_frame_ratio": ratio}
    if not args.skip_train:
        os.environ["HUMANLIKE_TUI_HOME"] = home
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        out["first_step"] = time_to_first_step()
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in out['load_average'])}; "
          f"medians of {args.runs} runs")
    print(f"first frame: bare Textual {med['bare']['first_frame_s']:.2f} s, workbench {wb_first:.2f} s "
          f"(medians); median of the rounds' ratios {ratio:.2f} (goal <= 1.5)")
    for key, label in (("workbench_early_quit", "quit while the start's work runs"),
                       ("workbench_settled_quit", f"quit after {args.settle:g} s"), ("bare", "bare Textual quit")):
        m = med[key]
        print(f"{label}: terminal back in {m['terminal_back_s']:.2f} s, process gone in {m['exit_s']:.2f} s "
              "(goal < 1 s)")
    if "first_step" in out:
        print("time to the first step (train --preset demo, the TUI's training service):")
        marks = out["first_step"]
        worst = 0.0
        for (t, message), (t_next, _) in zip(marks, marks[1:] + [(marks[-1][0], "")]):
            gap = t_next - t
            worst = max(worst, gap)
            print(f"  +{t:6.2f} s  {gap:5.2f} s  {message}")
        print(f"  longest wait under one message: {worst:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
