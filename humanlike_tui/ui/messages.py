"""Messages the app's thread workers post to the main thread. post_message is the only thing a
worker thread touches: it is thread-safe and does not wait for a repaint."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from humanlike_tui.config import Config
from humanlike_tui.events import Event
from humanlike_tui.ui.services import GpuReading, HardwareView, PlanView, RunChoice


class NewestOnly(Message):
    """A message of which only the newest matters (a reading, a progress line): a queued one of the
    same type is replaced rather than handled late."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, type(self))


class EngineEvent(Message):
    """One engine event. Never merged: every Step is a point on the loss curve."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class RunHistory(Message):
    """The loss history of an earlier run being resumed, read from its folder before training starts."""

    def __init__(self, run_id: str, train: list[tuple[int, float]], evals: list[tuple[int, float]]) -> None:
        super().__init__()
        self.run_id = run_id
        self.train = train
        self.evals = evals


class GpuSamples(NewestOnly):
    """The latest reading of every GPU. If the UI falls behind, only the newest matters for the
    bars; the chart loses a point, which at one a second nobody sees."""

    def __init__(self, readings: list[GpuReading], at: float) -> None:
        super().__init__()
        self.readings = readings
        self.at = at


class HardwareReport(Message):
    def __init__(self, report: HardwareView | None, error: str = "") -> None:
        super().__init__()
        self.report = report
        self.error = error


class PlanReady(Message):
    def __init__(self, config: Config, plan: PlanView) -> None:
        super().__init__()
        self.config = config
        self.plan = plan


class PreviewReady(Message):
    def __init__(self, config: Config, preview: Any, error: str = "") -> None:
        super().__init__()
        self.config = config
        self.preview = preview
        self.error = error


class RunsListed(Message):
    def __init__(self, runs: list[RunChoice], error: str = "") -> None:
        super().__init__()
        self.runs = runs
        self.error = error


class ConfigChanged(Message):
    """The Config screen holds a new valid config (or an invalid one: config None, with problems)."""

    def __init__(self, config: Config | None, problems: list[str]) -> None:
        super().__init__()
        self.config = config
        self.problems = problems
