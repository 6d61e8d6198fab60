"""A Select that keyboard users can use: with nothing chosen yet, the first Down (or Enter) opens the list
on the first real option. Textual's Select highlighted its placeholder row first, so Down, Enter
"chose" the placeholder, i.e. nothing."""

from __future__ import annotations

from textual.widgets import Select
from textual.widgets._select import SelectOverlay  # Textual exports it only from here


class KeySelect(Select):
    def action_show_overlay(self) -> None:
        super().action_show_overlay()
        overlay = self.query_one(SelectOverlay)
        blank_first = self.is_blank() and self._allow_blank and overlay.option_count > 1
        if blank_first and overlay.highlighted in (None, 0):
            overlay.highlighted = 1  # the first real option, not the placeholder
