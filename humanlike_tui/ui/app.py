"""The workbench App: five screens (one mode each), the keys and palette commands, and every worker.

Workers run the engine in threads and talk back only through post_message; the handlers here turn
those messages into WorkbenchState on the main thread and tell the visible screen to redraw. The
engine is reached only through `Services` (services.py), so tests drive this same app with a
scripted engine (fakes.py) and nothing here imports torch.
"""

from __future__ import annotations

import argparse
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from humanlike_tui import config as cfgmod
from humanlike_tui import events as ev
from humanlike_tui import paths
from humanlike_tui.config import Config
from humanlike_tui.errors import ConfigError, HumanlikeError
from humanlike_tui.ui.messages import (ConfigChanged, EngineEvent, GpuSamples, HardwareReport, PlanReady,
                                       PreviewReady, RunHistory, RunsListed)
from humanlike_tui.ui.screens.adapters import AdaptersScreen
from humanlike_tui.ui.screens.chat import ChatScreen
from humanlike_tui.ui.screens.config import TRUST_REMOTE_CODE_WARNING, ConfigScreen
from humanlike_tui.ui.screens.dialogs import ConfirmDialog, GpuShareDialog, RunPicker
from humanlike_tui.ui.screens.hardware import HardwareScreen
from humanlike_tui.ui.screens.train import TrainScreen
from humanlike_tui.ui.services import HardwareView, PlanView, RunChoice, Services, production_services
from humanlike_tui.ui.state import WorkbenchState

DEFAULT_PRESET = "gaming-8gb"  # the CLI's default too
SCREENS: dict[str, tuple[str, str, type[Screen]]] = {
    # mode: (key, title, screen class)
    "hardware": ("f1", "Hardware", HardwareScreen),
    "config": ("f2", "Config", ConfigScreen),
    "train": ("f3", "Train", TrainScreen),
    "chat": ("f4", "Chat", ChatScreen),
    "adapters": ("f5", "Adapters", AdaptersScreen),
}
TRAIN_REDRAW_S = 0.2  # at most five redraws a second however fast the steps come
DEBOUNCE_S = 0.4  # wait for the user to stop typing before estimating VRAM or reading the data


