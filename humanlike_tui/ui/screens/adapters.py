"""Adapters: placeholder until part 2 (issue 5) fills it."""

from __future__ import annotations

from humanlike_tui.ui.screens.placeholder import PlaceholderScreen


class AdaptersScreen(PlaceholderScreen):
    SUB_TITLE = "Adapters"
    HEADLINE = "Adapters"
    BODY = "List, rename, delete and export the adapters your runs produced."
