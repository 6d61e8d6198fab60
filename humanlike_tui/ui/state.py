"""Everything the screens draw, in one place on the main thread. The app's message handlers write
it; screens read it when they are shown and when the app tells them something changed. Screens
never reach into the app or into each other, and no widget reads global settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from humanlike_tui.config import Config
from humanlike_tui.protocols import DataPreview, Generator, GpuReading, HardwareView, MemoryReading, PlanView
from humanlike_tui.ui.run_state import RunTracker


@dataclass
class ChatModel:
    """The one chat model in memory: which adapter it holds and its generator. The Chat screen sets it
    when a load ends and clears it before closing the model; the scorecard borrows the generator when
    it holds the adapter to score, instead of loading a second base."""

    name: str | None = None
    generator: Generator | None = None

    def holding(self, name: str) -> Generator | None:
        """The generator if it holds adapter `name`, else None."""
        return self.generator if self.generator is not None and self.name == name else None


@dataclass
class WorkbenchState:
    config: Config  # the last valid config from the Config screen (what Start trains)
    config_path: Path  # where Save/Load point by default (the user config dir)
    config_problems: list[str] = field(default_factory=list)  # non-empty: the form holds an invalid config
    hardware: HardwareView | None = None  # None until the probe (seconds: it imports torch) answers
    hardware_error: str = ""
    readings: list[GpuReading] | None = None  # None until the first reading
    memory: MemoryReading | None = None  # RAM now (None until the first reading)
    plan: PlanView | None = None
    plan_note: str = ""
    preview: DataPreview | None = None
    preview_note: str = ""
    tracker: RunTracker = field(default_factory=RunTracker)
    chat: ChatModel = field(default_factory=ChatModel)
