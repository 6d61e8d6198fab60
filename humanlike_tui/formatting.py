"""Text for people: one place for how figures, sizes, times and errors are written. Stdlib only."""

from __future__ import annotations

import textwrap
import time

from humanlike_tui.errors import HumanlikeError


def printable(text: str) -> str:
    """Model output made safe for a terminal: control characters (ESC or CSI could start a terminal
    escape sequence) become U+FFFD; newlines and tabs stay. For display only: answers keep every character."""
    return "".join(c if c in "\n\t" or not (c < " " or "\x7f" <= c <= "\x9f") else "\ufffd" for c in text)


# ---- sizes (base 1024, as the memory and file sizes people compare them with) ----

GIB = 1024**3
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def size_text(n: float | None, unit: str | None = None, unknown: str = "—") -> str:
    """A size in bytes: '512 B', '58.0 MB', '1.7 GB'; `unit` fixes the unit ('1,710.9 MB')."""
    if n is None:
        return unknown
    if unit is None:
        unit = next((u for u, size in SIZE_UNITS.items() if abs(n) < size * 1024), "GB")
    value = n / SIZE_UNITS[unit]
    return f"{value:,.0f} B" if unit == "B" else f"{value:,.1f} {unit}"


def gib(n: float | None, digits: int = 2, *, unit: bool = True, unknown: str = "—") -> str:
    """GPU memory in GiB: '5.60 GiB'; without the unit for pairs ('5.6 / 8.0 GiB')."""
    if n is None:
        return unknown
    return f"{n / GIB:.{digits}f}" + (" GiB" if unit else "")


def memory_text(n: float | None, unknown: str = "n/a") -> str:
    """Memory as `hw` shows it: '5.60 GiB' from 1 GiB up, else '512 MiB'."""
    if n is None:
        return unknown
    return f"{n / GIB:.2f} GiB" if abs(n) >= GIB else f"{n / 2**20:.0f} MiB"


# ---- times ----

def date_text(t: float | None, with_time: bool = False, unknown: str = "—") -> str:
    """A unix time as a local date ('2026-01-01') or date and minute ('2026-01-01 12:00')."""
    if not t:
        return unknown
    return time.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d", time.localtime(t))


def file_stamp(t: float) -> str:
    """A local time for a file name that sorts by time: '20260101-120000'."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(t))


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 1h02m; an em dash when unknown (before the first step, or no estimate yet)."""
    if seconds is None or seconds < 0 or seconds != seconds:  # the last test catches NaN
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def long_duration(seconds: float) -> str:
    """'45s', '3m05s', '5.2 hours', '58 days': a training run's length, however long."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return duration(seconds)


def clock_stamp(seconds: float) -> str:
    """mm:ss (or h:mm:ss) since a start: short, and stable in tests with a fixed clock."""
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"
    return f"{s // 60:02d}:{s % 60:02d}"


# ---- errors ----

def error_text(exc: BaseException | None) -> str:
    """One line for people: our own errors already say what to do; anything else is a bug, shown
    with its type."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, HumanlikeError):
        return str(exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


# ---- conversations (the Config screen's data look and `data inspect`) ----

LOSS_MARK = "*"
SHAPE_NAMES = {"prompt_chosen": "prompt/chosen", "messages": "messages", "sharegpt": "ShareGPT",
               "preference_messages": "preference conversations"}


def shapes_line(shapes: dict[str, int]) -> str:
    """'messages 30, ShareGPT 10': usable rows per shape."""
    return ", ".join(f"{SHAPE_NAMES.get(s, s)} {n:,}" for s, n in sorted(shapes.items())) or "no usable rows"


def turn_lines(turns, width: int = 100) -> list[tuple[str, bool]]:
    """A row's turns (objects with role, text, loss) as lines '* assistant  text' (the mark: the turn is
    learned) with long text wrapped and cut; each line with whether its turn carries loss."""
    out: list[tuple[str, bool]] = []
    for turn in turns:
        text = printable(" ".join(turn.text.split()))
        text = text if len(text) <= 4 * width else text[:4 * width - 1] + "…"
        body = textwrap.wrap(text, max(20, width - 13)) or [""]
        head = f"{LOSS_MARK if turn.loss else ' '} {turn.role:<10} "
        out += [((head if i == 0 else " " * len(head)) + line, turn.loss) for i, line in enumerate(body)]
    return out
