"""Adapters: every run in the store, finished or not, with its base model, data, steps, final eval
loss, date and size; details of the highlighted one; rename, delete (asks first), export a merged
model, open in Chat, and resume an incomplete run. The store is read in thread workers that talk
back through post_message; the list is read again whenever the screen is shown."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Header, Static

from humanlike_tui.errors import RemoteCodeRefused
from humanlike_tui.formatting import error_text
from humanlike_tui.protocols import Generator, LossHistory, Services
from humanlike_tui.records import AdapterInfo
from humanlike_tui.ui.library_text import (details_text, library_summary, row_cells, run_size, scorecard_table,
                                           table_layout)
from humanlike_tui.ui.messages import (GpuWanted, NewestOnly, OpenInChat, RemoteCodeWanted, ResumeRun, RunDeleted,
                                       RunRenamed)
from humanlike_tui.ui.palette import ScreenCommands
from humanlike_tui.ui.screens.chat_dialogs import ExportDialog, TextPromptDialog
from humanlike_tui.ui.screens.dialogs import ConfirmDialog
from humanlike_tui.ui.exit_guard import saving
from humanlike_tui.ui.state import WorkbenchState
from humanlike_tui.ui.widgets.charts import CompareChart
from humanlike_tui.ui.widgets.picks_panel import PicksPanel
from humanlike_tui.ui.widgets.footer import NAVIGATION, WorkbenchFooter

# Which button runs which action; the same check_action rules grey out both.
BUTTONS = {"open": "open_in_chat", "rename": "rename", "delete": "delete", "export": "export",
           "resume": "resume", "reload": "reload", "show-answers": "answers"}


# ---- messages from the workers, posted to this screen (bubble = False: they end here, not at the app) ----

@dataclass
class LibraryListed(Message):
    bubble = False
    infos: list[AdapterInfo]
    error: str = ""
    read: int = 0  # which read of the store (only the newest is drawn)


@dataclass
class DetailsRead(Message):
    bubble = False
    name: str
    details: dict[str, Any] | None


@dataclass
class LibraryChanged(Message):
    """A rename, delete or export finished (or failed)."""

    bubble = False
    done: str = ""
    error: str = ""
    title: str = ""
    select: str = ""  # the run to highlight in the new list (a renamed run keeps the cursor)
    renamed: tuple[str, str] | None = None  # (old, new) after a rename
    deleted: str = ""  # the run deleted


@dataclass
class CurvesRead(Message):
    """The loss histories of the runs to compare, by name."""

    bubble = False
    curves: dict[str, LossHistory]


@dataclass
class ExportProgress(NewestOnly):
    bubble = False
    text: str


@dataclass
class AnswersRead(Message):
    """The answers of a run's last scorecard, read from its answers file (None: none kept)."""

    bubble = False
    name: str
    records: list[dict[str, Any]] | None
    error: str = ""


@dataclass
class ScorecardDone(Message):
    """The scorecard worker finished (card) or failed (error)."""

    bubble = False
    name: str
    card: dict[str, Any] | None = None
    error: str = ""
    ask_remote_code: str = ""  # the model whose own code the person must allow first


