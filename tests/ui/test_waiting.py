"""Issue 'The workbench as people use it', item 9: the first frame waits only for what it draws, quitting
gives the shell back at once unless something is being saved (and then says what), and the long first
wait of a run says what it waits for. The figures are in tools/ui_timing.py's output, not asserted here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from humanlike_tui import events as ev


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_first_frame_imports_only_the_screen_it_shows():
    # The other four screens (and their charts, dialogs and plotext) load when first shown.
    result = run_python("""
        import sys
        from humanlike_tui.cli import build_parser
        build_parser([]).parse_args([])
        import humanlike_tui.ui.app
        later = ("train", "chat", "adapters", "config", "model_dialogs")
        print(sorted(m for m in sys.modules if m.startswith("humanlike_tui.commands.")
                     or m in [f"humanlike_tui.ui.screens.{name}" for name in later] or m.startswith("plotext")))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_command_still_parses_its_own_arguments():
    from humanlike_tui.cli import build_parser

    args = build_parser(["train"]).parse_args(["train", "--preset", "demo", "--set", "train.max_steps=3"])
    assert args.command == "train" and args.overrides == ["train.max_steps=3"]
    full = build_parser().format_help()
    assert "serve" in full and "download" in full  # --help still lists every command


def test_quitting_does_not_wait_for_threads_that_only_read():
    result = run_python("""
        import threading, time
        from humanlike_tui.ui.exit_guard import finish_and_exit
        threading.Thread(target=time.sleep, args=(60,)).start()  # like the probe importing torch
        finish_and_exit(3)
    """)
    assert result.returncode == 3
    assert result.stderr == ""


def test_quitting_waits_for_a_save_and_says_what_it_is(tmp_path):
    target = tmp_path / "exported.txt"
    started = time.perf_counter()
    result = run_python(f"""
        import threading, time
        from humanlike_tui.ui.exit_guard import finish_and_exit, saving
        ready = threading.Event()

        def export():
            with saving("exporting run-1"):
                ready.set()
                time.sleep(1.0)
                open({str(target)!r}, "w").write("all of it")

        threading.Thread(target=export).start()
        threading.Thread(target=time.sleep, args=(60,)).start()
        ready.wait()
        finish_and_exit(0)
    """)
    assert result.returncode == 0
    assert target.read_text() == "all of it"  # not cut off
    assert "finishing before exit: exporting run-1" in result.stderr
    assert time.perf_counter() - started < 30  # and the reading thread's 60 s were not waited for


def test_a_clean_exit_returns_its_code():
    from humanlike_tui.ui.exit_guard import pending, saving

    with saving("x"):
        assert pending() == ["x"]
    assert pending() == []
    # With no other thread alive the process ends normally: the code comes back to the caller.
    result = run_python("""
        from humanlike_tui.ui.exit_guard import finish_and_exit
        print(finish_and_exit(5))
    """)
    assert result.returncode == 0 and result.stdout.strip() == "5"


def test_the_cli_says_what_it_loads_before_the_first_engine_import():
    result = run_python("""
        from humanlike_tui.commands import train
        events = []
        train.ProgressListener.__call__ = lambda self, e: events.append(e)
        train.run_training = None
        class Stop(Exception): pass
        def refuse(*a, **k): raise Stop
        import humanlike_tui.commands.train as t
        t.install_interrupt = refuse
        from humanlike_tui.cli import build_parser
        args = build_parser(["train"]).parse_args(["train", "--preset", "demo"])
        try:
            t.run(args)
        except Stop:
            pass
        print(type(events[0]).__name__, events[0].message)
    """, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Log {ev.LIBRARIES_LOADING}"  # before anything else, the engine's import too


def test_the_workbench_run_says_what_it_loads_first(monkeypatch):
    from humanlike_tui.ui import services

    monkeypatch.setattr(services, "_warmed", False)
    monkeypatch.setattr(services, "warm_imports", lambda: None)
    heard: list[str] = []
    services.prepare(None, heard.append)
    assert heard == [ev.LIBRARIES_LOADING]
