"""The app's background work beside training: the hardware probe, GPU polling, the VRAM plan and the
data preview for the config being edited, and the list of runs to resume. Each runs in a thread
worker that talks back only through post_message; the handlers here write WorkbenchState on the main
thread and tell the visible screen to redraw.

A mixin of WorkbenchApp (app.py), which provides `services`, `state`, `shown()`, `now()` and
`_run_changed()`; split out so the app module keeps to the screens, keys and training.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, cast

from textual import work
from textual.timer import Timer
from textual.worker import get_current_worker

from humanlike_tui.config import Config
from humanlike_tui.formatting import error_text
from humanlike_tui.protocols import HardwareView, PlanView, Services
from humanlike_tui.ui.messages import ConfigChanged, GpuSamples, HardwareReport, PlanReady, PreviewReady, RunsListed
from humanlike_tui.ui.screens.hardware import HardwareScreen
from humanlike_tui.ui.state import WorkbenchState

if TYPE_CHECKING:  # imported when first shown (app.SCREENS)
    from humanlike_tui.ui.screens.config import ConfigScreen

DEBOUNCE_S = 0.4  # wait for the user to stop typing before estimating VRAM or reading the data


class BackgroundWork:
    services: Services
    state: WorkbenchState

    def _init_background(self) -> None:
        self._shutting_down = threading.Event()  # tells the GPU polling thread to end
        self._debounce_timer: Timer | None = None
        self._preview_key: object = None
        # The newest power reading of the training GPU. The engine's thread reads it (a float: an atomic
        # read) to keep the run's energy in its metadata; only this thread writes it.
        self._training_watts: float | None = None

    def _start_background(self) -> None:
        self._probe_hardware()
        if self.services.gpu_interval is not None:
            self._poll_gpus(self.services.gpu_interval)
        self._schedule_estimates()

    def _stop_background(self) -> None:
        self._shutting_down.set()
        if self._debounce_timer is not None:
            self._debounce_timer.stop()

    # ---- hardware and GPU readings ----

    @work(thread=True, group="hardware", exit_on_error=False, name="hardware-probe")
    def _probe_hardware(self) -> None:
        try:
            report, error = self.services.hardware.probe(), ""
        except Exception as exc:  # a broken probe must not stop the app: the rest works without it
            report, error = None, f"hardware probe failed: {error_text(exc)}"
        self.post_message(HardwareReport(report, error))

    def on_hardware_report(self, message: HardwareReport) -> None:
        self.state.hardware, self.state.hardware_error = message.report, message.error
        if message.report is None:
            self.state.plan_note = "no VRAM estimate without a hardware report"
        self._refresh_hardware()
        self._start_estimates()  # the plan was waiting for the report

    @work(thread=True, group="gpu", exit_on_error=False, name="gpu-poll")
    def _poll_gpus(self, interval: float) -> None:
        """The GPUs and the RAM about once a second. A GPU sampler that fails (no driver, NVML gone) is
        not asked again: no GPUs from then on; the RAM is still read (the CPU's chart needs it)."""
        worker = get_current_worker()
        gpus_ok = True
        while not worker.is_cancelled and not self._shutting_down.is_set():
            readings: list = []
            if gpus_ok:
                try:
                    readings = self.services.hardware.sample()
                except Exception:
                    gpus_ok = False
            try:
                memory = self.services.hardware.memory()
            except Exception:  # psutil missing or refused: the charts do without
                memory = None
            self.post_message(GpuSamples(readings, self.services.clock(), memory))
            self._shutting_down.wait(interval)

    def on_gpu_samples(self, message: GpuSamples) -> None:
        self.state.readings = message.readings
        if message.memory is not None:
            self.state.memory = message.memory
        gpu = self.state.tracker.training_gpu(message.readings)
        self._training_watts = gpu.power_w if gpu is not None else None
        self.state.tracker.add_readings(message.readings, message.at - self._t0, message.memory)
        screen = self.shown("hardware")
        if isinstance(screen, HardwareScreen):
            screen.show_readings()
        if self.state.tracker.active or self.shown("train"):
            self._run_changed()

    def _refresh_hardware(self) -> None:
        screen = self.shown("hardware")
        if isinstance(screen, HardwareScreen):
            screen.refresh_view()

    # ---- the VRAM plan and the data preview of the config being edited ----

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
            plan = self.services.hardware.plan(cfg, hardware)
        except (ImportError, AttributeError):
            plan = PlanView("unknown", "VRAM estimate unavailable (the memory planner is not installed)")
        except Exception as exc:
            plan = PlanView("unknown", f"VRAM estimate unavailable: {error_text(exc)}")
        self.post_message(PlanReady(cfg, plan))

    def on_plan_ready(self, message: PlanReady) -> None:
        if message.config != self.state.config:  # an older config's answer arriving late
            return
        self.state.plan, self.state.plan_note = message.plan, ""
        self._refresh_hardware()
        screen = cast("ConfigScreen | None", self.shown("config"))
        if screen is not None:
            screen.refresh_view()

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False, name="data-preview")
    def _preview(self, cfg: Config) -> None:
        try:
            self.post_message(PreviewReady(cfg, self.services.hardware.preview(cfg)))
        except (ImportError, AttributeError):
            self.post_message(PreviewReady(cfg, None, "data preview unavailable (the data engine is not installed)"))
        except Exception as exc:
            self.post_message(PreviewReady(cfg, None, f"cannot read the data: {error_text(exc)}"))

    def on_preview_ready(self, message: PreviewReady) -> None:
        if message.config.data != self.state.config.data:
            return
        self.state.preview, self.state.preview_note = message.preview, message.error
        screen = cast("ConfigScreen | None", self.shown("config"))
        if screen is not None:
            screen.refresh_view()

    # ---- runs to resume (the picker opens when the list arrives) ----

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False, name="list-runs")
    def _list_runs(self) -> None:
        try:
            runs = self.services.library.resumable()
        except Exception as exc:
            self.post_message(RunsListed([], error_text(exc)))
            return
        try:  # not resumable, but there: the picker says so ('No earlier runs found' beside finished runs)
            finished = [info.name for info in self.services.library.adapters() if info.complete]
        except Exception:
            finished = []
        self.post_message(RunsListed(runs, finished=finished))
