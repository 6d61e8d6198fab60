"""Dialogs of the Chat and Adapters screens (a text answer, an export target). The palette provider
that lists a screen's own commands lives in ui/palette.py."""

from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from humanlike_tui.records import DEFAULT_GGUF_QUANT, EXPORT_FORMATS, EXPORT_MERGE_INTO, GGUF_QUANTS
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


class ExportDialog(_SubmitOrCancel, ModalScreen[tuple[str, str, str, str, str] | None]):
    """Where to write the merged model and how: the format, the base it is merged into, the dtype (a
    folder) or weight type (GGUF), in the words of `adapters export --help` (records.EXPORT_*).
    Dismisses with (folder, dtype, format, quant, merge_into) or None."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ExportDialog") + """
    ExportDialog Select { width: 1fr; margin-top: 1; }
    ExportDialog .dialog-problem { color: $text-error; height: auto; }
    ExportDialog .export-note { color: $text-muted; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str, folder: str) -> None:
        super().__init__()
        self._name, self._folder = name, folder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export {self._name}: this adapter merged into its base model", classes="dialog-title")
            yield Static("Written to a new folder (or an empty one).")
            yield Input(self._folder, id="folder")
            yield Select([(f"{k}: {v}", k) for k, v in EXPORT_FORMATS.items()], value="safetensors",
                         allow_blank=False, id="format")
            yield Select([(f"merged into {k}: {v}", k) for k, v in EXPORT_MERGE_INTO.items()], value="trained",
                         allow_blank=False, id="merge-into")
            yield Select(EXPORT_DTYPES, value="auto", allow_blank=False, id="dtype")
            yield Select([(f"GGUF weights {q}", q) for q in GGUF_QUANTS], value=DEFAULT_GGUF_QUANT,
                         allow_blank=False, id="quant")
            yield Static("", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Export", id="ok", variant="primary")

    def on_mount(self) -> None:
        self._show_format_options()
        self.query_one("#folder", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "format":
            self._show_format_options()

    def _show_format_options(self) -> None:
        """A folder has a dtype, a GGUF file a weight type: only the chosen format's choice is shown."""
        gguf = self.query_one("#format", Select).value == "gguf"
        self.query_one("#dtype", Select).display = not gguf
        self.query_one("#quant", Select).display = gguf

    def _submit(self) -> None:
        folder = self.query_one("#folder", Input).value.strip()
        if not folder:
            self.query_one(".dialog-problem", Static).update("give a folder to create")
            return
        value = lambda key: str(self.query_one(f"#{key}", Select).value)  # noqa: E731
        self.dismiss((folder, value("dtype"), value("format"), value("quant"), value("merge-into")))


ScreenBindingsProvider = ScreenCommands  # the name the screens used before ui/palette.py