class AdaptersScreen(Screen):
    SUB_TITLE = "Adapters"
    FOOTER_KEYS = ("open_in_chat", "rename", "export", NAVIGATION, "delete", "mark", "compare", "resume", "scorecard")
    COMMANDS = {ScreenCommands}
    BINDINGS = [
        Binding("o", "open_in_chat", "Chat", tooltip="Open the adapter in the Chat screen"),
        Binding("r", "rename", "Rename"),
        Binding("d", "delete", "Delete", tooltip="Delete the run with its adapter and checkpoints (asks first)"),
        Binding("x", "export", "Export merged", tooltip="Write base + adapter merged into one model folder"),
        Binding("u", "resume", "Resume", tooltip="Continue an incomplete run from its last checkpoint"),
        Binding("s", "scorecard", "Scorecard", tooltip="Score the adapter against its base (long)"),
        Binding("a", "answers", "Answers", tooltip="Every answer of the last scorecard, base and adapter"),
        Binding("l", "reload", "Reload", tooltip="Read the store again"),
        Binding("space", "mark", "Mark", tooltip="Mark or unmark the run to compare its loss curve with others"),
        Binding("c", "compare", "Compare", tooltip="The loss curves of the marked runs, overlaid (c again: details)"),
    ]
    DEFAULT_CSS = """
    AdaptersScreen DataTable { height: 5; }
    AdaptersScreen #adapters-empty { padding: 1 2; color: $text-muted; height: auto; }
    AdaptersScreen #details-box { height: 1fr; min-height: 5; border: round $primary-darken-1; padding: 0 1; }
    AdaptersScreen #scorecard { margin-top: 1; }
    AdaptersScreen #show-answers { margin-top: 1; min-width: 0; width: auto; }
    AdaptersScreen #compare-chart { display: none; height: 1fr; }
    AdaptersScreen.-comparing #compare-chart { display: block; }
    AdaptersScreen.-comparing #details-box { display: none; }
    AdaptersScreen #library-status { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    AdaptersScreen #library-buttons { height: auto; padding: 0 1; }
    AdaptersScreen #library-buttons Button { margin-right: 1; min-width: 0; width: auto; }
    """

    def __init__(self, state: WorkbenchState, services: Services) -> None:
        super().__init__()
        self.state = state
        self.services = services
        self.infos: list[AdapterInfo] = []
        self.listed = False
        self.details: dict[str, dict[str, Any]] = {}
        self.working = ""  # a rename/delete/export in progress
        self._select = ""  # highlight this run when the list arrives
        self._reads = 0  # reads of the store started; only the newest one's answer is drawn
        self._layout: list[tuple[str, int]] = []  # the table's columns as drawn (they follow the width)
        self.marked: list[str] = []  # runs chosen to compare (space), in the order chosen
        self.compared: dict[str, LossHistory] = {}  # the curves drawn in the compare chart

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="adapters-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="adapters-empty")
        with VerticalScroll(id="details-box"):
            yield Static("", id="details")
            yield Static("", id="scorecard")
            yield Button("All answers of this scorecard (a)", id="show-answers", compact=True)
        yield CompareChart(id="compare-chart")
        yield PicksPanel(self.services.picks, id="picks-panel")  # the Chat picks per collection (issue 23)
        yield Static("", id="library-status")
        with Horizontal(id="library-buttons"):
            yield Button("Open in Chat", id="open", variant="primary", compact=True)
            yield Button("Rename", id="rename", compact=True)
            yield Button("Delete", id="delete", variant="error", compact=True)
            yield Button("Export merged", id="export", compact=True)
            yield Button("Resume", id="resume", variant="warning", compact=True)
            yield Button("Reload", id="reload", compact=True)
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        self.reload()

    def on_resize(self) -> None:
        if self.listed and table_layout(self.infos, self._table_width()) != self._layout:
            self._fill_table()
        elif self.listed:
            self._size_table()

    def _size_table(self) -> None:
        """As tall as its rows (and the header), up to 45% of the screen: the details get the rest."""
        rows = self.query_one(DataTable).row_count
        self.query_one(DataTable).styles.height = max(2, min(rows + 1, (self.size.height or 24) * 45 // 100))

    def _table_width(self) -> int:
        return self.query_one(DataTable).size.width or self.size.width or self.app.size.width

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.reload()

    # ---- reading the store ----

    def reload(self) -> None:
        self._reads += 1
        self._list(self._reads)
        self.query_one(PicksPanel).reload()

    @work(thread=True, exclusive=True, group="library-list", exit_on_error=False, name="library-list")
    def _list(self, read: int) -> None:
        try:
            self.post_message(LibraryListed(self.services.library.adapters(), read=read))
        except Exception as exc:
            self.post_message(LibraryListed([], error_text(exc), read=read))

    def on_library_listed(self, message: LibraryListed) -> None:
        # A read started before a rename can come back after the rename's own read (the rename dialog
        # closing shows this screen again, which reads the store while the rename is under way): drawn, it
        # put the old name back (Export then said 'no run named ...') and dropped the mark. Only the newest.
        if message.read != self._reads:
            return
        if message.error:
            self.notify(message.error, title="cannot read the store", severity="error", timeout=10)
        keep = self._select or (self.selected.name if self.selected else None)
        self._select = ""
        self.infos, self.listed = message.infos, True
        self._fill_table(keep)
        self.refresh_view()

    def _fill_table(self, keep: str | None = None) -> None:
        """The rows again, in columns laid out for the table's width (the name takes what is spare)."""
        table = self.query_one(DataTable)
        if keep is None and self.selected is not None:
            keep = self.selected.name
        self._layout = table_layout(self.infos, self._table_width())
        table.clear(columns=True)
        for title, width in self._layout:
            table.add_column(title, width=width, key=title)
        self.marked = [name for name in self.marked if name in {i.name for i in self.infos}]
        for info in self.infos:
            table.add_row(*row_cells(info, self._layout, marked=info.name in self.marked), key=info.name)
        self._size_table()
        names = [i.name for i in self.infos]
        if keep in names:
            table.move_cursor(row=names.index(keep))

    @property
    def selected(self) -> AdapterInfo | None:
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
        self.action_open_in_chat()

    @work(thread=True, exclusive=True, group="library-details", exit_on_error=False, name="library-details")
    def _read_details(self, name: str) -> None:
        try:
            details = self.services.library.details(name)
        except Exception:  # details are extra: the row itself is already shown
            details = None
        if details is not None:
            try:  # the last saved scorecard, if any (a small JSON file, no model load)
                card = self.services.scorecard.last(name)
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
        if action == "answers":  # hidden, not greyed, until a scorecard kept its answers
            return True if self._card_answers() else False
        if action in rules:
            return True if rules[action] else None
        return True

    def _allowed(self, action: str) -> bool:
        return bool(self.check_action(action, ()))

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        await self.run_action(BUTTONS[event.button.id or ""])

    def action_open_in_chat(self) -> None:
        info = self.selected
        if info is not None and self._allowed("open_in_chat"):
            self.post_message(OpenInChat(info.name))  # the app shows the Chat screen with it

    def action_rename(self) -> None:
        info = self.selected
        if info is None or not self._allowed("rename"):
            return

        def check(text: str) -> str:
            if text == info.name:
                return "that is its name now; type a new one"
            try:
                self.services.library.check_name(text)
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
        question = (f"Delete run {info.name} ({info.state}, {run_size(info.size_bytes)})? Its adapter, "
                    "checkpoints and logs are removed from disk; this cannot be undone.")
        if self.state.chat.name == info.name:
            question += ("\n\nThe Chat screen has this adapter loaded: it is closed there, and its local server "
                         "(ctrl+g) stops if it runs.")
        self.app.push_screen(ConfirmDialog("Delete this run?", question, yes="Delete", no="Keep"),
                             lambda yes: self._change("delete", info.name) if yes else None)

    def action_export(self) -> None:
        info = self.selected
        if info is None or not self._allowed("export"):
            return
        folder = self.services.exports_dir() / f"{info.name}-merged"
        self.app.push_screen(ExportDialog(info.name, str(folder)),
                             lambda answer: self._change("export", info.name, *answer) if answer else None)

    def action_resume(self) -> None:
        info = self.selected
        if info is None or not self._allowed("resume"):
            return
        details = self.details.get(info.name)
        if details is None:  # its config comes with the details: read them, then press again
            self._read_details(info.name)
            self.notify("Reading the run's config; press u again in a moment.", timeout=4)
            return
        self.post_message(ResumeRun(info.name, details.get("config")))

    def action_scorecard(self) -> None:
        info = self.selected
        if info is None or not self._allowed("scorecard"):
            return
        # A training run may hold the GPU: the app asks first if it does.
        self.post_message(GpuWanted(f"The scorecard of {info.name}", lambda: self._begin_scorecard(info.name)))

    def _begin_scorecard(self, name: str) -> None:
        if self.working:  # something else started while the dialog was up
            self.notify(f"Busy with {self.working}; try the scorecard again when it is done.", severity="warning")
            return
        self.working = f"scorecard {name}"
        self._score(name, self.state.chat.holding(name))  # read here, on the UI thread
        self.refresh_view()

    @work(thread=True, group="library-change", exit_on_error=False, name="library-scorecard")
    def _score(self, name: str, loaded: Generator | None = None) -> None:
        def log(text: str) -> None:
            self.post_message(ExportProgress(text))

        try:
            self.post_message(ScorecardDone(name, self.services.scorecard.score(name, log, loaded)))
        except Exception as exc:
            asked = exc.model_name if isinstance(exc, RemoteCodeRefused) else ""
            self.post_message(ScorecardDone(name, error=error_text(exc), ask_remote_code=asked))

    def on_scorecard_done(self, message: ScorecardDone) -> None:
        self.working = ""
        if message.ask_remote_code:  # the app asks the person; a yes starts the scorecard again
            self.post_message(RemoteCodeWanted(message.ask_remote_code, partial(self._begin_scorecard, message.name)))
        elif message.error:
            self.notify(message.error, title="scorecard failed", severity="error", timeout=15)
        else:
            details = self.details.get(message.name)
            if details is not None:
                self.details[message.name] = {**details, "scorecard": message.card}
            else:
                self.details[message.name] = {"scorecard": message.card}
            self.notify(f"Scorecard of {message.name} done", timeout=8)
        self.refresh_view()

    def _card_answers(self) -> str:
        """The highlighted run's last scorecard's answers file ('' when it kept none)."""
        info = self.selected
        card = (self.details.get(info.name) or {}).get("scorecard") if info else None
        return str((card or {}).get("answers_file") or "")

    def action_answers(self) -> None:
        info = self.selected
        if info is not None and self._card_answers():
            self._read_answers(info.name)

    @work(thread=True, exclusive=True, group="library-answers", exit_on_error=False, name="library-answers")
    def _read_answers(self, name: str) -> None:
        try:
            self.post_message(AnswersRead(name, self.services.scorecard.answers(name)))
        except Exception as exc:
            self.post_message(AnswersRead(name, None, error_text(exc)))

    def on_answers_read(self, message: AnswersRead) -> None:
        from humanlike_tui.records import scorecard_caption
        from humanlike_tui.ui.screens.answer_dialogs import AnswersScreen

        if message.error or not message.records:
            self.notify(message.error or f"No answers were kept with {message.name}'s last scorecard; press s to "
                        "score it again.", title="answers", severity="warning", timeout=8)
            return
        card = (self.details.get(message.name) or {}).get("scorecard") or {}
        self.app.push_screen(AnswersScreen(message.name, message.records, scorecard_caption(card).split("\n")[0]))

    def action_reload(self) -> None:
        self.reload()

    # ---- comparing runs ----

    def action_mark(self) -> None:
        info = self.selected
        if info is None:
            return
        if info.name in self.marked:
            self.marked.remove(info.name)
        else:
            self.marked.append(info.name)
        table = self.query_one(DataTable)
        table.update_cell(info.name, "Name", row_cells(info, self._layout, marked=info.name in self.marked)[0])
        self.refresh_view()

    def action_compare(self) -> None:
        if self.has_class("-comparing"):
            self.remove_class("-comparing")
            return
        names = list(self.marked)
        if self.selected is not None and len(names) == 1 and self.selected.name not in names:
            names.append(self.selected.name)  # one marked and another highlighted: those two
        if len(names) < 2:
            self.notify("Mark two or more runs with space, then press c to overlay their loss curves.",
                        severity="warning", timeout=6)
            return
        self._read_curves(names)

    @work(thread=True, exclusive=True, group="library-curves", exit_on_error=False, name="library-curves")
    def _read_curves(self, names: list[str]) -> None:
        curves: dict[str, LossHistory] = {}
        for name in names:
            try:
                curves[name] = self.services.library.history(name)
            except Exception:  # a run whose metrics cannot be read is left out of the chart
                continue
        self.post_message(CurvesRead(curves))

    def on_curves_read(self, message: CurvesRead) -> None:
        self.compared = message.curves
        self.query_one(CompareChart).show(message.curves)
        self.add_class("-comparing")

    def _change(self, what: str, name: str, *args: str) -> None:
        self.working = f"{what} {name}"
        self._apply(what, name, *args)
        self.refresh_view()

    @work(thread=True, group="library-change", exit_on_error=False, name="library-change")
    def _apply(self, what: str, name: str, *args: str) -> None:
        with saving(f"{what} {name}"):  # quitting waits for it: an export or rename is never cut off
            self._apply_change(what, name, *args)

    def _apply_change(self, what: str, name: str, *args: str) -> None:
        try:
            if what == "rename":
                self.services.library.rename(name, args[0])
                changed = LibraryChanged(f"Renamed {name} to {args[0]}", select=args[0], renamed=(name, args[0]))
            elif what == "delete":
                self.services.library.delete(name)
                changed = LibraryChanged(f"Deleted {name}", deleted=name)
            else:
                folder = self.services.library.export(name, Path(args[0]).expanduser(), args[1],
                                                      lambda text: self.post_message(ExportProgress(text)),
                                                      *args[2:])  # format, GGUF weights, merged into which base
                changed = LibraryChanged(f"Exported {name} (merged) to {folder}", select=name)
            self.post_message(changed)
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
        if message.renamed is not None:
            old, new = message.renamed  # a marked run stays marked under its new name
            self.marked = [new if name == old else name for name in self.marked]
            self.infos = [replace(i, name=new) if i.name == old else i for i in self.infos]
            self.post_message(RunRenamed(old, new))  # the app tells the Chat and Train screens
        if message.deleted:
            self.infos = [i for i in self.infos if i.name != message.deleted]
            self.post_message(RunDeleted(message.deleted))  # the app closes it in the Chat
        self._select = message.select
        self.details.clear()
        if message.renamed is not None or message.deleted:
            self._fill_table(message.select or None)  # at once: no key may act on the old name meanwhile
            self.refresh_view()
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
        details = self.details.get(info.name) if info else None
        self.query_one("#details", Static).update(details_text(info, details) if info else "")
        card = (details or {}).get("scorecard")
        scorecard = self.query_one("#scorecard", Static)
        scorecard.update(scorecard_table(card) if card else "")
        scorecard.display = bool(card)
        self.query_one("#show-answers", Button).display = bool((card or {}).get("answers_file"))
        self.query_one("#library-status", Static).update(f"working: {self.working} …" if self.working else
                                                          library_summary(self.infos))
        for button_id, action in BUTTONS.items():
            self.query_one(f"#{button_id}", Button).disabled = not self._allowed(action)
        self.refresh_bindings()
