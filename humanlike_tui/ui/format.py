"""Small, pure text formatters shared by the screens (durations, bytes, rates)."""

from __future__ import annotations

GIB = 1024**3


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


def clock_stamp(seconds: float) -> str:
    """mm:ss (or h:mm:ss) since the app started: short, and stable in tests with a fixed clock."""
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"
    return f"{s // 60:02d}:{s % 60:02d}"


def gib(n_bytes: float | None, digits: int = 1) -> str:
    if n_bytes is None:
        return "—"
    return f"{n_bytes / GIB:.{digits}f}"


def rate(tokens_per_s: float | None) -> str:
    if not tokens_per_s:
        return "—"
    if tokens_per_s >= 10_000:
        return f"{tokens_per_s / 1000:.0f}k"
    if tokens_per_s >= 1000:
        return f"{tokens_per_s / 1000:.1f}k"
    return f"{tokens_per_s:.0f}"


def learning_rate(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:.2e}"


def bar(fraction: float, width: int) -> str:
    """A text bar of eighth-blocks, so a bar 10 cells wide still moves in 80 visible steps."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part and full < width else ""
    return ("█" * full + partial).ljust(width)
