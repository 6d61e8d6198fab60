"""The Config screen's model picker: the curated list with each model's size, licence, whether the hub
gates it and the memory plan's verdict on this machine (planned in a worker through the hardware
service, with the config's other settings; the shapes are known offline), or any hub id or local folder
typed in. `d` downloads the highlighted hub model with its progress (bytes, rate, time left); `c` or
Escape cancels it, and a later download resumes what was fetched. Dismisses with the chosen name or None.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from humanlike_tui.config import Config
from humanlike_tui.formatting import duration, error_text, size_text
from humanlike_tui.protocols import DownloadView, HardwareView, ModelChoice, PlanView, Services
from humanlike_tui.ui.messages import NewestOnly

VERDICT_STYLE = {"fits": "green", "tight": "yellow", "does not fit": "red"}
COLUMNS = (("model", "model", 40), ("size", "size", 6), ("licence", "licence", 12), ("hub", "hub", 7),
           ("plan here", "plan", 19))  # (title, key, width); the model's width follows the terminal (model_width)
DIALOG_MAX_WIDTH = 118


def model_width(terminal_width: int) -> int:
    """The model column's width so that every column, the plan last, is in view: the dialog's border and
    padding (4), the table's scrollbar (2) and two cells of padding per column take the rest."""
    others = sum(width for _, _, width in COLUMNS[1:]) + 2 * len(COLUMNS)
    return max(16, min(58, min(terminal_width, DIALOG_MAX_WIDTH) - 6 - others))


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


@dataclass
class Planned(Message):
    bubble = False
    name: str
    plan: PlanView | None
    error: str = ""


@dataclass
class Downloading(NewestOnly):
    bubble = False
    name: str
    progress: DownloadView


@dataclass
class DownloadEnded(Message):
    bubble = False
    name: str
    folder: str = ""
    error: str = ""


def size_cell(choice: ModelChoice) -> str:
    return "tiny" if choice.params_b < 0.01 else f"{choice.params_b:g}B"


def verdict_cell(plan: PlanView | None, error: str = "") -> Text:
    if error:
        return Text("unknown", style="dim")
    if plan is None:
        return Text("planning …", style="dim")
    where = " in RAM" if plan.device == "cpu" else ""
    text = Text(plan.verdict + where, style=VERDICT_STYLE.get(plan.verdict, ""))
    if plan.slow:
        text.append(" · slow", style="yellow")
    return text


def progress_text(name: str, p: DownloadView) -> str:
    if p.finished:
        return f"{name}: downloaded ({size_text(p.total_bytes)})"
    share = f" ({p.done_bytes / p.total_bytes:.0%})" if p.total_bytes else ""
    eta = f", about {duration(p.eta_s)} left" if p.eta_s is not None else ""
    return (f"downloading {name}: {size_text(p.done_bytes)} of {size_text(p.total_bytes)}{share}, "
            f"{size_text(p.bytes_per_s)}/s{eta} · c cancels")


