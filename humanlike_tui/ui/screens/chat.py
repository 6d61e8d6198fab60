"""Chat: the base model and an adapter answer the same prompt side by side, streamed as written.

One base model is loaded (the engine answers as the base with the adapter disabled). The work runs
in thread workers owned by this screen, which talk back only through post_message: streamed text
arrives as one ChatStream message per piece (never merged, so no token is lost) and is drawn in
batches about every 50 ms, so a fast model cannot flood the terminal. Generation settings start
from the workbench config's [generate] section. The session's turns are the conversation history
(each side continues its own answers) and what a saved transcript holds.
"""

from __future__ import annotations

import threading
from functools import partial
from dataclasses import replace
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Header, Input, Label, Select, Static

from humanlike_tui import events
from humanlike_tui.config import DEFAULT_PICKS, MAX_SEED, picks_name_problem
from humanlike_tui.errors import RemoteCodeRefused
from humanlike_tui.events import SIDES
from humanlike_tui.formatting import error_text
from humanlike_tui.protocols import Generator, ServerHandle, Services
from humanlike_tui.records import BASE_PREFIX, CHAT_BASE_MODELS, AdapterInfo, GenSettings, Turn
from humanlike_tui.ui import chat_picks
from humanlike_tui.ui.chat_messages import (AdaptersListed, ChatStream, ExchangeEnded, GeneratorLog, GeneratorOpened,
                                            ServerChanged, loaded_text, transcript_path_problem)
from humanlike_tui.ui.chat_transcript import ChatTurn, SideAnswer, default_transcript_path, write_transcript
from humanlike_tui.ui.chat_messages import PickSaved
from humanlike_tui.ui.exit_guard import saving
from humanlike_tui.ui.messages import GpuWanted, RemoteCodeWanted
from humanlike_tui.ui.palette import ScreenCommands
from humanlike_tui.ui.screens.chat_dialogs import TextPromptDialog
from humanlike_tui.ui.screens.pick_dialogs import EditAnswerDialog
from humanlike_tui.ui.state import WorkbenchState
from humanlike_tui.ui.widgets.chat_pane import ChatPane
from humanlike_tui.ui.widgets.chat_settings import GenSettingsForm
from humanlike_tui.ui.widgets.footer import NAVIGATION, WorkbenchFooter
from humanlike_tui.ui.widgets.key_select import KeySelect

FLUSH_S = 0.05  # streamed text is drawn at most 20 times a second
FINISH_NOTES = {"end": "", "length": " · max new tokens reached", "stopped": " · stopped"}


PICK_ACTIONS = ("prefer_left", "prefer_right", "again_left", "again_right", "edit_answer")


