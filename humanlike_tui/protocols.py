"""What the workbench needs of the engine, as typed service contracts: training, generation, the run
library, the scorecard and the hardware. The screens and widgets know only these protocols and the
records they trade in (below and in records.py); the UI's service adapters (ui/services.py,
ui/chat_services.py) implement them over the real engine, importing it only inside their methods,
and the tests' doubles (tests/support/fakes.py, chat_fakes.py) implement them with scripts.

Stdlib and core only: importing this module loads neither torch nor textual.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from humanlike_tui import paths
from humanlike_tui.config import Config

if TYPE_CHECKING:  # annotations only: the workbench's first frame does not wait for these modules
    from humanlike_tui.events import Event
    from humanlike_tui.records import AdapterInfo, Exchange, GenSettings, PickDraft, Turn

Emit = Callable[["Event"], None]
Log = Callable[[str], None]  # one progress line for people ("loading ...")
PowerReader = Callable[[], float | None]  # the training GPU's watts now, or None
LossHistory = tuple[list[tuple[int, float]], list[tuple[int, float]]]  # (train points, eval points)


# ---- the records the UI draws (the adapters translate the engine's objects into these) ----

@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment (bytes, percent, degrees C, watts); None where the driver does not say."""

    index: int
    name: str
    used_bytes: int
    total_bytes: int
    reserved_bytes: int | None = None  # torch's caching allocator in this process
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None


@dataclass(frozen=True)
class HardwareView:
    """The hardware report: a nested dict for the table, advice lines, GPU names by index, and the
    engine's own report object (handed back to the VRAM planner, which reads it)."""

    table: dict[str, Any]
    advice: tuple[str, ...] = ()
    gpu_names: dict[int, str] = field(default_factory=dict)
    raw: Any = None


@dataclass(frozen=True)
class PlanView:
    """The memory plan for a config as the screens show it: VRAM on a GPU, RAM on the CPU (where it also
    says how long the run would take: `slow` when that is more than a few hours)."""

    verdict: str  # fits | tight | does not fit | unknown
    headline: str
    lines: tuple[str, ...] = ()
    device: str = "cuda"  # cuda | cpu
    slow: str = ""  # on the CPU: 'about 58 days for 3,000 steps at ~1.6 tokens/s on 2 cores' when impractical


@dataclass(frozen=True)
class MemoryReading:
    """This machine's RAM now (bytes): what this process holds (the training runs in it), free, total."""

    process_bytes: int
    available_bytes: int | None = None
    total_bytes: int | None = None


@dataclass(frozen=True)
class ModelChoice:
    """A model the Config screen's picker offers: what model.name becomes, and what a person choosing needs."""

    name: str  # a hub id or a builtin name
    label: str
    params_b: float  # billions of parameters (0 when tiny)
    licence: str
    gated: bool  # the hub asks to accept terms (and `hf auth login`) first
    offline: bool = False  # works without the hub (a builtin)


@dataclass(frozen=True)
class DownloadView:
    """How far a model download is (bytes; rate in bytes/s; eta None while unknown)."""

    done_bytes: int
    total_bytes: int
    bytes_per_s: float
    eta_s: float | None
    finished: bool = False


@dataclass(frozen=True)
class RunChoice:
    """An earlier run that can be resumed, with its saved config (resume continues under it)."""

    run_id: str
    label: str
    config: dict[str, Any] | None = None


class DataPreview(Protocol):
    """The data as the model will see it: row count, token lengths against max_length, examples."""

    @property
    def rows(self) -> int: ...
    @property
    def lengths(self) -> Sequence[int]: ...
    @property
    def max_length(self) -> int: ...
    @property
    def dropped_share(self) -> float: ...
    @property
    def examples(self) -> Sequence[str]: ...


class RunOutcome(Protocol):
    """How a training call ended: finished | stopped | paused (a failure raises instead)."""

    @property
    def status(self) -> str: ...


# ---- the services ----

class TrainingService(Protocol):
    def run(self, cfg: Config | None, emit: Emit, stop: threading.Event | None = None, *,
            resume: str | None = None, pause: threading.Event | None = None,
            power: PowerReader | None = None) -> RunOutcome:
        """Train `cfg` (or resume run `resume`), emitting events from the calling thread; returns when
        finished, or after a checkpoint when `stop` or `pause` is set; raises (after emitting Failed) on
        an error. `power` gives the training GPU's watts, integrated into the run's energy figure."""
        ...


