"""Dialogs of the Chat and Adapters screens (a text answer, an export target). The palette provider
that lists a screen's own commands lives in ui/palette.py."""

from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from humanlike_tui.ui.palette import ScreenCommands
from humanlike_tui.ui.screens.dialogs import DIALOG_CSS

EXPORT_DTYPES = (("auto (the base model's own)", "auto"), ("float32", "float32"), ("bfloat16", "bfloat16"),
                 ("float16", "float16"))


class _SubmitOrCancel:
    """Enter or OK submits (the dialog's `_submit` checks and dismisses); Cancel or Escape dismisses None."""

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextPromptDialog(_SubmitOrCancel, ModalScreen[str | None]):
    """Ask for one line of text; `check(text)` returns a problem to show (the dialog stays) or ''."""

    DEFAULT_CSS = DIALOG_CSS.format(name="TextPromptDialog") + """
    TextPromptDialog .dialog-problem { color: $text-error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, question: str, value: str = "", *, ok: str = "OK",
                 check: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self._title, self._question, self._value, self._ok = title, question, value, ok
        self._check = check or (lambda text: "" if text.strip() else "must not be empty")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="dialog-title")
            yield Static(self._question)
            yield Input(self._value, id="answer")
            yield Static("", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self._ok, id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#answer", Input).focus()

    def _submit(self) -> None:
        text = self.query_one("#answer", Input).value.strip()
        problem = self._check(text)
        if problem:
            self.query_one(".dialog-problem", Static).update(problem)
            return
        self.dismiss(text)


class ExportDialog(_SubmitOrCancel, ModalScreen[tuple[str, str] | None]):
    """Where to write the merged model, and its dtype; dismisses with (folder, dtype) or None."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ExportDialog") + """
    ExportDialog Select { width: 1fr; margin-top: 1; }
    ExportDialog .dialog-problem { color: $text-error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str, folder: str) -> None:
        super().__init__()
        self._name, self._folder = name, folder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export {self._name} as a merged model", classes="dialog-title")
            yield Static("The base model in full precision with this adapter merged in, as safetensors with its "
                         "tokenizer: one folder any transformers program can load. The folder must be new (or empty).")
            yield Input(self._folder, id="folder")
            yield Select(EXPORT_DTYPES, value="auto", allow_blank=False, id="dtype")
            yield Static("", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Export", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#folder", Input).focus()

    def _submit(self) -> None:
        folder = self.query_one("#folder", Input).value.strip()
        if not folder:
            self.query_one(".dialog-problem", Static).update("give a folder to create")
            return
        self.dismiss((folder, str(self.query_one("#dtype", Select).value)))


ScreenBindingsProvider = ScreenCommands  # the name the screens used before ui/palette.py
