"""Writing files so that a crash leaves the old content or the new, never half, with the permissions a normal
write would give (the umask). Stdlib only: the config, the store and the UI share it."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write beside the target, fsync, then rename: a crash leaves the old file or the new, never half."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a normal write gives 0666 less the umask
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        replace_retrying(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask has no getter, and
    setting it for a moment would give a file another thread creates meanwhile the wrong mode)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def replace_retrying(src: str | os.PathLike, dst: str | os.PathLike, tries: int = 20, wait_s: float = 0.05) -> None:
    """os.replace, retried for about a second on PermissionError.

    On Windows a rename over a file fails while any handle has it open: the UI thread reading
    meta.json while the engine rewrites it, or a virus scanner glancing at a new file. Those holds
    last milliseconds, so waiting is right; on POSIX the first try succeeds.
    """
    for attempt in range(tries):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == tries - 1:
                raise
            time.sleep(wait_s)
