"""Messages the app's thread workers post to the main thread, and the requests screens send up to the
app. post_message is the only thing a worker thread touches: it is thread-safe and does not wait for
a repaint. Dataclasses, as Textual allows (Message.__post_init__ sets a message up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from textual.message import Message

from humanlike_tui.config import Config
from humanlike_tui.events import Event
from humanlike_tui.protocols import (DataPreview, GpuReading, HardwareView, LossHistory, MemoryReading, PlanView,
                                     RunChoice)


class NewestOnly(Message):
    """A message of which only the newest matters (a reading, a progress line): a queued one of the
    same type is replaced rather than handled late."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, type(self))


# ---- from the app's workers ----

@dataclass
class EngineEvent(Message):
    """One engine event. Never merged: every Step is a point on the loss curve."""

    event: Event


@dataclass
class RunHistory(Message):
    """The loss history of an earlier run being resumed, read from its folder before training starts."""

    run_id: str
    history: LossHistory


@dataclass
class GpuSamples(NewestOnly):
    """The latest reading of every GPU. If the UI falls behind, only the newest matters for the
    bars; the chart loses a point, which at one a second nobody sees."""

    readings: list[GpuReading]
    at: float
    memory: MemoryReading | None = None  # the machine's RAM and this process's share, at the same moment


@dataclass
class HardwareReport(Message):
    report: HardwareView | None
    error: str = ""


@dataclass
class PlanReady(Message):
    config: Config
    plan: PlanView


@dataclass
class PreviewReady(Message):
    config: Config
    preview: DataPreview | None
    error: str = ""


@dataclass
class RunsListed(Message):
    runs: list[RunChoice]
    error: str = ""
    finished: list[str] = field(default_factory=list)  # finished runs (nothing left to resume)


# ---- from the screens, up to the app (they bubble: the app handles them) ----

@dataclass
class ConfigChanged(Message):
    """The Config screen holds a new valid config (or an invalid one: config None, with problems)."""

    config: Config | None
    problems: list[str]


@dataclass
class OpenInChat(Message):
    """Show the Chat screen with this adapter (the Adapters screen's 'Open in Chat')."""

    name: str


@dataclass
class RunRenamed(Message):
    """A run was renamed in the store (the Adapters screen): whoever shows it by name follows."""

    old: str
    new: str


@dataclass
class RunDeleted(Message):
    """A run was deleted from the store (the Adapters screen): the Chat must not answer with it any more."""

    name: str


@dataclass
class ResumeRun(Message):
    """Resume this run, picked elsewhere (the Adapters screen), as if picked in the run picker."""

    run_id: str
    config: dict[str, Any] | None = None


@dataclass
class GpuWanted(Message):
    """A screen is about to load a model: `proceed` now if no run trains on the GPU, else once the
    person has chosen (pause the run first, go ahead, or cancel: then `cancelled`)."""

    what: str  # "Opening x for chat": the question's subject
    proceed: Callable[[], None]
    cancelled: Callable[[], None] | None = None


@dataclass
class RemoteCodeWanted(Message):
    """Loading failed because the model's config asks to run its own code (errors.RemoteCodeRefused):
    the app asks the person, and on yes allows it for this model and calls `proceed` (the load again)."""

    model_name: str
    proceed: Callable[[], None]
