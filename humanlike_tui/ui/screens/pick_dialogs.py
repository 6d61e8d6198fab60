"""The Chat screen's edit dialog: rewrite one of the two answers into the one you wanted. Dismisses with
(side, text) — the edited text becomes the chosen answer, that side's own answer the rejected one — or None."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select, Static, TextArea

from humanlike_tui.ui.chat_picks import edit_problem
from humanlike_tui.ui.screens.dialogs import DIALOG_CSS

START_OPTIONS = (("the right answer (adapter)", "adapter"), ("the left answer (base model)", "base"))


class EditAnswerDialog(ModalScreen[tuple[str, str] | None]):
    DEFAULT_CSS = DIALOG_CSS.format(name="EditAnswerDialog") + """
    EditAnswerDialog > Vertical { width: 90%; max-width: 110; height: 90%; max-height: 28; }
    EditAnswerDialog #edit-start { width: 1fr; }
    EditAnswerDialog TextArea { height: 1fr; min-height: 3; margin-top: 1; }
    EditAnswerDialog .dialog-problem { color: $text-error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save pick", priority=True)]

    def __init__(self, answers: dict[str, str], side: str = "adapter") -> None:
        super().__init__()
        self._answers, self._side = answers, side

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Edit an answer into the one you wanted", classes="dialog-title")
            yield Static("Your text is saved as the chosen answer, the model's own as the rejected one.")
            yield Select(START_OPTIONS, value=self._side, allow_blank=False, id="edit-start", compact=True)
            yield TextArea(self._answers[self._side], id="edit-text", soft_wrap=True)
            yield Static("", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Save pick (ctrl+s)", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    @property
    def side(self) -> str:
        return self._side

    def on_select_changed(self, event: Select.Changed) -> None:
        """Start from the other answer: its text replaces the draft unless the draft was already edited."""
        event.stop()
        area = self.query_one(TextArea)
        if isinstance(event.value, str) and event.value != self._side:
            if area.text == self._answers[self._side]:
                area.text = self._answers[event.value]
            self._side = event.value

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save() if event.button.id == "ok" else self.dismiss(None)

    def action_save(self) -> None:
        text = self.query_one(TextArea).text
        problem = edit_problem(self._answers[self._side], text)
        if problem:
            self.query_one(".dialog-problem", Static).update(problem)
            return
        self.dismiss((self._side, text.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)
