"""The workbench App: five screens (one mode each), the keys and palette commands, and every worker.

Workers run the engine in threads and talk back only through post_message; the handlers here turn
those messages into WorkbenchState on the main thread and tell the visible screen to redraw (the
work beside training is in background.py). The engine is reached only through the service protocols
(humanlike_tui.protocols.Services), so tests drive this same app with scripted doubles
(tests/support/fakes.py) and nothing here imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from humanlike_tui import config as cfgmod, events as ev, paths
from humanlike_tui.config import DEFAULT_PRESET, Config
from humanlike_tui.errors import HumanlikeError, crash_line, write_crash_report
from humanlike_tui.formatting import error_text
from humanlike_tui.protocols import RunChoice, Services
from humanlike_tui.ui.crash import CrashApp
from humanlike_tui.ui.exit_guard import quick_loop_exit, saving
from humanlike_tui.ui.background import BackgroundWork
from humanlike_tui.ui.gpu_share import GpuSharing
from humanlike_tui.ui.chat_services import EngineGeneration, EnginePicks, EngineScorecard
from humanlike_tui.ui.messages import (EngineEvent, OpenInChat, RemoteCodeWanted, ResumeRun, RunDeleted, RunHistory,
                                       RunRenamed, RunsListed)
from humanlike_tui.ui.screens.dialogs import ConfirmDialog, RunPicker
from humanlike_tui.ui.services import EngineHardware, EngineLibrary, EngineModels, EngineTraining
from humanlike_tui.ui.startup import initial_config
from humanlike_tui.ui.state import WorkbenchState

if TYPE_CHECKING:  # imported when first shown (SCREENS)
    from humanlike_tui.ui.screens.chat import ChatScreen
    from humanlike_tui.ui.screens.config import ConfigScreen
    from humanlike_tui.ui.screens.train import TrainScreen

SCREENS: dict[str, tuple[str, str, str]] = {
    # mode: (key, title, module:class in ui/screens). Imported when first shown: the five screens and
    # their widgets are ~0.12 s of imports the first frame would wait for (tools/ui_timing.py).
    "hardware": ("f1", "Hardware", "hardware:HardwareScreen"),
    "config": ("f2", "Config", "config:ConfigScreen"),
    "train": ("f3", "Train", "train:TrainScreen"),
    "chat": ("f4", "Chat", "chat:ChatScreen"),
    "adapters": ("f5", "Adapters", "adapters:AdaptersScreen"),
}
SERVICE_SCREENS = ("chat", "adapters", "config")  # screens that call the services themselves (in their workers)
TRAIN_REDRAW_S = 0.2  # at most five redraws a second however fast the steps come


class WorkbenchApp(BackgroundWork, GpuSharing, App[int]):
    TITLE = "humanlike-tui"
    CSS_PATH = "app.tcss"
    # Classes on every screen for its size: screens lay out again below 100 columns (-narrow) and
    # below 32 rows (-short), so 80x24 is usable (tests/ui/test_small_terminal.py).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    BINDINGS = [
        *[Binding(key, f"show('{mode}')", title) for mode, (key, title, _) in SCREENS.items()],
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # The Keys panel (ctrl+p, Keys) closes with Escape too; only while it is open (check_action).
        Binding("escape", "hide_help_panel", "Close the keys panel", show=False, priority=True),
    ]

    def __init__(self, services: Services, config: Config, config_path: Path, *,
                 initial_screen: str = "hardware", startup_note: str = "") -> None:
        # The first screen is the starting mode itself: switching to it from Textual's default screen
        # on mount drew a blank screen first and parsed the CSS again (~0.1 s before the first frame).
        self.DEFAULT_MODE = initial_screen
        super().__init__()
        self.services = services
        self.state = WorkbenchState(config=config, config_path=config_path)
        self._startup_note = startup_note
        self._t0 = services.clock()
        self._mode_screens: dict[str, Screen] = {}
        for mode in SCREENS:
            self.add_mode(mode, self._screen_factory(mode))
        self._init_background()
        self._stop_run = threading.Event()
        self._pause_run = threading.Event()
        self._quit_after_run = False
        self._after_gpu_free: list[Callable[[], None]] = []  # what waits for a paused run to let go of the GPU
        self._redraw_timer: Timer | None = None
        self._bindings_status = ""
        self._signals: list[tuple[Any, int]] = []  # (loop, signal) handlers to remove on exit
        self.crash: str | None = None  # the one line of an unexpected error that ended the app
        self.quick_exit = False  # run_app: quitting does not wait for reading threads (ui/exit_guard.py)

    # ---- screens ----

    def _screen_factory(self, mode: str) -> Callable[[], Screen]:
        def make() -> Screen:
            module, name = SCREENS[mode][2].split(":")
            cls = getattr(importlib.import_module(f"humanlike_tui.ui.screens.{module}"), name)
            screen = cls(self.state, self.services) if mode in SERVICE_SCREENS else cls(self.state)
            self._mode_screens[mode] = screen
            return screen

        return make

    def mode_screen(self, mode: str) -> Screen | None:
        """The mode's screen if it was ever made (shown or not)."""
        return self._mode_screens.get(mode)

    def _quitting(self) -> bool:
        """Exit is under way: a GPU reading or run event still queued must not redraw screens whose
        widgets Textual is removing (no stack left, or the app no longer running)."""
        return not self.is_running or not self._screen_stack

    def shown(self, mode: str) -> Screen | None:
        """The mode's screen if it is on display, on top or under a dialog (the Train screen behind 'Quit
        while training?' stayed at its last step); others redraw when they are shown again."""
        screen = self._mode_screens.get(mode)
        if screen is None or not screen.is_mounted or self._quitting() or not screen.is_attached:
            return None  # is_attached turns False as soon as exit is asked for
        return screen if screen in self.screen_stack else None

    def on_mount(self) -> None:
        if self.quick_exit:
            quick_loop_exit()
        # After the first frame: the probe's torch import in a thread holds the GIL for seconds and
        # would slow the first paint.
        self.call_after_refresh(self._start_background)
        self._catch_stop_signals()
        if self._startup_note:
            self.notify(self._startup_note, severity="warning", timeout=15)

    def action_show(self, mode: str) -> None:
        self.switch_mode(mode)

    def now(self) -> float:
        return self.services.clock() - self._t0

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, (key, title, _) in SCREENS.items():
            yield SystemCommand(f"{title} screen", f"Show the {title} screen ({key.upper()})",
                                lambda mode=mode: self.switch_mode(mode))
        yield SystemCommand("Start training", "Train a new run with the current config", self.action_start_training)
        yield SystemCommand("Stop training", "Stop the run, saving a checkpoint", self.action_stop_training)
        yield SystemCommand("Pause training", "Save a checkpoint and free the GPU memory", self.action_pause_training)
        yield SystemCommand("Resume training", "Continue the paused or stopped run", self.action_resume_training)
        yield SystemCommand("Resume an earlier run", "Pick a run from disk and continue it", self.action_resume_earlier)
        if screen is self._mode_screens.get("config"):
            yield SystemCommand("Save config", "Write the config to the TOML file", screen.action_save)
            yield SystemCommand("Load config", "Read the config from the TOML file", screen.action_load)
        for name in cfgmod.preset_names():
            yield SystemCommand(f"Load preset {name}", f"Fill the Config screen with the {name} preset",
                                partial(self.load_preset, name))
        yield SystemCommand("Open an adapter in Chat", "Show the Chat screen with its adapter list open",
                            self.choose_chat_adapter)

    # ---- training: actions ----

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out the training keys that make no sense now (the footer shows them dimmed)."""
        if action == "hide_help_panel":
            return bool(self.screen.query("HelpPanel"))  # else Escape goes on to the screen (Chat: Stop)
        t = self.state.tracker
        rules = {"start_training": not t.active, "stop_training": t.active and t.status != "stopping",
                 "pause_training": t.status == "training", "resume_training": not t.active,
                 "resume_earlier": not t.active}
        if action in rules:
            return True if rules[action] else None
        return True

    def action_start_training(self) -> None:
        if self.state.tracker.active:
            self.notify("A run is already training: stop or pause it first.", severity="warning")
            return
        if self.state.config_problems:
            n = len(self.state.config_problems)
            self.notify(f"The config has {n} problem{'s' if n > 1 else ''}: {self.state.config_problems[0]}",
                        title="fix the config first", severity="error", timeout=10)
            self.switch_mode("config")
            return
        self._launch(self.state.config, resume=None)

    def action_stop_training(self) -> None:
        if not self.state.tracker.active:
            self.notify("No run is training.", severity="warning")
            return
        self._stop_run.set()
        self.state.tracker.request("stop", self.now())
        self._run_changed()

    def action_pause_training(self) -> None:
        if self.state.tracker.status != "training":
            self.notify("Only a training run can be paused.", severity="warning")
            return
        self._pause_run.set()
        self.state.tracker.request("pause", self.now())
        self._run_changed()

    def action_resume_training(self) -> None:
        t = self.state.tracker
        if t.active:
            self.notify("The run is still going.", severity="warning")
        elif t.can_resume and t.config is not None:
            self._launch(t.config, resume=t.run_id)
        else:
            self.action_resume_earlier()

    def action_resume_earlier(self) -> None:
        if self.state.tracker.active:
            self.notify("A run is training: stop or pause it first.", severity="warning")
            return
        self._list_runs()

    def on_runs_listed(self, message: RunsListed) -> None:
        if message.error:
            self.notify(message.error, title="cannot list the runs", severity="error", timeout=10)
            return
        self.push_screen(RunPicker(message.runs, str(paths.runs_dir()), message.finished), self._resume_chosen)

    def _resume_chosen(self, run: RunChoice | None) -> None:
        if run is None:
            return
        cfg = self.state.config
        if run.config is not None:
            stored, problems = cfgmod.validate_dict(run.config)
            if stored is not None:
                cfg = stored
            else:
                self.notify(f"run {run.run_id}: its stored config is not valid now ({problems[0]}); "
                            "resuming with the current config", severity="warning", timeout=10)
        self._launch(cfg, resume=run.run_id)

    def on_resume_run(self, message: ResumeRun) -> None:
        """A run picked elsewhere (the Adapters screen), resumed as if picked in the RunPicker."""
        if self.state.tracker.active:
            self.notify("A run is training: stop or pause it first.", severity="warning")
            return
        self._resume_chosen(RunChoice(message.run_id, message.run_id, message.config))

    def _launch(self, cfg: Config, resume: str | None) -> None:
        if cfg.model.trust_remote_code and not cfgmod.remote_code_allowed(cfg):
            self.confirm_remote_code(cfg.model.name, lambda: self._launch(cfg, resume))
            return
        # Fresh events per run: a late Stop meant for the last run must not stop this one.
        self._stop_run, self._pause_run = threading.Event(), threading.Event()
        from_disk = resume is not None and resume != self.state.tracker.run_id  # not this session's run
        self.state.tracker.begin(cfg, self.now(), resume=resume)
        self.switch_mode("train")
        if cfg.model.trust_remote_code:
            from humanlike_tui.ui.screens.config import TRUST_REMOTE_CODE_WARNING

            self.notify(TRUST_REMOTE_CODE_WARNING, title="trust_remote_code", severity="warning", timeout=15)
        self._train(cfg, resume, self._stop_run, self._pause_run, history_of=resume if from_disk else None)
        self._run_changed()

    def on_remote_code_wanted(self, message: RemoteCodeWanted) -> None:
        self.confirm_remote_code(message.model_name, message.proceed)

    def confirm_remote_code(self, model_name: str, proceed: Callable[[], None]) -> None:
        """A config (a run's own, a file) only asks to run a model's code: the person says yes here,
        before anything of the model loads (training, Chat, the scorecard); the answer holds for that
        model in this session."""
        def answer(yes: bool | None) -> None:
            if yes:
                cfgmod.allow_remote_code(model_name)
                proceed()

        self.push_screen(ConfirmDialog("Run the model's own Python code?",
                                       f"model.trust_remote_code is on for {model_name}: loading it runs the "
                                       "Python code shipped with the model, with your rights. Go on only if you "
                                       "trust its authors.", yes="Run its code", no="Cancel"), answer)

    @work(thread=True, exclusive=True, group="training", exit_on_error=False, name="training")
    def _train(self, cfg: Config, resume: str | None, stop: threading.Event, pause: threading.Event,
               history_of: str | None = None) -> Any:
        def emit(event: ev.Event) -> None:
            self.post_message(EngineEvent(event))

        if history_of is not None:
            try:
                history = self.services.library.history(history_of)
            except Exception:  # only the chart's past is lost; the run itself resumes from its checkpoint
                history = ([], [])
            self.post_message(RunHistory(history_of, history))  # handled before the engine's first event

        with saving("the training run stopping (its checkpoint is being saved)"):
            return self.services.training.run(cfg, emit, stop, resume=resume, pause=pause,
                                              power=lambda: self._training_watts)

    # ---- training: what comes back ----

    def on_run_history(self, message: RunHistory) -> None:
        self.state.tracker.add_history(*message.history)
        self._run_changed()

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        self.state.tracker.apply(event, self.now())
        if isinstance(event, ev.Stopped) and event.paused:
            freed = "GPU memory" if self.state.tracker.has_gpu else "memory"
            self.notify(f"Paused at step {event.step}: checkpoint saved, {freed} freed. Press r to resume.",
                        timeout=8)
        elif isinstance(event, ev.BatchReduced):
            self.notify(event.message, title="out of GPU memory: smaller micro-batches", severity="warning")
        elif isinstance(event, ev.Finished):
            self.notify(f"Adapter saved to {event.adapter_dir}", title="training finished", timeout=10)
        self._run_changed()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.name != "training" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                            WorkerState.CANCELLED):
            return
        error = error_text(worker.error) if event.state == WorkerState.ERROR else None
        if error is not None and not isinstance(worker.error, HumanlikeError):  # a bug: a report, no traceback
            report = write_crash_report(worker.error, command="humanlike-tui (workbench: training)",
                                        config=self.state.config)
            self.state.tracker.add_log(self.now(), crash_line(worker.error, report))
        self.state.tracker.worker_ended(self.now(), getattr(worker.result, "status", None), error)
        if error is not None:
            self.notify(self.state.tracker.failure, title="training failed", severity="error", timeout=20)
        self._run_changed()
        if self._quit_after_run:
            self.exit(0)
            return
        self._run_waiting_for_gpu()  # the worker has returned: the engine freed the GPU

    def _run_changed(self) -> None:
        """Batch redraws: many events in 0.2 s make one redraw of the Train screen."""
        if self._quitting():
            return  # an engine event still in flight has nothing left to redraw
        if self.state.tracker.status != self._bindings_status:
            # Only on a status change: refreshing bindings rebuilds the footer, far too slow per step.
            self._bindings_status = self.state.tracker.status
            self.refresh_bindings()
        if self._redraw_timer is None:
            self._redraw_timer = self.set_timer(TRAIN_REDRAW_S, self.redraw_train)

    def redraw_train(self) -> None:
        self._redraw_timer = None
        screen = cast("TrainScreen | None", self.shown("train"))
        if screen is not None:
            screen.refresh_view()

    # ---- unexpected errors ----

    def _handle_exception(self, error: Exception) -> None:
        """Textual's hook for an exception nothing handled. Textual would end the app and print a
        traceback; the part of the app that raised has stopped taking messages, so going on is not safe.
        End it as Textual does, but write a crash report instead of the traceback: run_app then shows
        the one line and the report's path in a dialog (CrashApp). Under the test pilot the error is
        still re-raised when the test ends, so a test never passes over a bug."""
        if self.crash is None:
            report = write_crash_report(error, command="humanlike-tui (workbench)", config=self.state.config)
            self.crash = crash_line(error, report)
        if self.is_headless and self._exception is None:
            self._exception = error
            self._exception_event.set()
        self._return_code = 1
        self._close_messages_no_wait()  # what Textual's own fatal-error path does, without the traceback

    # ---- quitting ----

    async def action_quit(self) -> None:
        if not self.state.tracker.active:
            self.exit(0)
            return
        self.push_screen(ConfirmDialog("Quit while training?",
                                       "A run is training. Stop it (a checkpoint is saved, so it can be resumed) "
                                       "and quit?", yes="Stop and quit", no="Keep training"), self._quit_answer)

    def _quit_answer(self, yes: bool | None) -> None:
        if not yes:
            return
        if not self.state.tracker.active:  # the run ended while the question was up: nothing to wait for
            self.exit(0)
            return
        self._quit_after_run = True
        if self.state.tracker.status != "stopping":
            self.action_stop_training()
        self.notify("Stopping: saving a checkpoint, then quitting ...", timeout=30)

    def _catch_stop_signals(self) -> None:
        """SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed) quit like 'Stop and quit':
        a training run saves a checkpoint first. Without this either signal killed the app mid-step and
        the steps since the last checkpoint were lost."""
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows, a thread
                    loop.add_signal_handler(sig, self.quit_on_signal, name)
                    self._signals.append((loop, sig))

    def quit_on_signal(self, name: str) -> None:
        if not self.state.tracker.active:
            self.exit(0)
        elif self._quit_after_run:  # a second signal while the checkpoint is written: go now
            self.exit(1)
        else:
            self._quit_answer(True)
            self.notify(f"{name}: stopping the run (a checkpoint is saved), then quitting ...", timeout=30)

    def on_unmount(self) -> None:
        # Threads cannot be killed: tell them to end, or the interpreter waits for them on exit.
        for loop, sig in self._signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        self._stop_background()
        self._stop_run.set()
        if self._redraw_timer is not None:
            self._redraw_timer.stop()

    # ---- palette commands that change screen first ----

    async def load_preset(self, name: str) -> None:
        await self.switch_mode("config")
        config = cast("ConfigScreen | None", self.mode_screen("config"))
        if config is not None:
            config.load_preset(name)

    async def choose_chat_adapter(self) -> None:
        await self.switch_mode("chat")
        chat = cast("ChatScreen | None", self.mode_screen("chat"))
        if chat is not None:
            chat.action_choose_adapter()

    # ---- the Chat screen, asked for by another screen ----

    def on_run_renamed(self, message: RunRenamed) -> None:
        """A renamed run: the chat that holds its adapter and this session's run follow the new name."""
        chat = cast("ChatScreen | None", self.mode_screen("chat"))
        if chat is not None:
            chat.adapter_renamed(message.old, message.new)
        if self.state.tracker.rename(message.old, message.new):
            self._run_changed()

    def on_run_deleted(self, message: RunDeleted) -> None:
        """A deleted run: the Chat that holds its adapter closes it (and stops serving it)."""
        chat = cast("ChatScreen | None", self.mode_screen("chat"))
        if chat is not None:
            chat.adapter_deleted(message.name)

    async def on_open_in_chat(self, message: OpenInChat) -> None:
        await self.switch_mode("chat")
        chat = cast("ChatScreen | None", self.mode_screen("chat"))
        if chat is not None:
            chat.request_adapter(message.name)


def production_services() -> Services:
    """The real engine behind every protocol, imported on first use (always from a worker thread)."""
    return Services(training=EngineTraining(), hardware=EngineHardware(), library=EngineLibrary(),
                    generation=EngineGeneration(), scorecard=EngineScorecard(), models=EngineModels(),
                    picks=EnginePicks())


def make_app(services: Services | None = None, config: Config | None = None, config_path: Path | None = None,
             *, initial_screen: str = "hardware", startup_note: str = "") -> WorkbenchApp:
    """The one way to build the app: production passes nothing, tests pass fakes."""
    return WorkbenchApp(services or production_services(), config or cfgmod.load_preset(DEFAULT_PRESET),
                        config_path or paths.config_dir() / "config.toml", initial_screen=initial_screen,
                        startup_note=startup_note)


def run_app(args: argparse.Namespace) -> int:
    cfg, path, note = initial_config(args)
    app = make_app(config=cfg, config_path=path, startup_note=note)
    app.quick_exit = True
    code = app.run()
    if app.crash is not None:
        with contextlib.suppress(Exception):
            CrashApp(app.crash).run()
        import sys

        print(f"error: {app.crash}", file=sys.stderr)
        return 1
    return code or 0