class WorkbenchApp(App[int]):
    TITLE = "humanlike-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        *[Binding(key, f"show('{mode}')", title) for mode, (key, title, _) in SCREENS.items()],
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, services: Services, config: Config, config_path: Path, *,
                 initial_screen: str = "hardware", startup_note: str = "") -> None:
        super().__init__()
        self.services = services
        self.state = WorkbenchState(config=config, config_path=config_path)
        self._initial_screen = initial_screen
        self._startup_note = startup_note
        self._t0 = services.clock()
        self._mode_screens: dict[str, Screen] = {}
        for mode, (_, _, cls) in SCREENS.items():
            self.add_mode(mode, self._screen_factory(mode, cls))
        self._stop_run = threading.Event()
        self._pause_run = threading.Event()
        self._shutting_down = threading.Event()  # tells the GPU polling thread to end
        self._quit_after_run = False
        self._after_gpu_free: list[Callable[[], None]] = []  # what waits for a paused run to let go of the GPU
        self._redraw_timer: Timer | None = None
        self._bindings_status = ""
        self._debounce_timer: Timer | None = None
        self._preview_key: object = None
        # The newest power reading of the training GPU. The engine's thread reads it (a float: an atomic
        # read) to keep the run's energy in its metadata; only this thread writes it.
        self._training_watts: float | None = None

    # ---- screens ----

    def _screen_factory(self, mode: str, cls: type[Screen]) -> Callable[[], Screen]:
        def make() -> Screen:
            screen = cls(self.state)  # type: ignore[call-arg]
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
        """The mode's screen if it is the one on display (others redraw when they are shown again)."""
        screen = self._mode_screens.get(mode)
        if screen is None or not screen.is_mounted or self._quitting() or not screen.is_attached:
            return None  # is_attached turns False as soon as exit is asked for
        return screen if self.screen is screen else None

    def on_mount(self) -> None:
        self.switch_mode(self._initial_screen)
        self._probe_hardware()
        if self.services.gpu_interval is not None:
            self._poll_gpus(self.services.gpu_interval)
        self._schedule_estimates()
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
        if isinstance(screen, ConfigScreen):
            yield SystemCommand("Save config", "Write the config to the TOML file", screen.action_save)
            yield SystemCommand("Load config", "Read the config from the TOML file", screen.action_load)

    # ---- training: actions ----

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out the training keys that make no sense now (the footer shows them dimmed)."""
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
        self.push_screen(RunPicker(message.runs, str(paths.runs_dir())), self._resume_chosen)

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

    def resume_run(self, run_id: str, config: dict[str, Any] | None = None) -> None:
        """Resume a run picked elsewhere (the Adapters screen), as if picked in the RunPicker."""
        if self.state.tracker.active:
            self.notify("A run is training: stop or pause it first.", severity="warning")
            return
        self._resume_chosen(RunChoice(run_id, run_id, config))

    def _launch(self, cfg: Config, resume: str | None) -> None:
        # Fresh events per run: a late Stop meant for the last run must not stop this one.
        self._stop_run, self._pause_run = threading.Event(), threading.Event()
        from_disk = resume is not None and resume != self.state.tracker.run_id  # not this session's run
        self.state.tracker.begin(cfg, self.now(), resume=resume)
        self.switch_mode("train")
        if cfg.model.trust_remote_code:
            self.notify(TRUST_REMOTE_CODE_WARNING, title="trust_remote_code", severity="warning", timeout=15)
        self._train(cfg, resume, self._stop_run, self._pause_run, history_of=resume if from_disk else None)
        self._run_changed()

    @work(thread=True, exclusive=True, group="training", exit_on_error=False, name="training")
    def _train(self, cfg: Config, resume: str | None, stop: threading.Event, pause: threading.Event,
               history_of: str | None = None) -> Any:
        def emit(event: ev.Event) -> None:
            self.post_message(EngineEvent(event))

        if history_of is not None:
            try:
                train, evals = self.services.run_history(history_of)
            except Exception:  # only the chart's past is lost; the run itself resumes from its checkpoint
                train, evals = [], []
            self.post_message(RunHistory(history_of, train, evals))  # handled before the engine's first event

        return self.services.run_training(cfg, emit, stop, resume=resume, pause=pause,
                                          power=lambda: self._training_watts)

    # ---- training: what comes back ----

    def on_run_history(self, message: RunHistory) -> None:
        self.state.tracker.add_history(message.train, message.evals)
        self._run_changed()

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        self.state.tracker.apply(event, self.now())
        if isinstance(event, ev.Stopped) and event.paused:
            self.notify(f"Paused at step {event.step}: checkpoint saved, GPU memory freed. Press r to resume.",
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
        error = _error_text(worker.error) if event.state == WorkerState.ERROR else None
        if error is not None and not isinstance(worker.error, HumanlikeError):
            for line in traceback.format_exception(worker.error)[-6:]:
                self.state.tracker.add_log(self.now(), line.rstrip())
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
        screen = self.shown("train")
        if isinstance(screen, TrainScreen):
            screen.refresh_view()

    # ---- sharing the GPU with a training run ----

    def training_holds_gpu(self) -> bool:
        """A run is (or is about to be) training on a GPU: loading another model there may starve it."""
        t = self.state.tracker
        if not t.active:
            return False
        if t.device:  # RunStarted said where it trains
            return t.has_gpu
        hardware = self.state.hardware  # still loading: it will be on the GPU if there is one
        return bool(hardware is not None and hardware.gpu_names)

    def confirm_gpu_share(self, what: str, proceed: Callable[[], None],
                          cancelled: Callable[[], None] | None = None) -> None:
        """Run `proceed` now if the GPU is free; else ask: pause the run first, go ahead, or cancel."""
        if not self.training_holds_gpu():
            proceed()
            return

        def answer(choice: str | None) -> None:
            if choice == "anyway":
                proceed()
            elif choice == "pause":
                self._after_gpu_free.append(proceed)
                if self.state.tracker.status in ("starting", "training"):
                    # While the model still loads the engine pauses at its first step's check.
                    self._pause_run.set()
                    self.state.tracker.request("pause", self.now())
                    self._run_changed()
                self.notify(f"Pausing the run (checkpoint, then the GPU is freed); {what[0].lower() + what[1:]} "
                            "follows.", timeout=10)
            elif cancelled is not None:
                cancelled()

        self.push_screen(GpuShareDialog(what), answer)

    def _run_waiting_for_gpu(self) -> None:
        if self.state.tracker.active or not self._after_gpu_free:
            return
        waiting, self._after_gpu_free = self._after_gpu_free, []
        for proceed in waiting:
            proceed()

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
        self._quit_after_run = True
        if self.state.tracker.status != "stopping":
            self.action_stop_training()
        self.notify("Stopping: saving a checkpoint, then quitting ...", timeout=30)

    def on_unmount(self) -> None:
        # Threads cannot be killed: tell them to end, or the interpreter waits for them on exit.
        self._shutting_down.set()
        self._stop_run.set()
        for timer in (self._redraw_timer, self._debounce_timer):
            if timer is not None:
                timer.stop()

    # ---- hardware, VRAM plan, data preview ----

    @work(thread=True, group="hardware", exit_on_error=False, name="hardware-probe")
    def _probe_hardware(self) -> None:
        try:
            report, error = self.services.probe_hardware(), ""
        except Exception as exc:  # a broken probe must not stop the app: the rest works without it
            report, error = None, f"hardware probe failed: {_error_text(exc)}"
        self.post_message(HardwareReport(report, error))

    def on_hardware_report(self, message: HardwareReport) -> None:
        self.state.hardware, self.state.hardware_error = message.report, message.error
        if message.report is None:
            self.state.plan_note = "no VRAM estimate without a hardware report"
        self._refresh_hardware()
        self._start_estimates()  # the plan was waiting for the report

    @work(thread=True, group="gpu", exit_on_error=False, name="gpu-poll")
    def _poll_gpus(self, interval: float) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled and not self._shutting_down.is_set():
            try:
                readings = self.services.sample_gpus()
            except Exception:  # no driver, NVML gone: report no GPUs once and stop polling
                self.post_message(GpuSamples([], self.services.clock()))
                return
            self.post_message(GpuSamples(readings, self.services.clock()))
            self._shutting_down.wait(interval)

    def on_gpu_samples(self, message: GpuSamples) -> None:
        self.state.readings = message.readings
        gpu = self.state.tracker.training_gpu(message.readings)
        self._training_watts = gpu.power_w if gpu is not None else None
        self.state.tracker.add_readings(message.readings, message.at - self._t0)
        screen = self.shown("hardware")
        if isinstance(screen, HardwareScreen):
            screen.show_readings()
        if self.state.tracker.active or self.shown("train"):
            self._run_changed()

    def on_config_changed(self, message: ConfigChanged) -> None:
        self.state.config_problems = message.problems
        if message.config is not None and message.config != self.state.config:
            self.state.config = message.config
            self._schedule_estimates()
        self._refresh_hardware()

    def _schedule_estimates(self) -> None:
        if self._debounce_timer is not None:
            self._debounce_timer.stop()
        self._debounce_timer = self.set_timer(DEBOUNCE_S, self._start_estimates)

    def _start_estimates(self) -> None:
        self._debounce_timer = None
        cfg = self.state.config
        if self.state.hardware is not None:  # otherwise the report's arrival starts the plan
            self._plan(cfg, self.state.hardware)
        key = (cfg.data, cfg.model.name, cfg.model.revision, cfg.model.trust_remote_code)
        if key != self._preview_key:  # reading and tokenizing the data is slow: only when it can differ
            self._preview_key = key
            self.state.preview_note = ""
            self._preview(cfg)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False, name="vram-plan")
    def _plan(self, cfg: Config, hardware: HardwareView) -> None:
        try:
            plan = self.services.plan_vram(cfg, hardware)
        except (ImportError, AttributeError):
            plan = PlanView("unknown", "VRAM estimate unavailable (the memory planner is not installed)")
        except Exception as exc:
            plan = PlanView("unknown", f"VRAM estimate unavailable: {_error_text(exc)}")
        self.post_message(PlanReady(cfg, plan))

    def on_plan_ready(self, message: PlanReady) -> None:
        if message.config != self.state.config:  # an older config's answer arriving late
            return
        self.state.plan, self.state.plan_note = message.plan, ""
        self._refresh_hardware()
        screen = self.shown("config")
        if isinstance(screen, ConfigScreen):
            screen.refresh_view()

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False, name="data-preview")
    def _preview(self, cfg: Config) -> None:
        try:
            self.post_message(PreviewReady(cfg, self.services.preview_data(cfg)))
        except (ImportError, AttributeError):
            self.post_message(PreviewReady(cfg, None, "data preview unavailable (the data engine is not installed)"))
        except Exception as exc:
            self.post_message(PreviewReady(cfg, None, f"cannot read the data: {_error_text(exc)}"))

    def on_preview_ready(self, message: PreviewReady) -> None:
        if message.config.data != self.state.config.data:
            return
        self.state.preview, self.state.preview_note = message.preview, message.error
        screen = self.shown("config")
        if isinstance(screen, ConfigScreen):
            screen.refresh_view()

    def _refresh_hardware(self) -> None:
        screen = self.shown("hardware")
        if isinstance(screen, HardwareScreen):
            screen.refresh_view()

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False, name="list-runs")
    def _list_runs(self) -> None:
        try:
            self.post_message(RunsListed(self.services.list_runs()))
        except Exception as exc:
            self.post_message(RunsListed([], _error_text(exc)))


def _error_text(exc: BaseException | None) -> str:
    """Our own errors already say what to do; anything else is a bug, shown with its type."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, HumanlikeError):
        return str(exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


def make_app(services: Services | None = None, config: Config | None = None, config_path: Path | None = None,
             *, initial_screen: str = "hardware", startup_note: str = "") -> WorkbenchApp:
    """The one way to build the app: production passes nothing, tests pass fakes."""
    return WorkbenchApp(services or production_services(), config or cfgmod.load_preset(DEFAULT_PRESET),
                        config_path or paths.config_dir() / "config.toml", initial_screen=initial_screen,
                        startup_note=startup_note)


def initial_config(args: argparse.Namespace) -> tuple[Config, Path, str]:
    """--config/--preset if given; else the config saved from the Config screen; else the default preset.
    A broken saved config does not stop the app: it opens with the preset and says why."""
    default_path = paths.config_dir() / "config.toml"
    overrides = getattr(args, "overrides", None) or []
    if getattr(args, "config", None):
        return cfgmod.apply_overrides(cfgmod.load_config(args.config), overrides), Path(args.config), ""
    if getattr(args, "preset", None):
        return cfgmod.apply_overrides(cfgmod.load_preset(args.preset), overrides), default_path, ""
    note = ""
    cfg = None
    if default_path.exists():
        try:
            cfg = cfgmod.load_config(default_path)
        except ConfigError as exc:
            note = f"{default_path} has problems, opened the {DEFAULT_PRESET} preset instead:\n{exc}"
    if cfg is None:
        cfg = cfgmod.load_preset(DEFAULT_PRESET)
    return cfgmod.apply_overrides(cfg, overrides), default_path, note


def run_app(args: argparse.Namespace) -> int:
    cfg, path, note = initial_config(args)
    app = make_app(config=cfg, config_path=path, startup_note=note)
    code = app.run()
    return code or 0
