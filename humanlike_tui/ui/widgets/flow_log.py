"""A log pane that wraps its lines at its own width, and again when that width changes.

RichLog renders each line once, when written, at least `min_width` (78 by default) cells wide: in a
58-column pane a long line was wrapped at 78, so its end hid past the pane's edge and the next visible
line began with the hidden part's tail (an eval line read `... (eval_pref_accuracy` then `0.68)`, the
margin's value). FlowLog renders at the pane's width (min_width 1, shrink on) and keeps what it was
given, so a resize wraps every line again instead of leaving them cut at the old width.
"""

from __future__ import annotations

from collections import deque

from rich.console import RenderableType
from textual.events import Resize
from textual.widgets import RichLog


class FlowLog(RichLog):
    def __init__(self, *, max_lines: int = 2000, id: str | None = None) -> None:
        super().__init__(wrap=True, markup=False, min_width=1, max_lines=max_lines, id=id)
        self._entries: deque[RenderableType] = deque(maxlen=max_lines)
        self._flowed_width = 0

    @property
    def entries(self) -> list[RenderableType]:
        """What was written, in order (the newest `max_lines`)."""
        return list(self._entries)

    def add(self, content: RenderableType) -> None:
        self._entries.append(content)
        self.write(content, shrink=True)

    def clear_entries(self) -> None:
        self._entries.clear()
        self.clear()

    def on_resize(self, event: Resize) -> None:
        if not self._size_known:
            # Shown for the first time (the Train screen's log, hidden below 32 rows until v): RichLog then
            # writes what waited before this region is laid out, one character a line. Flow it after.
            self.call_after_refresh(self.reflow, True)
            return
        self.reflow()

    def reflow(self, to_end: bool = False) -> None:
        width = self.scrollable_content_region.width
        if self._size_known and width and width != self._flowed_width and self._entries:
            at_end = to_end or self.is_vertical_scroll_end
            self.clear()
            for content in self._entries:
                self.write(content, shrink=True, scroll_end=False)
            if at_end:
                self.scroll_end(animate=False, immediate=True)
        self._flowed_width = width or self._flowed_width
