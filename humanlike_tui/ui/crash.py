"""What the person sees after an unexpected error ended the workbench: one line and the crash report's path
(written by humanlike_tui.errors.write_crash_report), never a traceback."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.binding import Binding


class CrashApp(App[None]):
    """Shown after an unexpected error ended the workbench: the one line and the crash report's path,
    instead of a traceback."""

    BINDINGS = [Binding("q,escape,enter,space", "quit", "Close")]
    CSS = ("Screen { align: center middle; } #crash { width: 80%; max-width: 100; border: heavy $error; "
           "padding: 1 2; height: auto; }")

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line

    def compose(self) -> Any:
        from textual.widgets import Static

        yield Static(f"[b]The workbench stopped after an unexpected error[/b]\n\n{self.line}\n\n"
                     "Your runs and checkpoints are on disk; resume them after restarting. Press Enter to close.",
                     id="crash")
