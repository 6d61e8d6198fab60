"""What the Train screen shows, kept on the main thread: histories for the charts, the latest
numbers, the log and the sample answers. The app feeds it engine events and GPU readings in its
message handlers; the screen only reads it. Pure Python, so it is tested without a terminal."""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

from humanlike_tui import events as ev
from humanlike_tui.config import Config
from humanlike_tui.energy import EnergyMeter
from humanlike_tui.formatting import clock_stamp
from humanlike_tui.protocols import GpuReading, MemoryReading
from humanlike_tui.ui.event_text import describe

ACTIVE = ("starting", "training", "stopping", "pausing")
SERIES = ("train", "evals", "lrs", "speeds", "grad_norms", "reward_margins", "reward_accuracies")  # (step, value)
LOG_LINES = 2000
VRAM_POINTS = 3600  # an hour at one reading a second; older points scroll off the chart


@dataclass(frozen=True)
class VramPoint:
    t: float  # seconds since the run began
    used: int
    reserved: int | None
    total: int


@dataclass(frozen=True)
class RamPoint:
    t: float  # seconds since the run began
    process: int  # this process's resident memory (the training runs in it)
    total: int | None


@dataclass(frozen=True)
class SampleBlock:
    step: int
    eval_loss: float
    answers: tuple[tuple[str, str], ...]


