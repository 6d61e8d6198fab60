"""Sharing the GPU with a training run: before the Chat or the Adapters screen loads a model on the
GPU a run is using, ask whether to pause the run first (its checkpoint saved, the GPU freed), go
ahead anyway or cancel; what waits for the pause runs once the run has let go.

A mixin of WorkbenchApp (app.py), which provides `state`, `now()`, `_run_changed()`, `_pause_run` and
`_after_gpu_free`; split out so the app module keeps to the screens, keys and training.
"""

from __future__ import annotations

import threading
from typing import Callable

from humanlike_tui.ui.messages import GpuWanted
from humanlike_tui.ui.screens.dialogs import GpuShareDialog
from humanlike_tui.ui.state import WorkbenchState


class GpuSharing:
    state: WorkbenchState
    _pause_run: threading.Event
    _after_gpu_free: list[Callable[[], None]]

    def training_holds_gpu(self) -> bool:
        """A run is (or is about to be) training on a GPU: loading another model there may starve it."""
        t = self.state.tracker
        if not t.active:
            return False
        if t.device:  # RunStarted said where it trains
            return t.has_gpu
        hardware = self.state.hardware  # still loading: it will be on the GPU if there is one
        return bool(hardware is not None and hardware.gpu_names)

    def on_gpu_wanted(self, message: GpuWanted) -> None:
        self.confirm_gpu_share(message.what, message.proceed, message.cancelled)

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
