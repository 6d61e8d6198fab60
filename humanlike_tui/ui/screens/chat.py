"""Chat: placeholder until part 2 (issue 5) fills it."""

from __future__ import annotations

from humanlike_tui.ui.screens.placeholder import PlaceholderScreen


class ChatScreen(PlaceholderScreen):
    SUB_TITLE = "Chat"
    HEADLINE = "Chat"
    BODY = "Answers from the base model and a trained adapter, side by side, streamed as they are written."
