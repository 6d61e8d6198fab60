"""Quitting fast without losing anything: what must finish before the process ends, and a quick end
for everything else.

Textual's thread workers run in asyncio's default executor, whose threads Python joins at exit. A
hardware probe still importing torch, a VRAM plan or a data preview kept the process (and so the
shell prompt) for 5-8 s after ctrl+q. Those only read; their results are worthless once the app is
gone. Work that writes (an export, a rename, a run saving its checkpoint) registers itself with
`saving(...)`: the exit waits for it and says what it waits for.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator, TextIO

_lock = threading.Lock()
_saving: dict[object, str] = {}  # a key per save in progress -> what it is


@contextmanager
def saving(what: str) -> Iterator[None]:
    """Mark work that must not be cut off by the exit; `what` says what it is ('exporting run-1')."""
    key = object()
    with _lock:
        _saving[key] = what
    try:
        yield
    finally:
        with _lock:
            _saving.pop(key, None)


class _NoWaitExecutor(ThreadPoolExecutor):
    """asyncio.run() ends by shutting its default executor down with wait=True: the app's loop would
    wait there, after the terminal is back, for every thread worker still reading. Do not wait;
    finish_and_exit() waits for what saves."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)


def quick_loop_exit() -> None:
    """Called in the app's running loop (on mount, real runs only): its thread workers no longer delay
    the end of app.run()."""
    asyncio.get_running_loop().set_default_executor(_NoWaitExecutor(thread_name_prefix="worker"))


def pending() -> list[str]:
    with _lock:
        return list(_saving.values())


def finish_and_exit(code: int, out: TextIO | None = None, poll_s: float = 0.1) -> int:
    """After the app has given the terminal back: wait for the saves in progress (saying which), then
    end the process at once instead of waiting for threads that only read. Returns `code` unchanged
    when no other thread is alive (a clean exit, as in tests); otherwise it does not return."""
    if threading.active_count() <= 1:
        return code
    out = out if out is not None else sys.stderr
    announced: set[str] = set()
    while waiting := pending():
        for what in waiting:
            if what not in announced:
                announced.add(what)
                print(f"finishing before exit: {what} ...", file=out, flush=True)
        time.sleep(poll_s)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