class Generator(Protocol):
    """One base model with an adapter on it, answering as the base (adapter off) and as the adapter."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> Config: ...

    def answer_both(self, prompt: str, history: Sequence[Turn], settings: GenSettings, emit: Emit,
                    stop: threading.Event | None = None, sides: Sequence[str] = ("base", "adapter"),
                    system: str | None = None) -> Exchange:
        """Base then adapter (or only `sides`), each streamed as AnswerStarted, AnswerText..., AnswerDone;
        raises GenerationError (after that side's AnswerStarted) when generation fails. `system`: the
        persona (None: the run's data.system_prompt)."""
        ...

    def describe(self) -> dict[str, Any]: ...  # base_model, quant, device, ...
    def memory(self) -> dict[str, Any]: ...  # bytes, lora_bytes, ...
    def close(self) -> None: ...


class ServerHandle(Protocol):
    """A running local OpenAI-compatible server over a loaded Generator."""

    url: str  # e.g. http://127.0.0.1:8000/v1

    def stop(self) -> None: ...


class GenerationService(Protocol):
    def open(self, name: str, log: Log) -> Generator:
        """Load run `name`'s base model and adapter (slow: call from a worker thread)."""
        ...

    def serve(self, generator: Generator, log: Log) -> ServerHandle:
        """Serve `generator` on 127.0.0.1 (port 8000, or any free port when that one is taken, said through
        `log` for the person)."""
        ...


class LibraryService(Protocol):
    """The runs on disk: the Adapters screen's table and actions, and what Resume picks from."""

    def adapters(self) -> list[AdapterInfo]: ...
    def details(self, name: str) -> dict[str, Any]: ...  # config, checkpoints, data counts, energy ...
    def rename(self, old: str, new: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def export(self, name: str, folder: Path, dtype: str, log: Log, fmt: str = "safetensors", quant: str = "q8_0",
               merge_into: str = "trained") -> Path: ...  # base + adapter merged (adapters export's choices)
    def check_name(self, name: str) -> str: ...  # raises, with the reason, for a name a run cannot have
    def resumable(self) -> list[RunChoice]: ...  # a checkpoint on disk, neither finished nor running
    def history(self, run_id: str) -> LossHistory: ...  # the loss curve so far, continued on resume


class ScorecardService(Protocol):
    def score(self, name: str, log: Log, loaded: Generator | None = None) -> dict[str, Any]:
        """Score run `name`'s adapter against its base (long: a worker thread). `loaded`, when it holds
        that adapter, lends its model instead of loading a second base. Returns Scorecard.to_dict()."""
        ...

    def last(self, name: str) -> dict[str, Any] | None: ...  # the last saved scorecard (cheap)
    def answers(self, name: str) -> list[dict[str, Any]] | None: ...  # that card's every answer; None: none kept


class PicksService(Protocol):
    """The Chat screen's picks (engine/storage/picks.py): one JSON-lines collection per name."""

    def add(self, collection: str, draft: PickDraft) -> int: ...  # saved at once; returns the collection's count
    def collections(self) -> list[tuple[str, int]]: ...  # (name, picks), newest first


class ModelService(Protocol):
    def choices(self) -> list[ModelChoice]: ...  # the curated list (engine/models/catalogue.py) and the builtins

    def download(self, name: str, revision: str | None, progress: Callable[[DownloadView], None],
                 stop: threading.Event) -> str:
        """Fetch hub model `name` into the cache (resuming an earlier try); returns its folder. Raises when
        cancelled (stop set: the fetched part is kept) or when the hub refuses. Slow: call from a worker."""
        ...


class HardwareService(Protocol):
    def probe(self) -> HardwareView: ...  # seconds (imports torch)
    def sample(self) -> list[GpuReading]: ...  # about once a second, from the polling worker
    def memory(self) -> MemoryReading: ...  # RAM now, from the same worker (cheap: no torch)
    def plan(self, cfg: Config, hardware: HardwareView) -> PlanView: ...  # will this config fit?
    def preview(self, cfg: Config) -> DataPreview: ...  # reads and tokenizes the data


@dataclass
class Services:
    """Everything the workbench is handed: production wires the engine (ui/app.py:
    production_services), tests wire scripted doubles. The clocks, folders and the GPU polling
    interval are here too, so tests pin them."""

    training: TrainingService
    hardware: HardwareService
    library: LibraryService
    generation: GenerationService
    scorecard: ScorecardService
    models: ModelService | None = None  # the Config screen's model picker (None: no picker)
    picks: PicksService | None = None  # the Chat screen's pick keys and the Adapters screen's picks panel
    clock: Callable[[], float] = time.monotonic  # run timing and chart times
    wall_clock: Callable[[], float] = time.time  # transcript timestamps
    gpu_interval: float | None = 1.0  # None: no polling worker (snapshot tests feed readings by hand)
    transcripts_dir: Callable[[], Path] = field(default=lambda: paths.config_dir() / "transcripts")
    exports_dir: Callable[[], Path] = field(default=lambda: paths.data_dir() / "exports")
