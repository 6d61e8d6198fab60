"""Adapters: every run in the store, finished or not, with its base model, data, steps, final eval
loss, date and size; details of the highlighted one; rename, delete (asks first), export a merged
model, open in Chat, and resume an incomplete run. The store is read in thread workers that talk
back through post_message; the list is read again whenever the screen is shown."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Static

from humanlike_tui.ui.chat_services import ChatServices, chat_services
from humanlike_tui.ui.messages import NewestOnly
from humanlike_tui.ui.screens.chat import ChatScreen, error_text
from humanlike_tui.ui.screens.chat_dialogs import ExportDialog, ScreenBindingsProvider, TextPromptDialog
from humanlike_tui.ui.screens.dialogs import ConfirmDialog
from humanlike_tui.ui.state import WorkbenchState

# Method, times and folders are in the details pane: nine columns would not fit 120 cells.
COLUMNS = ("Name", "State", "Base model", "Data", "Steps", "Eval loss", "Date", "Size")
INCOMPLETE_MARK = "⚠"
STATE_STYLE = {"finished": "green", "running": "bold cyan", "paused": "yellow", "stopped": "yellow",
               "interrupted": "red", "failed": "bold red"}
# Which button runs which action; the same check_action rules grey out both.
BUTTONS = {"open": "open_in_chat", "rename": "rename", "delete": "delete", "export": "export",
           "resume": "resume", "reload": "reload"}


def human_bytes(n: int | None) -> str:
    if not n:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "—"


def date_text(t: float | None, with_time: bool = False) -> str:
    return time.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d", time.localtime(t)) if t else "—"


def tail(text: str, width: int) -> str:
    """The end of a long id or path ('…-DPO-Dataset'): the end is what tells them apart."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def middle(text: str, width: int) -> str:
    """A long run name with its start (the date) and end (model, method) kept."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[-(width - 1 - head):]


def state_cell(info: Any) -> Text:
    if info.complete or info.status == "running":
        return Text(info.status, style=STATE_STYLE.get(info.status, ""))
    return Text(f"{INCOMPLETE_MARK} {info.status}", style=STATE_STYLE.get(info.status, ""))


def row_cells(info: Any) -> tuple:
    steps = f"{info.steps if info.steps is not None else '?'}/{info.max_steps or '?'}"
    loss = f"{info.final_eval_loss:.4f}" if info.final_eval_loss is not None else "—"
    return (middle(info.name, 26), state_cell(info), tail(info.base_model, 18), tail(info.data_source, 16), steps,
            loss, date_text(info.created), human_bytes(info.size_bytes))


def details_text(info: Any, details: dict[str, Any] | None) -> Text:
    """The highlighted run: what it is, how it went, what can be done with it."""
    text = Text()
    text.append(f"{info.name}\n", style="bold")
    text.append(f"{info.state}", style=STATE_STYLE.get(info.status, ""))
    if info.error:
        text.append(f" · {info.error}", style="red")
    text.append(f"\nbase {info.base_model} · data {info.data_source} · {info.method}, {info.steps or 0}/"
                f"{info.max_steps or '?'} steps · started {date_text(info.created, True)}")
    losses = []
    if info.final_loss is not None:
        losses.append(f"train loss {info.final_loss:.4f}")
    if info.final_eval_loss is not None:
        losses.append(f"eval loss {info.final_eval_loss:.4f}")
    if losses:
        text.append(" · " + ", ".join(losses))
    text.append(f"\nfolder {info.run_dir} · {human_bytes(info.size_bytes)} (adapter "
                f"{human_bytes(info.adapter_bytes)})")
    if details:
        text.append(_details_lines(details))
        if details.get("scorecard"):
            text.append(scorecard_lines(details["scorecard"]))
    if info.can_chat:
        text.append("\nenter/o: chat with it · x: export a merged model", style="dim")
    elif info.can_resume:
        start = f"from step {info.last_checkpoint}" if info.last_checkpoint else "from the start (no checkpoint yet)"
        text.append(f"\nincomplete: u resumes it {start} · d deletes it", style="dim")
    elif info.status != "running":
        text.append("\nincomplete, with no checkpoint to resume from: d deletes it", style="dim")
    return text


def _details_lines(details: dict[str, Any]) -> str:
    lines = []
    cfg = details.get("config") or {}
    if cfg:
        lora, train, data = cfg.get("lora", {}), cfg.get("train", {}), cfg.get("data", {})
        lines.append(f"LoRA r {lora.get('r')} alpha {lora.get('alpha')} · lr {train.get('learning_rate')} · "
                     f"batch {train.get('batch_size')}x{train.get('grad_accum')} · template {data.get('template')} · "
                     f"quant {cfg.get('quant', {}).get('mode')}")
    run = []
    data_counts = details.get("data") or {}
    if data_counts.get("train_rows"):
        run.append(f"{data_counts['train_rows']} train / {data_counts.get('eval_rows', 0)} eval rows")
    if details.get("duration_s"):
        run.append(f"{details['duration_s'] / 60:.0f} min")
    if details.get("energy_wh"):
        run.append(f"{details['energy_wh']:.1f} Wh")
    if details.get("device"):
        run.append(str(details["device"]))
    if details.get("checkpoints"):
        run.append("checkpoints at step " + ", ".join(map(str, details["checkpoints"])))
    if run:
        lines.append(" · ".join(run))
    return "".join("\n" + line for line in lines)


# The scorecard figures shown in the details pane (all of them are in `humanlike-tui eval`).
SCORECARD_KEYS = ("preference_accuracy", "preference_margin", "eval_loss", "ai_disclaimer_rate",
                  "contractions_per_100_words", "mean_words")


def scorecard_lines(card: dict[str, Any]) -> str:
    """Base vs adapter, a few figures a line: 'label base → adapter'."""
    # Imported here, not at the top: the workbench's first frame loads no engine module.
    from humanlike_tui.engine.evaluate import FIGURES, format_figure

    base, adapter = card.get("base") or {}, card.get("adapter") or {}
    parts = [f"{label} {format_figure(key, base.get(key))} → {format_figure(key, adapter.get(key))}"
             for key, label, _ in FIGURES if key in SCORECARD_KEYS]
    head = f"scorecard ({card.get('rows', '?')} rows, base → adapter): "
    return "\n" + head + " · ".join(parts[:3]) + ("\n" + " · ".join(parts[3:]) if parts[3:] else "")


def library_summary(infos: list[Any]) -> str:
    incomplete = [i for i in infos if not i.complete and i.status != "running"]
    text = f"{len(infos)} run{'s' if len(infos) != 1 else ''}"
    if incomplete:
        text += (f" · {INCOMPLETE_MARK} {len(incomplete)} incomplete (no finished adapter): u resumes one from its "
                 "last checkpoint, d deletes it")
    return text


# ---- messages from the workers, posted to this screen (bubble = False: they end here, not at the app) ----

class LibraryListed(Message):
    bubble = False

    def __init__(self, infos: list[Any], error: str = "") -> None:
        super().__init__()
        self.infos = infos
        self.error = error


class DetailsRead(Message):
    bubble = False

    def __init__(self, name: str, details: dict[str, Any] | None) -> None:
        super().__init__()
        self.name = name
        self.details = details


class LibraryChanged(Message):
    """A rename, delete or export finished (or failed)."""

    bubble = False

    def __init__(self, done: str = "", error: str = "", title: str = "") -> None:
        super().__init__()
        self.done, self.error, self.title = done, error, title


class ExportProgress(NewestOnly):
    bubble = False

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ScorecardDone(Message):
    """The scorecard worker finished (card) or failed (error)."""

    bubble = False

    def __init__(self, name: str, card: dict[str, Any] | None = None, error: str = "") -> None:
        super().__init__()
        self.name, self.card, self.error = name, card, error


class AdaptersScreen(Screen):
    SUB_TITLE = "Adapters"
    COMMANDS = {ScreenBindingsProvider}
    BINDINGS = [
        Binding("o", "open_in_chat", "Chat", tooltip="Open the adapter in the Chat screen"),
        Binding("r", "rename", "Rename"),
        Binding("d", "delete", "Delete", tooltip="Delete the run with its adapter and checkpoints (asks first)"),
        Binding("x", "export", "Export merged", tooltip="Write base + adapter merged into one model folder"),
        Binding("u", "resume", "Resume", tooltip="Continue an incomplete run from its last checkpoint"),
        Binding("s", "scorecard", "Scorecard", tooltip="Score the adapter against its base (long)"),
        Binding("l", "reload", "Reload", tooltip="Read the store again"),
    ]
    DEFAULT_CSS = """
    AdaptersScreen DataTable { height: 1fr; }
    AdaptersScreen #adapters-empty { padding: 1 2; color: $text-muted; height: auto; }
    AdaptersScreen #details-box { height: 10; border: round $primary-darken-1; padding: 0 1; }
    AdaptersScreen #library-status { height: 1; padding: 0 1; color: $text-muted; }
    AdaptersScreen #library-buttons { height: auto; padding: 0 1; }
    AdaptersScreen #library-buttons Button { margin-right: 1; }
    """

    def __init__(self, state: WorkbenchState) -> None:
        super().__init__()
        self.state = state
        self.services: ChatServices | None = None
        self.infos: list[Any] = []
        self.listed = False
        self.details: dict[str, dict[str, Any]] = {}
        self.working = ""  # a rename/delete/export in progress

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="adapters-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="adapters-empty")
        with VerticalScroll(id="details-box"):
            yield Static("", id="details")
        yield Static("", id="library-status")
        with Horizontal(id="library-buttons"):
            yield Button("Open in Chat", id="open", variant="primary")
            yield Button("Rename", id="rename")
            yield Button("Delete", id="delete", variant="error")
            yield Button("Export merged", id="export")
            yield Button("Resume", id="resume", variant="warning")
            yield Button("Reload", id="reload")
        yield Footer()

    def on_mount(self) -> None:
        self.services = chat_services(self.app)
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        self.reload()

    def on_screen_resume(self) -> None:
        if self.services is not None:
            self.reload()

    # ---- reading the store ----

    def reload(self) -> None:
        self._list()

    @work(thread=True, exclusive=True, group="library-list", exit_on_error=False, name="library-list")
    def _list(self) -> None:
        try:
            self.post_message(LibraryListed(self.services.list_adapters()))
        except Exception as exc:
            self.post_message(LibraryListed([], error_text(exc)))

    def on_library_listed(self, message: LibraryListed) -> None:
        if message.error:
            self.notify(message.error, title="cannot read the store", severity="error", timeout=10)
        keep = self.selected.name if self.selected else None
        self.infos, self.listed = message.infos, True
        table = self.query_one(DataTable)
        table.clear()
        for info in self.infos:
            table.add_row(*row_cells(info), key=info.name)
        names = [i.name for i in self.infos]
        if keep in names:
            table.move_cursor(row=names.index(keep))
        self.refresh_view()

    @property
    def selected(self) -> Any | None:
        table = self.query_one(DataTable)
        if not self.infos or table.row_count == 0:
            return None
        row = min(max(table.cursor_row, 0), len(self.infos) - 1)
        return self.infos[row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        info = self.selected
        if info is not None and info.name not in self.details:
            self._read_details(info.name)
        self.refresh_view()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.run_worker(self.action_open_in_chat(), exclusive=True, group="open-in-chat")

    @work(thread=True, exclusive=True, group="library-details", exit_on_error=False, name="library-details")
    def _read_details(self, name: str) -> None:
        try:
            details = self.services.run_details(name)
        except Exception:  # details are extra: the row itself is already shown
            details = None
        if details is not None:
            try:  # the last saved scorecard, if any (a small JSON file, no model load)
                card = self.services.last_scorecard(name)
            except Exception:
                card = None
            if card:
                details = {**details, "scorecard": card}
        self.post_message(DetailsRead(name, details))

    def on_details_read(self, message: DetailsRead) -> None:
        if message.details is not None:
            self.details[message.name] = message.details
        self.refresh_view()

    # ---- actions ----

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        info = self.selected
        free = not self.working
        rules = {
            "open_in_chat": info is not None and info.can_chat,
            "rename": free and info is not None and info.status != "running",
            "delete": free and info is not None and info.status != "running",
            "export": free and info is not None and info.can_chat,
            "resume": info is not None and info.can_resume,
            "scorecard": free and info is not None and info.can_chat,
        }
        if action in rules:
            return True if rules[action] else None
        return True

    def _allowed(self, action: str) -> bool:
        return bool(self.check_action(action, ()))

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        await self.run_action(BUTTONS[event.button.id or ""])

    async def action_open_in_chat(self) -> None:
        info = self.selected
        if info is None or not self._allowed("open_in_chat"):
            return
        await self.app.switch_mode("chat")
        chat = self.app.screen
        if isinstance(chat, ChatScreen):
            chat.request_adapter(info.name)

    def action_rename(self) -> None:
        info = self.selected
        if info is None or not self._allowed("rename"):
            return

        def check(text: str) -> str:
            if text == info.name:
                return "that is its name now; type a new one"
            try:
                self.services.check_name(text)
            except Exception as exc:
                return error_text(exc)
            return "" if text not in [i.name for i in self.infos] else f"a run named {text!r} already exists"

        self.app.push_screen(TextPromptDialog(f"Rename {info.name}", "New name (letters, digits, '.', '_', '-'):",
                                              info.name, ok="Rename", check=check),
                             lambda new: self._change("rename", info.name, new) if new else None)

    def action_delete(self) -> None:
        info = self.selected
        if info is None or not self._allowed("delete"):
            return
        question = (f"Delete run {info.name} ({info.state}, {human_bytes(info.size_bytes)})? Its adapter, "
                    "checkpoints and logs are removed from disk; this cannot be undone.")
        self.app.push_screen(ConfirmDialog("Delete this run?", question, yes="Delete", no="Keep"),
                             lambda yes: self._change("delete", info.name) if yes else None)

    def action_export(self) -> None:
        info = self.selected
        if info is None or not self._allowed("export"):
            return
        folder = self.services.exports_dir() / f"{info.name}-merged"
        self.app.push_screen(ExportDialog(info.name, str(folder)),
                             lambda answer: self._change("export", info.name, *answer) if answer else None)

    async def action_resume(self) -> None:
        info = self.selected
        if info is None or not self._allowed("resume"):
            return
        details = self.details.get(info.name)
        if details is None:  # its config comes with the details: read them, then press again
            self._read_details(info.name)
            self.notify("Reading the run's config; press u again in a moment.", timeout=4)
            return
        resume = getattr(self.app, "resume_run", None)
        if resume is None:  # an app without the hook: the shell's own picker
            await self.app.run_action("resume_earlier")
            return
        resume(info.name, details.get("config"))

    def action_scorecard(self) -> None:
        info = self.selected
        if info is None or not self._allowed("scorecard"):
            return
        share = getattr(self.app, "confirm_gpu_share", None)  # a training run may hold the GPU
        if share is None:
            self._begin_scorecard(info.name)
        else:
            share(f"The scorecard of {info.name}", lambda: self._begin_scorecard(info.name))

    def _begin_scorecard(self, name: str) -> None:
        if self.working:  # something else started while the dialog was up
            self.notify(f"Busy with {self.working}; try the scorecard again when it is done.", severity="warning")
            return
        self.working = f"scorecard {name}"
        self._score(name, self.chat_generator(name))  # read here, on the UI thread
        self.refresh_view()

    @work(thread=True, group="library-change", exit_on_error=False, name="library-scorecard")
    def _score(self, name: str, loaded: Any = None) -> None:
        def log(text: str) -> None:
            self.post_message(ExportProgress(text))

        try:
            card = (self.services.scorecard(name, log, loaded) if loaded is not None
                    else self.services.scorecard(name, log))
            self.post_message(ScorecardDone(name, card))
        except Exception as exc:
            self.post_message(ScorecardDone(name, error=error_text(exc)))

    def chat_generator(self, name: str) -> Any:
        """The Chat screen's generator if it has `name` loaded: the scorecard borrows its model."""
        chat = getattr(self.app, "mode_screen", lambda mode: None)("chat")
        if chat is None or getattr(chat, "loaded_name", None) != name:
            return None
        return getattr(chat, "generator", None)

    def on_scorecard_done(self, message: ScorecardDone) -> None:
        self.working = ""
        if message.error:
            self.notify(message.error, title="scorecard failed", severity="error", timeout=15)
        else:
            details = self.details.get(message.name)
            if details is not None:
                self.details[message.name] = {**details, "scorecard": message.card}
            else:
                self.details[message.name] = {"scorecard": message.card}
            self.notify(f"Scorecard of {message.name} done", timeout=8)
        self.refresh_view()

    def action_reload(self) -> None:
        self.reload()

    def _change(self, what: str, name: str, *args: str) -> None:
        self.working = f"{what} {name}"
        self._apply(what, name, *args)
        self.refresh_view()

    @work(thread=True, group="library-change", exit_on_error=False, name="library-change")
    def _apply(self, what: str, name: str, *args: str) -> None:
        try:
            if what == "rename":
                self.services.rename(name, args[0])
                done = f"Renamed {name} to {args[0]}"
            elif what == "delete":
                self.services.delete(name)
                done = f"Deleted {name}"
            else:
                folder = self.services.export(name, Path(args[0]).expanduser(), args[1],
                                              lambda text: self.post_message(ExportProgress(text)))
                done = f"Exported {name} (merged) to {folder}"
            self.post_message(LibraryChanged(done))
        except Exception as exc:
            self.post_message(LibraryChanged(error=error_text(exc), title=f"{what} failed"))

    def on_export_progress(self, message: ExportProgress) -> None:
        self.working = message.text
        self.refresh_view()

    def on_library_changed(self, message: LibraryChanged) -> None:
        self.working = ""
        if message.error:
            self.notify(message.error, title=message.title, severity="error", timeout=15)
        else:
            self.notify(message.done, timeout=8)
        self.details.clear()
        self.reload()

    # ---- drawing ----

    def refresh_view(self) -> None:
        table = self.query_one(DataTable)
        empty = self.query_one("#adapters-empty", Static)
        has_rows = bool(self.infos)
        table.display = has_rows
        empty.display = not has_rows
        if not has_rows:
            empty.update("reading the store …" if not self.listed else
                         "No runs yet. Start one from the Config screen (F2); it appears here when it begins.")
        info = self.selected
        self.query_one("#details", Static).update(details_text(info, self.details.get(info.name)) if info else "")
        self.query_one("#library-status", Static).update(f"working: {self.working} …" if self.working else
                                                          library_summary(self.infos))
        for button_id, action in BUTTONS.items():
            self.query_one(f"#{button_id}", Button).disabled = not self._allowed(action)
        self.refresh_bindings()