class ChatScreen(Screen):
    SUB_TITLE = "Chat"
    FOOTER_KEYS = ("choose_adapter", "stop_generation", "prefer_left", "prefer_right", "toggle_settings", NAVIGATION,
                   "edit_answer", "again_left", "again_right", "new_conversation", "toggle_server")
    COMMANDS = {ScreenCommands}
    BINDINGS = [
        Binding("escape", "stop_generation", "Stop", tooltip="Stop the answer being written"),
        Binding("ctrl+s", "save_transcript", "Save transcript", tooltip="Write the conversation as Markdown"),
        Binding("ctrl+n", "new_conversation", "New chat", tooltip="Clear the conversation and its history"),
        Binding("ctrl+o", "choose_adapter", "Adapter", tooltip="Choose the adapter to chat with"),
        Binding("ctrl+l", "reload_adapters", "Reload list", tooltip="Read the adapters in the store again"),
        Binding("ctrl+t", "toggle_settings", "Settings",
                tooltip="Show or hide the generation settings (hidden at first on a narrow terminal)"),
        # Picks (chat_picks.py): shown once both answers are in; each saves one preference row at once.
        Binding("ctrl+b", "prefer_left", "Left better", tooltip="Save a pick: the left (base) answer is better"),
        Binding("ctrl+f", "prefer_right", "Right better", tooltip="Save a pick: the right (adapter) answer is better"),
        Binding("f6", "again_left", "Left again", tooltip="Ask the base model for another answer (the next seed)"),
        Binding("f7", "again_right", "Right again", tooltip="Ask the adapter for another answer (the next seed)"),
        Binding("ctrl+y", "edit_answer", "Edit answer",
                tooltip="Edit an answer into the one you wanted: saved as chosen, the model's as rejected"),
        Binding("ctrl+g", "toggle_server", "Serve",
                tooltip="Start or stop a local OpenAI-compatible server for the loaded adapter (127.0.0.1)"),
        Binding("f8", "edit_persona", "Persona",
                tooltip="The system prompt both models get (at first the run's data.system_prompt)"),
    ]
    DEFAULT_CSS = """
    ChatScreen #chat-top { height: 1; padding: 0 1; }
    ChatScreen #adapter-label { padding: 0 1 0 0; }
    ChatScreen #adapter-select { width: 1fr; max-width: 80; }
    ChatScreen #chat-status { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    ChatScreen.-narrow #gen-settings { display: none; }
    ChatScreen.-settings-flipped #gen-settings { display: block; }
    ChatScreen.-wide.-settings-flipped #gen-settings { display: none; }
    ChatScreen #chat-body { height: 1fr; }
    ChatScreen #chat-input { height: 3; padding: 0 1; }
    ChatScreen #prompt { width: 1fr; }
    ChatScreen #chat-input Button { margin-left: 1; min-width: 10; }
    """

    def __init__(self, state: WorkbenchState, services: Services) -> None:
        super().__init__()
        self.state = state
        self.services = services
        self.adapters: list[AdapterInfo] | None = None  # finished adapters; None until listed
        self.loaded_info = ""
        self.opening: str | None = None
        self.load_log = ""
        self.load_error = ""
        self.turns: list[ChatTurn] = []
        self.history_start = 0  # turns before this were with another adapter: not this one's history
        self.busy = False
        self.stop_event = threading.Event()
        self._wanted: str | None = None  # open this adapter once the list is read
        self._queued: str | None = None  # open this one when the current load ends
        self._pending: dict[str, list[str]] = {side: [] for side in SIDES}
        self._flush_timer: Timer | None = None
        self.server: ServerHandle | None = None  # the local OpenAI-compatible server over the loaded model
        self._loaded_facts: tuple[dict, dict] = ({}, {})  # describe() and memory() of the loaded model
        self.picks_collection = DEFAULT_PICKS
        self._seeds: dict[str, int] = {}  # the seed of each side's current answer to the last prompt
        self._picked: set[tuple[str, str, str]] = set()  # picks saved for the last prompt (no duplicates)
        self._pick_system = ""
        self.persona = ""  # the system prompt both sides get: the loaded run's data.system_prompt, editable (F8)
        self._personas: dict[int, str] = {}  # id(turn) -> the persona it was asked with

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-top"):
            yield Label("Adapter", id="adapter-label")
            yield KeySelect([], prompt="choose a finished adapter", id="adapter-select", compact=True)
        yield Static("", id="chat-status")
        with Horizontal(id="chat-body"):
            yield ChatPane("Base model (adapter off)", id="pane-base")
            yield ChatPane("Adapter", id="pane-adapter")
            yield GenSettingsForm(self.state.config, id="gen-settings")
        with Horizontal(id="chat-input"):
            yield Input(placeholder="Type a message and press Enter: both models answer it", id="prompt")
            yield Button("Send", id="send", variant="primary")
            yield Button("Stop", id="stop", variant="error")
        yield WorkbenchFooter()

    def pane(self, side: str) -> ChatPane:
        return self.query_one(f"#pane-{side}", ChatPane)

    @property
    def generator(self) -> Generator | None:
        """The loaded model (kept in the shared state: the scorecard borrows it)."""
        return self.state.chat.generator

    @property
    def loaded_name(self) -> str | None:
        return self.state.chat.name

    # ---- lifecycle ----

    def on_mount(self) -> None:
        self._list_adapters()
        self.query_one("#prompt", Input).focus()
        self.refresh_view()

    def on_screen_resume(self) -> None:
        if self.is_mounted:  # runs may have been trained, renamed or deleted meanwhile
            self._list_adapters()

    def on_unmount(self) -> None:
        self.stop_event.set()  # a thread cannot be killed: tell the generation to end
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ---- the adapter list and loading ----

    @work(thread=True, exclusive=True, group="chat-list", exit_on_error=False, name="chat-list")
    def _list_adapters(self) -> None:
        try:
            self.post_message(AdaptersListed(self.services.library.adapters()))
        except Exception as exc:  # the list is informative; a broken store must not stop the screen
            self.post_message(AdaptersListed([], error_text(exc)))

    def on_adapters_listed(self, message: AdaptersListed) -> None:
        if message.error:
            self.notify(message.error, title="cannot list the adapters", severity="error", timeout=10)
        self.adapters = [info for info in message.infos if getattr(info, "can_chat", False)]
        with self.prevent(Select.Changed):
            self._set_options()
        wanted, self._wanted = self._wanted, None
        if wanted:
            self.open_adapter(wanted)
        self.refresh_view()

    def request_adapter(self, name: str) -> None:
        """Open `name` as soon as possible (the Adapters screen's 'Open in Chat'): after a fresh read
        of the list, so a run trained a moment ago is there."""
        self._wanted = name
        if self.is_mounted:  # else on_mount reads the list
            self._list_adapters()

    def adapter_renamed(self, old: str, new: str) -> None:
        """The run was renamed in the store: the loaded model is the same, under its new name."""
        if self.state.chat.name == old:
            self.state.chat.name = new
            self.loaded_info = loaded_text(new, *self._loaded_facts)
            if self.is_mounted:
                self.pane("adapter").set_title(f"Adapter {new}")
        self.opening = new if self.opening == old else self.opening
        self._wanted = new if self._wanted == old else self._wanted
        self._queued = new if self._queued == old else self._queued
        if self.adapters is not None:  # the selector offers (and shows) the new name
            self.adapters = [replace(a, name=new) if a.name == old else a for a in self.adapters]
        if self.is_mounted:
            with self.prevent(Select.Changed):
                self._set_options()
            self.refresh_view()
            self._list_adapters()  # and the store's own list, when it comes

    def adapter_deleted(self, name: str) -> None:
        """The run was deleted from the store: its model must not go on answering, nor be served."""
        self._wanted = None if self._wanted == name else self._wanted
        self._queued = None if self._queued == name else self._queued
        if self.adapters is not None:
            self.adapters = [a for a in self.adapters if a.name != name]
        if self.state.chat.name == name and self.generator is not None:
            served = self.server is not None
            self.stop_event.set()  # an answer being written ends (close waits for it)
            self._stop_server()
            old, self.state.chat.name, self.state.chat.generator = self.generator, None, None
            self.loaded_info = ""
            self._close_model(old)
            if self.is_mounted:
                for side in SIDES:
                    self.pane(side).add_divider(f"{name} was deleted")
                self.pane("adapter").set_title("Adapter")
            self.notify(f"{name} was deleted, so the Chat closed it" + (" and stopped its server" if served else ""),
                        timeout=8)
        if self.is_mounted:
            with self.prevent(Select.Changed):
                self._set_options()
            self.refresh_view()

    @work(thread=True, group="chat-open", exit_on_error=False, name="chat-close")
    def _close_model(self, generator: Generator) -> None:
        generator.close()  # frees the base model's memory

    def open_adapter(self, name: str) -> None:
        if name in (self.loaded_name, self.opening):
            return
        if self.adapters is not None and name not in [a.name for a in self.adapters] and \
                not name.startswith(BASE_PREFIX):
            self.notify(f"{name} has no finished adapter to chat with; see the Adapters screen (F5)",
                        severity="warning")
            return
        if self.busy:
            self.notify("Still answering: press Esc to stop it, then switch adapters.", severity="warning")
            self._sync_select()
            return
        if self.opening:
            self._queued = name  # one load at a time: two bases in memory at once is what we avoid
            return
        # A training run may hold the GPU: the app asks first if it does.
        self.post_message(GpuWanted(f"Opening {name} for chat", lambda: self._begin_open(name), self._sync_select))

    def _begin_open(self, name: str) -> None:
        if name == self.loaded_name or self.busy or self.opening:  # things moved while the dialog was up
            if self.opening and name != self.opening:
                self._queued = name
            return
        old = self.generator
        self._stop_server()  # it serves the model being closed
        self.state.chat.name, self.state.chat.generator = None, None  # nobody borrows a closing model
        self.opening, self.load_error, self.load_log = name, "", ""
        self._open(name, old)
        self.refresh_view()

    @work(thread=True, group="chat-open", exit_on_error=False, name="chat-open")
    def _open(self, name: str, old: Generator | None) -> None:
        if old is not None:
            old.close()  # free the previous base first: one base model in memory, not two
        try:
            generator = self.services.generation.open(name, lambda text: self.post_message(GeneratorLog(text)))
            self.post_message(GeneratorOpened(name, generator, describe=generator.describe(),
                                              memory=generator.memory()))
        except Exception as exc:
            asked = exc.model_name if isinstance(exc, RemoteCodeRefused) else ""
            self.post_message(GeneratorOpened(name, error=error_text(exc), ask_remote_code=asked))

    def on_generator_log(self, message: GeneratorLog) -> None:
        self.load_log = message.text
        self.refresh_view()

    def on_generator_opened(self, message: GeneratorOpened) -> None:
        self.opening = None
        if message.ask_remote_code:  # the app asks the person; a yes opens it again
            self.post_message(RemoteCodeWanted(message.ask_remote_code, partial(self.open_adapter, message.name)))
        elif message.error:
            self.load_error = f"could not open {message.name}: {message.error}"
            self.notify(message.error, title=f"cannot open {message.name}", severity="error", timeout=15)
        else:
            self.state.chat.name, self.state.chat.generator = message.name, message.generator
            self._loaded_facts = (message.describe, message.memory)
            self.loaded_info = loaded_text(message.name, message.describe, message.memory)
            if self.turns:
                for side in SIDES:
                    self.pane(side).add_divider(f"now chatting with {message.name}")
            self.history_start = len(self.turns)
            self.pane("adapter").set_title("No adapter: a base model alone answers on the left" if self.base_only
                                           else f"Adapter {message.name}")
            self.persona = message.generator.config.data.system_prompt.strip()  # as the run was trained
            if self.persona:
                self._show_persona()
        with self.prevent(Select.Changed):
            self._sync_select()
        queued, self._queued = self._queued, None
        if queued and queued != self.loaded_name:
            self.open_adapter(queued)
        self.refresh_view()

    def _set_options(self) -> None:
        options = [(f"{a.name} · {a.method} · {a.base_model}", a.name) for a in self.adapters or []]
        options += [(f"base model alone · {model}", BASE_PREFIX + model) for model in self._base_models()]
        self.query_one("#adapter-select", Select).set_options(options)
        self._sync_select()

    def _base_models(self) -> list[str]:
        """The base models to talk to without an adapter: the real and the tiny builtin (offline), and the
        bases of the finished runs, so a new user can try the model before training anything."""
        models = list(dict.fromkeys([*CHAT_BASE_MODELS, *(a.base_model for a in self.adapters or [])]))
        return [m for m in models if m]

    @property
    def base_only(self) -> bool:
        """The loaded model is a base model alone: it answers in the left pane only."""
        return (self.loaded_name or "").startswith(BASE_PREFIX)

    def _sync_select(self) -> None:
        select = self.query_one("#adapter-select", Select)
        names = [a.name for a in self.adapters or []] + [BASE_PREFIX + m for m in self._base_models()]
        target = self.opening or self.loaded_name
        if target in names:
            select.value = target
        else:
            select.clear()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str):
            self.open_adapter(event.value)
            self.query_one("#prompt", Input).focus()  # chosen: what is typed next is the message

    # ---- asking ----

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "prompt":
            event.stop()
            self.action_send()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "send":
            self.action_send()
        elif event.button.id == "stop":
            self.action_stop_generation()

    def _send_problem(self, prompt: str) -> str:
        if self.busy:
            return "Still answering: press Esc to stop it first."
        if self.opening:
            return f"Still loading {self.opening}; a moment."
        if self.generator is None:
            return "Choose an adapter first (ctrl+o)." if self.adapters else \
                "No finished adapter yet: train one (F3), then choose it here."
        if not prompt:
            return "Type a message first."
        return ""

    def action_send(self) -> None:
        box = self.query_one("#prompt", Input)
        prompt = box.value.strip()
        problem = self._send_problem(prompt)
        if problem:
            self.notify(problem, severity="warning")
            return
        values, problems = self.query_one(GenSettingsForm).read()
        if problems:
            self.notify("\n".join(problems), title="fix the generation settings", severity="error")
            return
        history = [t.history_tuple() for t in self.turns[self.history_start:] if not t.error]
        turn = ChatTurn(prompt, self.loaded_name or "", self.generator.config.model.name, values)
        self.turns.append(turn)
        self._personas[id(turn)] = self.persona  # the transcript says which persona each turn had
        self._seeds, self._picked = {side: int(values.get("seed", 0)) for side in SIDES}, set()
        self._pick_system = self.persona  # the system prompt this exchange was answered under (saved with a pick)
        for side in SIDES:
            self.pane(side).add_prompt(prompt)
        box.value = ""
        self.stop_event = threading.Event()  # a fresh one per exchange: a late Stop must not stop the next
        self.busy = True
        sides = ("base",) if self.base_only else SIDES  # a base model alone has no adapter side
        self._ask(self.generator, turn, history, values, self.stop_event, sides=sides, system=self.persona)
        self.refresh_view()

    @work(thread=True, group="chat-generate", exit_on_error=False, name="chat-generate")
    def _ask(self, generator: Generator, turn: ChatTurn, history: list[tuple[str, str, str]],
             values: dict[str, Any], stop: threading.Event, sides: tuple[str, ...] = SIDES,
             system: str = "") -> None:
        try:
            generator.answer_both(turn.prompt, [Turn(*h) for h in history], GenSettings(**values),
                                  lambda event: self.post_message(ChatStream(event)), stop, sides=sides, system=system)
            self.post_message(ExchangeEnded(turn))
        except Exception as exc:
            self.post_message(ExchangeEnded(turn, error_text(exc)))

    def on_chat_stream(self, message: ChatStream) -> None:
        ev = message.event
        if isinstance(ev, events.AnswerText):
            self._pending[ev.side].append(ev.text)
            if self._flush_timer is None:
                self._flush_timer = self.set_timer(FLUSH_S, self.flush)
        elif isinstance(ev, events.AnswerStarted):
            self.flush()
            self.pane(ev.side).begin_answer()
        elif isinstance(ev, events.AnswerDone):
            self.flush()  # every piece drawn before the final text replaces them
            note = f"{ev.tokens} tokens · {ev.seconds:.1f}s{FINISH_NOTES.get(ev.finish, '')}"
            self.pane(ev.side).end_answer(ev.text, note)
            if self.turns:
                self.turns[-1].answers[ev.side] = SideAnswer(ev.text, ev.tokens, ev.finish, ev.seconds)

    def flush(self) -> None:
        """Draw the streamed text gathered since the last flush."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        for side, pieces in self._pending.items():
            if pieces:
                text = "".join(pieces)
                pieces.clear()
                self.pane(side).append(text)

    def on_exchange_ended(self, message: ExchangeEnded) -> None:
        self.flush()
        self.busy = False
        if message.error:
            message.turn.error = message.error
            for side in SIDES:
                answer = message.turn.answers[side]
                if self.pane(side).writing:
                    self.pane(side).fail_answer(message.error)
                    answer.finish = "failed"
                elif not answer.finish:
                    self.pane(side).add_divider("not answered")
            self.notify(message.error, title="generation failed", severity="error", timeout=15)
        self.refresh_view()

    # ---- actions ----

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dim the keys that do nothing now (the footer shows them greyed)."""
        rules = {"stop_generation": self.busy, "save_transcript": bool(self.turns),
                 "new_conversation": not self.busy}
        if action in rules:
            return True if rules[action] else None
        if action in PICK_ACTIONS:
            return self._pick_key_state(action)
        return True

    # ---- picks: prefer a side, ask a side again, edit an answer (chat_picks.py) ----

    def _pick_key_state(self, action: str) -> bool | None:
        """Hidden until there are answers to pick from (and while they are written); dimmed when the last
        exchange cannot be picked that way (stopped, failed, identical answers)."""
        if self.services.picks is None or not self.turns or self.busy:
            return False
        turn = self.turns[-1]
        if not turn.error and not all(turn.answers[side].finish for side in SIDES):
            return False  # one side was never asked (a base model alone): there is nothing to compare
        if action.startswith("again_"):
            return True if not self._again_problem() else None
        return True if not chat_picks.pick_problem(turn, self.busy, edit=action == "edit_answer") else None

    def action_prefer_left(self) -> None:
        self._prefer("base")

    def action_prefer_right(self) -> None:
        self._prefer("adapter")

    def _prefer(self, side: str) -> None:
        problem = chat_picks.pick_problem(self.turns[-1] if self.turns else None, self.busy)
        if problem:
            self.notify(problem, severity="warning")
            return
        self._save_pick(chat_picks.prefer(self.turns, self.history_start, side, self._seeds,
                                          self.services.wall_clock(), self._pick_system))

    def action_edit_answer(self) -> None:
        turn = self.turns[-1] if self.turns else None
        problem = chat_picks.pick_problem(turn, self.busy, edit=True)
        if problem:
            self.notify(problem, severity="warning")
            return
        answers = {side: turn.answers[side].text.strip() for side in SIDES}
        self.app.push_screen(EditAnswerDialog(answers), self._edited)

    def _edited(self, result: tuple[str, str] | None) -> None:
        if result is None or not self.turns:  # cancelled: nothing is recorded
            return
        side, text = result
        self._save_pick(chat_picks.edited(self.turns, self.history_start, side, text, self._seeds,
                                          self.services.wall_clock(), self._pick_system))

    def _save_pick(self, draft) -> None:
        key = (draft.chosen_by, draft.chosen, draft.rejected)
        if key in self._picked:
            self.notify("Already saved: that pick is in your collection once.", severity="warning")
            return
        self._picked.add(key)
        self._write_pick(self.picks_collection, draft)

    @work(thread=True, group="chat-picks", exit_on_error=False, name="chat-pick")
    def _write_pick(self, collection: str, draft) -> None:
        with saving(f"a pick for {collection}"):  # quitting waits for it: a pick is never cut off
            try:
                count = self.services.picks.add(collection, draft)
                self.post_message(PickSaved(collection, draft.chosen_by, draft.rejected_by, count))
            except Exception as exc:
                self.post_message(PickSaved(collection, draft.chosen_by, draft.rejected_by, error=error_text(exc)))

    def on_pick_saved(self, message: PickSaved) -> None:
        if message.error:
            self.notify(message.error, title="pick not saved", severity="error", timeout=10)
            return
        what = ("your edit chosen over the " + message.rejected_by + " answer" if message.chosen_by == "edited"
                else f"{message.chosen_by} answer chosen over the {message.rejected_by} answer")
        self.notify(f"Saved to {message.collection} ({message.count} picks): {what}", timeout=5)

    def _again_problem(self) -> str:
        if self.busy:
            return "Still answering: press Esc to stop it first."
        if not self.turns or self.turns[-1].error:
            return "Ask something first: another answer is drawn for your last message."
        if self.generator is None or self.turns[-1].adapter != self.loaded_name:
            return "The last message was answered by another adapter: send a new one."
        return ""

    def action_again_left(self) -> None:
        self._again("base")

    def action_again_right(self) -> None:
        self._again("adapter")

    def _again(self, side: str) -> None:
        """Another answer from one side to the last message, drawn with the next seed; it replaces that
        side's answer (what a pick compares and what the next message's history holds)."""
        problem = self._again_problem()
        if problem:
            self.notify(problem, severity="warning")
            return
        turn = self.turns[-1]
        history = [t.history_tuple() for t in self.turns[self.history_start:-1] if not t.error]
        self._seeds[side] = (self._seeds.get(side, 0) + 1) % (MAX_SEED + 1)
        turn.answers[side] = SideAnswer()
        self.pane(side).add_divider(f"another answer (seed {self._seeds[side]})")
        self.stop_event = threading.Event()
        self.busy = True
        self._ask(self.generator, turn, history, dict(turn.settings) | {"seed": self._seeds[side]}, self.stop_event,
                  sides=(side,), system=self.persona)
        self.refresh_view()

    def action_toggle_server(self) -> None:
        """ctrl+g: serve the loaded model to OpenAI clients on 127.0.0.1, or stop serving it."""
        if self.server is not None:
            self._stop_server()
            self.notify("Stopped the local server.", timeout=5)
        elif self.generator is None:
            self.notify("Load an adapter first (ctrl+o), then ctrl+g serves it.", severity="warning")
        else:
            self._start_server(self.generator)
        self.refresh_view()

    @work(thread=True, group="chat-serve", exit_on_error=False, name="chat-serve")
    def _start_server(self, generator: Generator) -> None:
        notes: list[str] = []  # e.g. that port 8000 was busy, so the server took another
        try:
            handle = self.services.generation.serve(generator, notes.append)
            self.post_message(ServerChanged(handle, note=" ".join(notes)))
        except Exception as exc:
            self.post_message(ServerChanged(error=error_text(exc)))

    def on_server_changed(self, message: ServerChanged) -> None:
        if message.error:
            self.notify(message.error, title="cannot start the local server", severity="error", timeout=10)
        elif self.server is not None or self.generator is None:  # started twice, or the model went meanwhile
            self._stop_handle(message.handle)
        else:
            self.server = message.handle
            note = f"{message.note} " if message.note else ""
            self.notify(f"{note}OpenAI-compatible server at {self.server.url} (model: {self.loaded_name}); "
                        "ctrl+g stops it", timeout=10)
        self.refresh_view()

    def _stop_server(self) -> None:
        handle, self.server = self.server, None
        if handle is not None:
            self._stop_handle(handle)

    @work(thread=True, group="chat-serve", exit_on_error=False, name="chat-serve-stop")
    def _stop_handle(self, handle: ServerHandle | None) -> None:
        if handle is not None:
            handle.stop()

    def action_stop_generation(self) -> None:
        if self.busy:
            self.stop_event.set()
            self.refresh_view()

    def action_new_conversation(self) -> None:
        if self.busy:
            self.notify("Still answering: press Esc to stop it first.", severity="warning")
            return
        self.turns, self.history_start = [], 0
        for side in SIDES:
            self.pane(side).clear()
        if self.persona:
            self._show_persona()
        self.refresh_view()

    def action_edit_persona(self) -> None:
        if self.busy:
            self.notify("Still answering: press Esc to stop it first.", severity="warning")
            return
        self.app.push_screen(TextPromptDialog("Persona", "The system prompt both models get, from the next message "
                                              "on (empty: none). Training used the run's data.system_prompt.",
                                              self.persona, ok="Use it", check=lambda text: ""), self.set_persona)

    def set_persona(self, text: str | None) -> None:
        if text is None or text.strip() == self.persona:
            return
        self.persona = text.strip()
        self._show_persona()

    def _show_persona(self) -> None:
        """The persona in the transcript, where it starts to apply."""
        for side in SIDES:
            self.pane(side).add_divider(f"persona: {self.persona}" if self.persona else "no persona")

    def action_choose_adapter(self) -> None:
        select = self.query_one("#adapter-select", KeySelect)
        select.focus()
        select.action_show_overlay()  # the list opens on the first adapter: Enter takes it

    def palette_commands(self) -> list[tuple[str, str, Any]]:
        """'Open adapter X' for each finished adapter (ctrl+p)."""
        return [(f"open adapter {a.name}", f"Chat with {a.name} ({a.method} on {a.base_model})",
                 partial(self.open_adapter, a.name)) for a in self.adapters or [] if a.name != self.loaded_name] + [
            ("picks collection…", f"Save picks to another collection (now: {self.picks_collection})",
             self.ask_picks_collection)]

    def ask_picks_collection(self) -> None:
        self.app.push_screen(TextPromptDialog("Picks collection", "Save the next picks to this collection "
                                              "(a new name starts a new one):", self.picks_collection, ok="Use",
                                              check=picks_name_problem), self.set_picks_collection)

    def set_picks_collection(self, name: str | None) -> None:
        if name:
            self.picks_collection = name
            self.notify(f"Picks now go to {name} (train on them: data.source = picks:{name})", timeout=6)

    def action_toggle_settings(self) -> None:
        """Show the generation settings where they are hidden (narrow terminals), hide them elsewhere."""
        self.toggle_class("-settings-flipped")

    @property
    def settings_shown(self) -> bool:
        return self.query_one(GenSettingsForm).display

    def action_reload_adapters(self) -> None:
        self._list_adapters()

    def action_save_transcript(self) -> None:
        if not self.turns:
            self.notify("Nothing to save yet: ask something first.", severity="warning")
            return
        default = default_transcript_path(self.services.transcripts_dir(), self.services.wall_clock())
        self.app.push_screen(TextPromptDialog("Save transcript", "Markdown file to write (its folder is created):",
                                              str(default), ok="Save", check=transcript_path_problem),
                             self.save_transcript)

    def save_transcript(self, path: str | None) -> None:
        if not path:
            return
        target, problem = write_transcript(path, self.turns, self.services.wall_clock(),
                                           [self._personas.get(id(t), "") for t in self.turns])
        if problem:
            self.notify(problem, title="transcript not saved", severity="error", timeout=10)
        else:
            self.notify(f"Transcript saved to {target}", timeout=8)

    # ---- drawing ----

    def status_text(self) -> str:
        if self.opening:
            return f"loading {self.opening} (base model + adapter) … {self.load_log}".rstrip(" …")
        if self.load_error:
            return self.load_error
        if self.loaded_name:
            serving = f" · serving at {self.server.url} (ctrl+g stops)" if self.server is not None else ""
            return self.loaded_info + (" · answering (Esc stops)" if self.busy else "") + serving
        if self.adapters is None:
            return "reading the adapters …"
        if not self.adapters:
            return "No finished adapter yet: train one on the Train screen (F3), then choose it here."
        return "Choose an adapter to chat with (ctrl+o)."

    def refresh_view(self) -> None:
        self.query_one("#chat-status", Static).update(self.status_text())
        self.query_one("#stop", Button).disabled = not self.busy
        self.query_one("#send", Button).disabled = self.busy or self.generator is None
        self.refresh_bindings()


