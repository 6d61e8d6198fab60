"""The run store must behave on Windows too: no POSIX-only probes that mean something else there."""
import os
import subprocess
import sys

from humanlike_tui import fileio as F
from humanlike_tui.engine.storage import locks


def test_pid_alive_sees_this_process_and_not_a_finished_one():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert locks.pid_alive(os.getpid())
    assert not locks.pid_alive(child.pid)
    assert not locks.pid_alive(0) and not locks.pid_alive(-5)


def test_pid_alive_asks_psutil_not_a_signal(monkeypatch):
    # On Windows os.kill(pid, 0) sends CTRL_C_EVENT, so the probe goes through psutil, which asks the
    # OS portably (OpenProcess there, kill(pid, 0) only on POSIX where it is harmless).
    import psutil

    asked = []
    monkeypatch.setattr(psutil, "pid_exists", lambda pid: asked.append(pid) or False)
    assert not locks.pid_alive(os.getpid())
    assert asked == [os.getpid()]


def test_a_rename_held_up_for_a_moment_is_retried_not_lost(tmp_path, monkeypatch):
    # Windows refuses to rename over a file another thread has open; the hold lasts milliseconds.

    real = os.replace
    refusals = []

    def busy_twice(src, dst):
        if len(refusals) < 2:
            refusals.append(dst)
            raise PermissionError(13, "The process cannot access the file", str(dst))
        real(src, dst)

    monkeypatch.setattr(F.os, "replace", busy_twice)
    folder = tmp_path / "run"
    folder.mkdir()
    target = folder / "meta.json"
    target.write_text("old", encoding="utf-8")
    F.atomic_write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "new" and len(refusals) == 2
    assert [p.name for p in folder.iterdir()] == ["meta.json"]  # no temporary file left behind


def test_a_rename_that_stays_refused_fails_and_keeps_the_old_file(tmp_path, monkeypatch):

    def always_busy(src, dst):
        raise PermissionError(13, "busy", str(dst))

    monkeypatch.setattr(F.os, "replace", always_busy)
    monkeypatch.setattr(F.time, "sleep", lambda s: None)
    folder = tmp_path / "run"
    folder.mkdir()
    target = folder / "meta.json"
    target.write_text("old", encoding="utf-8")
    try:
        F.atomic_write_text(target, "new")
    except PermissionError:
        pass
    else:
        raise AssertionError("expected the refusal to surface")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in folder.iterdir()] == ["meta.json"]


def test_every_module_imports_without_posix_only_modules():
    # Windows has no resource/fcntl/termios/pwd/grp: a module-level import of one kept the whole
    # engine from loading there. Block them and import every module of the package.
    code = r'''
import importlib, pkgutil, sys
class Windowsish:
    BLOCKED = {"resource", "fcntl", "termios", "pwd", "grp"}
    def find_spec(self, name, path=None, target=None):
        if name in self.BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked: not on Windows)")
for name in Windowsish.BLOCKED:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, Windowsish())
import humanlike_tui
failed = []
for m in pkgutil.walk_packages(humanlike_tui.__path__, "humanlike_tui."):
    if m.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(m.name)
    except ImportError as exc:
        failed.append(f"{m.name}: {exc}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
'''
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_peak_rss_has_a_figure_without_resource(monkeypatch):
    import builtins

    from humanlike_tui.engine.hardware import procmem as procmem

    real_import = builtins.__import__

    def no_resource(name, *a, **k):
        if name == "resource":
            raise ImportError("No module named 'resource'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(procmem.Path, "read_text", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    monkeypatch.setattr(builtins, "__import__", no_resource)
    assert procmem.peak_rss_bytes() > 10 * 2**20  # psutil's figure (peak working set on Windows, rss here)


def test_windows_peak_is_the_peak_working_set(monkeypatch):
    import psutil

    from humanlike_tui.engine.hardware import procmem as procmem

    class Info:
        rss, peak_wset = 100, 12345678  # psutil's memory_info() on Windows has peak_wset

    monkeypatch.setattr(psutil.Process, "memory_info", lambda self: Info())
    assert procmem._windows_peak() == 12345678


def test_output_in_a_legacy_code_page_replaces_what_it_cannot_encode():
    import io

    from humanlike_tui.cli import never_fail_on_output

    raw = io.BytesIO()
    cp1252 = io.TextIOWrapper(raw, encoding="cp1252")  # what a pipe gets on a western Windows
    never_fail_on_output([cp1252])
    print("sounds fun 😄 → let's go", file=cp1252)
    cp1252.flush()
    assert raw.getvalue().decode("cp1252") == "sounds fun ? ? let's go\r\n".replace("\r\n", "\n")
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    never_fail_on_output([utf8])
    assert utf8.errors == "strict"  # UTF-8 streams are left alone
