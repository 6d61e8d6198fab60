"""Where the headless commands write for people: a rich Console that wraps only on a terminal.

Redirected to a file or a pipe, rich assumes 80 columns and wraps there, splitting paths and long
lines across lines; a log or a script reading the output wants each line whole. So when the stream is
not a terminal, lines are never wrapped (soft_wrap) and tables get their natural width.
"""

from __future__ import annotations

import sys
from typing import Any

UNWRAPPED_WIDTH = 4000  # wide enough that nothing a command prints is wrapped or squeezed


def console(*, stderr: bool = False, **kwargs: Any):
    """A rich Console on stdout (or stderr): the terminal's width on a terminal, no wrapping elsewhere."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return Console(stderr=stderr, **kwargs)
    return Console(stderr=stderr, soft_wrap=True, width=UNWRAPPED_WIDTH, **kwargs)
