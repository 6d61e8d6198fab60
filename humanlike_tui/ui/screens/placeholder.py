"""A clear 'not here yet' panel for screens that come in part 2, so the shell has all five places."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class PlaceholderScreen(Screen):
    DEFAULT_CSS = """
    PlaceholderScreen .placeholder {
        width: 64; height: auto; padding: 1 2; border: round $primary; text-align: center;
    }
    """
    HEADLINE = ""
    BODY = ""

    def __init__(self, state: object = None) -> None:
        super().__init__()

    def compose(self) -> ComposeResult:
        yield Header()
        with Middle(), Center():
            yield Static(f"[b]{self.HEADLINE}[/b]\n\ncoming in part 2\n\n{self.BODY}", classes="placeholder")
        yield Footer()
