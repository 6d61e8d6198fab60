"""Who is training a run: an OS file lock on run.lock (flock; a locked byte on Windows) with the holder's pid,
host and process start time, so a reused pid is not taken for the holder. Stdlib and psutil."""

from __future__ import annotations

import os
import socket
from typing import Any


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine.

    Never os.kill(pid, 0) on Windows: there signal 0 is CTRL_C_EVENT, so the 'probe' would interrupt
    (or, for other signals, terminate) the very run it asks about. psutil asks the OS without
    sending anything.
    """
    import psutil

    try:
        return 0 < pid < 2**31 and psutil.pid_exists(pid)
    except (OverflowError, ValueError, OSError):
        return False


def as_pid(value: Any) -> int | None:
    """A pid read from a lock file written by anyone: an int in range, else None ("abc", 10**30, null)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        pid = int(value)
    except ValueError:
        return None
    return pid if 0 < pid < 2**31 else None


def process_started(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if it is gone or cannot be asked."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OverflowError, ValueError, OSError):
        return None


def holder_alive(info: dict[str, Any]) -> bool:
    """Whether the process a lock file names still runs here. The pid alone is not enough: once the
    trainer is dead the OS may give its pid to another program, so the start time must match too."""
    pid = as_pid(info.get("pid"))
    if pid is None or info.get("host") != socket.gethostname() or not pid_alive(pid):
        return False
    started = info.get("started")
    if isinstance(started, (int, float)) and not isinstance(started, bool):
        now = process_started(pid)
        return now is not None and abs(now - started) < 1.0
    return True  # an old lock without a start time: the pid is all we know


def try_lock(fd: int) -> bool:
    """An exclusive OS lock on an open file, without waiting. The OS drops it when the process dies,
    however it dies, so a stale lock can never block a resume."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, LOCK_BYTE, os.SEEK_SET)  # a byte past the content, so readers are not blocked
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


LOCK_BYTE = 1 << 20


LOCK_FILE = "run.lock"
