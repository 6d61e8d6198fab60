"""Everything the screens draw, in one place on the main thread. The app's message handlers write
it; screens read it when they are shown and when the app tells them something changed. Screens
never reach into the app, and no widget reads global settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from humanlike_tui.config import Config
from humanlike_tui.ui.run_state import RunTracker
from humanlike_tui.ui.services import GpuReading, HardwareView, PlanView


@dataclass
class WorkbenchState:
    config: Config  # the last valid config from the Config screen (what Start trains)
    config_path: Path  # where Save/Load point by default (the user config dir)
    config_problems: list[str] = field(default_factory=list)  # non-empty: the form holds an invalid config
    hardware: HardwareView | None = None  # None until the probe (seconds: it imports torch) answers
    hardware_error: str = ""
    readings: list[GpuReading] | None = None  # None until the first reading
    plan: PlanView | None = None
    plan_note: str = ""
    preview: Any = None
    preview_note: str = ""
    tracker: RunTracker = field(default_factory=RunTracker)
