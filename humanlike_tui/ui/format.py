"""Small text formatters only the screens use (rates, learning rates, text bars). Sizes, times and
errors are written by humanlike_tui.formatting, shared with the CLI."""

from __future__ import annotations


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
