"""Modal dialogs that return a value to the caller (push_screen(dialog, callback))."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from humanlike_tui.protocols import RunChoice

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 72; height: auto; max-height: 80%;
    border: thick $primary; background: $surface; padding: 1 2;
}}
{name} .dialog-title {{ text-style: bold; margin-bottom: 1; }}
{name} .dialog-buttons {{ height: auto; align-horizontal: right; margin-top: 1; }}
{name} .dialog-buttons Button {{ margin-left: 2; }}
"""


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; dismisses with True for yes."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, title: str, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self._title, self._question, self._yes, self._no = title, question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="dialog-title")
            yield Static(self._question)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._no} (n)", id="no")  # the keys on the buttons: nothing else shows them
                yield Button(f"{self._yes} (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class GpuShareDialog(ModalScreen[str]):
    """A training run holds the GPU and something wants to load a model onto it: pause the run first,
    go ahead anyway, or cancel. Dismisses with "pause", "anyway" or "cancel"."""

    DEFAULT_CSS = DIALOG_CSS.format(name="GpuShareDialog")
    BINDINGS = [Binding("p", "choose('pause')", "Pause training first"), Binding("g", "choose('anyway')", "Go ahead"),
                Binding("escape,c", "choose('cancel')", "Cancel")]

    def __init__(self, what: str) -> None:
        super().__init__()
        self._what = what

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Training is using the GPU", classes="dialog-title")
            yield Static(gpu_share_question(self._what), id="gpu-share-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (Esc)", id="cancel")
                yield Button("Go ahead (g)", id="anyway", variant="warning")
                yield Button("Pause training first (p)", id="pause", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#pause", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


def gpu_share_question(what: str) -> str:
    return (f"{what} loads another copy of the base model onto the GPU the run is training on. The run "
            "sized its batches to the memory that was free when it started, so it may run out: it then "
            "halves its batches, and stops (with its checkpoint kept) if that is not enough.\n\n"
            "Pause training first: a checkpoint is saved, the GPU is freed, and this goes ahead when the "
            "run has let go. Resume later with r on the Train screen.")


def finished_runs(names: list[str]) -> str:
    """'2 finished runs (a, b)', at most three names."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{len(names)} finished run{'s' if len(names) != 1 else ''} ({shown})"


def no_runs_text(where: str, finished: list[str]) -> str:
    """Why the picker lists nothing: no runs at all, or only finished ones (it said 'No earlier runs found'
    beside a folder of finished runs)."""
    place = f" in {where}" if where else ""
    if not finished:
        return f"No earlier runs found{place}. Start one from the Config screen (F2)."
    return (f"Nothing to resume{place}: {finished_runs(finished)}, with nothing left to train; their adapters "
            "are ready in Chat (F4) and Adapters (F5). Resume continues a paused, stopped or interrupted run; "
            "n starts a new one.")


class RunPicker(ModalScreen[RunChoice | None]):
    """Choose an earlier run to resume; dismisses with None on escape."""

    DEFAULT_CSS = DIALOG_CSS.format(name="RunPicker") + "RunPicker OptionList { height: auto; max-height: 20; }"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs: list[RunChoice], where: str = "", finished: list[str] | None = None) -> None:
        super().__init__()
        self._runs = runs
        self._where = where
        self._finished = finished or []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Resume an earlier run", classes="dialog-title")
            if self._runs:
                yield OptionList(*[Option(r.label, id=str(i)) for i, r in enumerate(self._runs)])
                yield Static("enter: resume from its last checkpoint · escape: cancel", classes="dialog-hint")
                if self._finished:
                    yield Static(f"Not listed: {finished_runs(self._finished)}, with nothing left to train.")
            else:
                yield Static(id="no-runs", content=no_runs_text(self._where, self._finished))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (Esc)", id="cancel")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self._runs[int(event.option.id or 0)])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