class ModelPicker(ModalScreen[str | None]):
    DEFAULT_CSS = """
    ModelPicker { align: center middle; }
    ModelPicker > Vertical { width: 100%; max-width: 118; height: auto; max-height: 100%;
                             border: thick $primary; background: $surface; padding: 0 1; }
    ModelPicker .dialog-title { text-style: bold; }
    ModelPicker DataTable { height: auto; max-height: 16; }
    ModelPicker.-short DataTable { max-height: 9; }  /* 24 rows: the input, status and buttons stay in view */
    ModelPicker.-short #model-other { margin-top: 0; }
    ModelPicker #model-other { margin-top: 1; }
    ModelPicker #model-status { height: auto; color: $text-muted; }
    ModelPicker #model-buttons { height: auto; align-horizontal: right; }
    ModelPicker #model-buttons Button { margin-left: 1; min-width: 0; width: auto; }
    """
    BINDINGS = [Binding("d", "download", "Download", tooltip="Fetch the highlighted hub model into the cache"),
                Binding("c", "cancel_download", "Cancel download", show=False),
                Binding("escape", "close", "Close")]

    def __init__(self, services: Services, config: Config, hardware: HardwareView | None, current: str) -> None:
        super().__init__()
        self.services, self.config, self.hardware, self.current = services, config, hardware, current
        self.choices: list[ModelChoice] = services.models.choices() if services.models is not None else []
        self.plans: dict[str, tuple[PlanView | None, str]] = {}
        self.downloading: str | None = None
        self.download_note = ""
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Choose a model (Enter takes the highlighted one)", classes="dialog-title")
            yield DataTable(id="model-table", cursor_type="row", zebra_stripes=True)
            yield Input(placeholder="or type a hub id (org/name) or a local folder, then Enter", id="model-other")
            yield Static("", id="model-status")
            with Horizontal(id="model-buttons"):
                yield Button("Download", id="download", compact=True)
                yield Button("Choose", id="choose", variant="primary", compact=True)
                yield Button("Close", id="close", compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        wide = model_width(self.app.size.width)
        for title, key, width in COLUMNS:
            table.add_column(title, key=key, width=wide if key == "model" else width)
        for choice in self.choices:
            hub = "offline" if choice.offline else "gated" if choice.gated else "open"
            model = Text(cut(choice.label, wide)) + Text("\n" + cut(choice.name, wide), style="dim")
            table.add_row(model, size_cell(choice), cut(choice.licence, COLUMNS[2][2]), hub, verdict_cell(None),
                          key=choice.name, height=2)
        names = [c.name for c in self.choices]
        if self.current in names:
            table.move_cursor(row=names.index(self.current))
        table.focus()
        self._plan_all(list(self.choices))
        self._show_status()

    # ---- the verdict of every model, planned in a worker ----

    @work(thread=True, exclusive=True, group="model-plans", exit_on_error=False, name="model-plans")
    def _plan_all(self, choices: list[ModelChoice]) -> None:
        for choice in choices:
            if self._stop.is_set():
                return
            try:
                cfg = self.config.replace(**{"model.name": choice.name})
                plan = self.services.hardware.plan(cfg, self.hardware) if self.hardware is not None else None
                self.post_message(Planned(choice.name, plan, "" if plan is not None else "no hardware report"))
            except Exception as exc:  # a model whose shapes are unknown: its row says so
                self.post_message(Planned(choice.name, None, error_text(exc)))

    def on_planned(self, message: Planned) -> None:
        self.plans[message.name] = (message.plan, message.error)
        self.query_one(DataTable).update_cell(message.name, "plan", verdict_cell(message.plan, message.error))
        self._show_status()

    # ---- choosing ----

    @property
    def highlighted(self) -> ModelChoice | None:
        table = self.query_one(DataTable)
        if not self.choices or table.row_count == 0:
            return None
        return self.choices[min(max(table.cursor_row, 0), len(self.choices) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_status()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_choose()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self._close(event.value.strip())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {"download": self.action_download, "choose": self.action_choose, "close": self.action_close}[
            event.button.id or "close"]()

    def action_choose(self) -> None:
        other = self.query_one("#model-other", Input).value.strip()
        choice = self.highlighted
        if other:
            self._close(other)
        elif choice is not None:
            self._close(choice.name)

    def action_close(self) -> None:
        if self.downloading:
            self.action_cancel_download()
            return
        self._close(None)

    def _close(self, name: str | None) -> None:
        self._stop.set()  # the planning worker and a download end (a download keeps what it fetched)
        self.dismiss(name)

    # ---- downloading ----

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "download":
            choice = self.highlighted
            return True if (choice is not None and not choice.offline and not self.downloading
                            and self.services.models is not None) else None
        if action == "cancel_download":
            return True if self.downloading else None
        return True

    def action_download(self) -> None:
        choice = self.highlighted
        if not self.check_action("download", ()):
            if choice is not None and choice.offline:
                self.notify(f"{choice.name} is made on this machine: nothing to download.", timeout=5)
            return
        assert choice is not None and self.services.models is not None
        self.downloading, self.download_note = choice.name, f"downloading {choice.name} …"
        self._stop = threading.Event()
        self._download(choice.name, self._stop)
        self._show_status()

    @work(thread=True, group="model-download", exit_on_error=False, name="model-download")
    def _download(self, name: str, stop: threading.Event) -> None:
        try:
            folder = self.services.models.download(name, None, lambda p: self.post_message(Downloading(name, p)), stop)
            self.post_message(DownloadEnded(name, folder))
        except Exception as exc:
            self.post_message(DownloadEnded(name, error=error_text(exc) if not stop.is_set() else "cancelled"))

    def on_downloading(self, message: Downloading) -> None:
        self.download_note = progress_text(message.name, message.progress)
        self._show_status()

    def on_download_ended(self, message: DownloadEnded) -> None:
        self.downloading = None
        if message.error == "cancelled":
            self.download_note = f"{message.name}: cancelled; what was fetched is kept, d resumes it"
        elif message.error:
            self.download_note = f"{message.name}: {message.error}"
        else:
            self.download_note = f"{message.name}: downloaded to {message.folder}"
        self._show_status()

    def action_cancel_download(self) -> None:
        if self.downloading:
            self._stop.set()
            self.download_note = f"cancelling the download of {self.downloading} …"
            self._show_status()

    def _show_status(self) -> None:
        choice = self.highlighted
        lines = []
        if choice is not None:
            plan, error = self.plans.get(choice.name, (None, ""))
            if plan is not None:
                lines.append(f"{choice.name}: {plan.headline}" + (f"; slow: {plan.slow}" if plan.slow else ""))
            elif error:
                lines.append(f"{choice.name}: no plan ({error})")
            if choice.gated:
                lines.append("gated: accept its terms on huggingface.co and run `hf auth login` before downloading")
        if self.download_note:
            lines.append(self.download_note)
        lines.append("Enter chooses · d downloads a hub model · Esc closes (or cancels a download)")
        self.query_one("#model-status", Static).update("\n".join(lines))
        if self.is_mounted:
            self.query_one("#download", Button).disabled = not self.check_action("download", ())
        self.refresh_bindings()