@dataclass
class RunTracker:
    status: str = "idle"  # idle | starting | training | stopping | pausing | paused | stopped | finished | failed
    config: Config | None = None
    run_id: str = ""
    run_dir: str = ""
    method: str = ""
    device: str = ""
    total_steps: int = 0
    step: int = 0
    start_step: int = 0
    phase: str = ""
    lr: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    train: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    # Per step, for the charts beside the loss: learning rate, tokens/s, gradient norm, and DPO's implicit
    # reward margin and accuracy (steps of the dpo phase only).
    lrs: list[tuple[int, float]] = field(default_factory=list)
    speeds: list[tuple[int, float]] = field(default_factory=list)
    grad_norms: list[tuple[int, float]] = field(default_factory=list)
    reward_margins: list[tuple[int, float]] = field(default_factory=list)
    reward_accuracies: list[tuple[int, float]] = field(default_factory=list)
    vram: deque[VramPoint] = field(default_factory=lambda: deque(maxlen=VRAM_POINTS))
    ram: deque[RamPoint] = field(default_factory=lambda: deque(maxlen=VRAM_POINTS))  # charted on the CPU
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    log_total: int = 0  # lines ever logged; the screen appends only what it has not shown yet
    samples: list[SampleBlock] = field(default_factory=list)
    checkpoint: str = ""
    adapter_dir: str = ""
    failure: str = ""
    # Paused between runs and while a run is paused, so an idle GPU is not billed to the training.
    energy: EnergyMeter = field(default_factory=EnergyMeter)
    gpu_index: int = 0
    has_gpu: bool = False
    t0: float = 0.0
    reserved_from_steps: int | None = None
    version: int = 0  # bumped on every change, so the screen redraws only when needed

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def can_resume(self) -> bool:
        return self.status in ("paused", "stopped") and bool(self.run_id)

    def begin(self, cfg: Config, now: float, *, resume: str | None = None) -> None:
        """A new run, or the paused/stopped run of this session continued (history kept: same curve)."""
        continuing = resume is not None and resume == self.run_id
        if not continuing:
            self._reset()
            self.t0 = now
            self.total_steps = cfg.train.max_steps
        self.config = cfg
        self.failure = ""
        self.status = "starting"
        self.add_log(now, f"resuming run {resume}" if resume else "starting a new run (loading the model ...)")

    def _reset(self) -> None:
        """Fresh figures for a new run; the log and version run on across runs (the log pane keeps them)."""
        fresh = RunTracker()
        for f in dataclasses.fields(self):
            if f.name not in ("log", "log_total", "version"):
                setattr(self, f.name, getattr(fresh, f.name))

    def add_log(self, now: float, text: str) -> None:
        """A log line stamped with the time since the workbench started ('+03:12 ...'): the sign says it is
        an elapsed time, not a clock time."""
        self.log.append(f"+{clock_stamp(now)} {text}")
        self.log_total += 1
        self.version += 1

    def apply(self, event: ev.Event, now: float) -> None:
        self._update(event)
        line = describe(event, on_gpu=self.has_gpu)
        if line is not None:
            self.add_log(now, line)
        self.version += 1

    def _update(self, event: ev.Event) -> None:
        match event:
            case ev.RunStarted():
                # Points past the checkpoint we resume from were never kept by the engine: drop them.
                for name in SERIES:
                    setattr(self, name, [p for p in getattr(self, name) if p[0] <= event.start_step])
                self.status = "training"
                self.run_id, self.run_dir, self.method = event.run_id, event.run_dir, event.method
                self.device, self.total_steps, self.start_step = event.device, event.total_steps, event.start_step
                self.step = max(self.step, event.start_step)
                # The engine names the device ("NVIDIA ... (bf16)" or "CPU (fp32)") and trains on torch's
                # current GPU, which is the first one the process sees.
                self.has_gpu = not event.device.lower().startswith("cpu")
            case ev.Step():
                self.step, self.total_steps, self.phase = event.step, event.total_steps, event.phase
                self.lr, self.tokens_per_s = event.lr, event.tokens_per_s
                self.elapsed_s, self.eta_s = event.elapsed_s, event.eta_s
                self.train.append((event.step, event.loss))
                self.lrs.append((event.step, event.lr))
                self.speeds.append((event.step, event.tokens_per_s))
                self.grad_norms.append((event.step, event.metrics.get("grad_norm", event.grad_norm)))
                if "reward_margin" in event.metrics:
                    self.reward_margins.append((event.step, event.metrics["reward_margin"]))
                if "reward_accuracy" in event.metrics:
                    self.reward_accuracies.append((event.step, event.metrics["reward_accuracy"]))
                if event.memory_reserved:
                    self.reserved_from_steps = event.memory_reserved
            case ev.Eval():
                self.evals.append((event.step, event.eval_loss))
                if event.samples:
                    self.samples.append(SampleBlock(event.step, event.eval_loss, tuple(event.samples)))
            case ev.CheckpointSaved():
                self.checkpoint = event.path
            case ev.Stopped():
                self.status = "paused" if event.paused else "stopped"
                self.run_id = event.run_id or self.run_id
                self.checkpoint = event.checkpoint or self.checkpoint
                self.energy.pause()
            case ev.Finished():
                self.status = "finished"
                self.adapter_dir = event.adapter_dir
                self.energy.pause()
            case ev.Failed():
                self.status = "failed"
                self.failure = event.reason
                self.run_id = event.run_id or self.run_id
                self.energy.pause()

    def add_history(self, train: list[tuple[int, float]], evals: list[tuple[int, float]]) -> None:
        """An earlier run's curve, read from disk, put before whatever this session has seen of it."""
        if not self.train:
            self.train = list(train)
        if not self.evals:
            self.evals = list(evals)
        self.version += 1

    def rename(self, old: str, new: str) -> bool:
        """The run was renamed in the store: resume and the status line use the new name (and folder)."""
        if not self.run_id or self.run_id != old:
            return False
        self.run_id = new
        for name in ("run_dir", "adapter_dir", "checkpoint"):
            path = getattr(self, name)
            parts = path.split("/")
            if old in parts:
                parts[parts.index(old)] = new
                setattr(self, name, "/".join(parts))
        self.version += 1
        return True

    def request(self, what: str, now: float) -> None:
        """The user pressed Stop or Pause: shown at once, while the engine finishes its step and saves."""
        self.status = {"stop": "stopping", "pause": "pausing"}[what]
        verb = "stopping" if what == "stop" else "pausing"
        self.add_log(now, f"{verb}: finishing the current step and saving a checkpoint ...")

    def worker_ended(self, now: float, status: str | None, error: str | None) -> None:
        """The training thread returned or raised. Events normally said it already; this covers the rest."""
        if error is not None:
            if self.status != "failed":
                self.status, self.failure = "failed", error
                self.add_log(now, f"FAILED: {error}")
        elif status and self.status in ACTIVE:
            self.status = status
        self.energy.pause()
        self.version += 1

    def training_gpu(self, readings: list[GpuReading] | None) -> GpuReading | None:
        if not readings:
            return None
        return next((r for r in readings if r.index == self.gpu_index), readings[0])

    def add_readings(self, readings: list[GpuReading], now: float, memory: MemoryReading | None = None) -> None:
        # The run's memory over time: while it runs and while it is paused (to show what the pause freed),
        # not after it ended (a finished 8 s run's chart ran on to 686 s, the run squeezed into its edge).
        if not (self.active or self.status == "paused"):
            return
        if memory is not None:
            self.ram.append(RamPoint(now - self.t0, memory.process_bytes, memory.total_bytes))
            self.version += 1
        gpu = self.training_gpu(readings)
        if gpu is None:
            return
        reserved = gpu.reserved_bytes if gpu.reserved_bytes is not None else self.reserved_from_steps
        self.vram.append(VramPoint(now - self.t0, gpu.used_bytes, reserved, gpu.total_bytes))
        if self.status == "training" and self.has_gpu and gpu.power_w is not None:
            self.energy.add(now, gpu.power_w)
        self.version += 1

