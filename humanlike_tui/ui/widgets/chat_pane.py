"""One side of the side-by-side chat: a title and a scrolling column of prompts and streamed answers.

The screen feeds it batched text (about every 50 ms) with `append`; `end_answer` replaces the
streamed text with the final answer, which is authoritative (the end marker cut, whitespace trimmed)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Static

from humanlike_tui.formatting import printable  # no terminal control characters from a model's output

CURSOR = "▌"


class ChatPane(Vertical):
    DEFAULT_CSS = """
    ChatPane { width: 1fr; height: 1fr; border: round $primary-darken-1; padding: 0 0; }
    ChatPane > .pane-title { width: 1fr; padding: 0 1; text-style: bold; color: $text-accent; }
    ChatPane > VerticalScroll { height: 1fr; padding: 0 1; }
    ChatPane .chat-prompt { margin-top: 1; color: $text-primary; text-style: bold; }
    ChatPane .chat-answer { }
    ChatPane .chat-note { color: $text-muted; text-style: italic; }
    ChatPane .chat-divider { color: $text-muted; margin-top: 1; }
    ChatPane .chat-failed { color: $text-error; }
    """

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._title = title
        self._answer: Static | None = None
        self.text = ""  # the answer being written (or the last one)

    def compose(self) -> ComposeResult:
        yield Label(self._title, classes="pane-title")
        yield VerticalScroll()

    @property
    def column(self) -> VerticalScroll:
        return self.query_one(VerticalScroll)

    @property
    def writing(self) -> bool:
        return self._answer is not None

    def set_title(self, title: str) -> None:
        self._title = title
        self.query_one(".pane-title", Label).update(title)

    def _add(self, content: Text | str, classes: str) -> Static:
        widget = Static(content, classes=classes)
        self.column.mount(widget)
        self.column.scroll_end(animate=False)
        return widget

    def add_prompt(self, prompt: str) -> None:
        self._add(Text("You: ") + Text(printable(prompt.strip())), "chat-prompt")

    def add_divider(self, text: str) -> None:
        self._add(Text(f"── {text} ──"), "chat-divider")

    def begin_answer(self) -> None:
        self.text = ""
        self._answer = self._add(Text(CURSOR), "chat-answer")

    def append(self, text: str) -> None:
        if self._answer is None:
            self.begin_answer()
        self.text += text
        self._answer.update(Text(printable(self.text.lstrip()) + CURSOR))
        self.column.scroll_end(animate=False)

    def end_answer(self, text: str, note: str = "") -> None:
        if self._answer is None:
            self.begin_answer()
        self.text = text
        self._answer.update(Text(printable(text) or "(no answer)"))
        self._answer = None
        if note:
            self._add(Text(note), "chat-note")

    def fail_answer(self, reason: str) -> None:
        """The answer being written ended with an error: keep what came, say why it stopped."""
        if self._answer is not None:
            self._answer.update(Text(printable(self.text.strip()) or "(no answer)"))
            self._answer = None
        self._add(Text(f"failed: {reason}"), "chat-failed")

    def clear(self) -> None:
        self._answer = None
        self.text = ""
        self.column.remove_children()
