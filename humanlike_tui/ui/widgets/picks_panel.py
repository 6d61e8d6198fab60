"""The picks panel (Adapters screen): each collection of Chat picks with its count, and how to train on it.
Reads the store in a thread worker (protocols.PicksService.collections); hidden when no picks service is
wired (the tests' fake workbench), so it costs nothing there."""

from __future__ import annotations

from dataclasses import dataclass

from textual import work
from textual.message import Message
from textual.widgets import Static

from humanlike_tui.formatting import error_text
from humanlike_tui.protocols import PicksService


@dataclass
class PicksListed(Message):
    bubble = False
    collections: list[tuple[str, int]]
    error: str = ""


def picks_text(collections: list[tuple[str, int]]) -> str:
    if not collections:
        return ("Picks: none yet. On the Chat screen, once both answers are in, ctrl+b / ctrl+f save which one "
                "is better (ctrl+y: edit one into the answer you wanted).")
    listed = " · ".join(f"{name} {count}" for name, count in collections)
    first = collections[0][0]
    return (f"Picks: {listed}. Train on them: data.source = picks:{first} (Config, F2), or "
            f"train --from RUN --set data.source=picks:{first}; the newest fifth is held out for "
            f"eval --data picks:{first}.")


class PicksPanel(Static):
    DEFAULT_CSS = """
    PicksPanel { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, picks: PicksService | None, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.picks = picks
        self.collections: list[tuple[str, int]] | None = None  # None until read
        self.display = picks is not None

    def reload(self) -> None:
        if self.picks is not None:
            self._read()

    @work(thread=True, exclusive=True, group="picks-list", exit_on_error=False, name="picks-list")
    def _read(self) -> None:
        try:
            self.post_message(PicksListed(self.picks.collections()))
        except Exception as exc:  # the panel is informative: a broken file must not stop the screen
            self.post_message(PicksListed([], error_text(exc)))

    def on_picks_listed(self, message: PicksListed) -> None:
        message.stop()
        self.collections = message.collections
        self.update(f"Picks: cannot read them ({message.error})" if message.error else picks_text(message.collections))
