"""Scripted doubles of the engine's services (humanlike_tui.protocols): the pilot and snapshot tests
and the README screenshot run the real app against these, so they are fast, need no GPU and draw the
same frame every time. Nothing here imports torch. tests/engine/test_fake_contract.py runs one
scenario through FakeEngine and the real engine and compares what they emit, so the double cannot drift.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from humanlike_tui import events as ev
from humanlike_tui.config import Config
from humanlike_tui.errors import TrainingError
from humanlike_tui.protocols import (GenerationService, GpuReading, HardwareView, MemoryReading, PlanView, PowerReader,
                                     RunChoice, ScorecardService, Services)
from support.chat_fakes import FIXED_NOW, FakeGeneration, FakeLibrary, FakeScorecard, fake_loss

GIB = 1024**3

FIXED_READINGS = [GpuReading(index=0, name="GPU 0", used_bytes=int(5.6 * GIB),
                             total_bytes=8 * GIB, reserved_bytes=int(4.9 * GIB), util_pct=87.0, temp_c=68.0,
                             power_w=95.0)]


def ramp_readings(second: int) -> list[GpuReading]:
    """A GPU filling up as a run loads its model, then steady with a little wiggle (charts that look real)."""
    load = min(1.0, second / 6)
    used = 0.6 + 5.0 * load + 0.05 * math.sin(second)
    reserved = 4.6 * load + 0.04 * math.sin(second * 0.7)
    return [GpuReading(0, "GPU 0", int(used * GIB), 8 * GIB, int(max(reserved, 0) * GIB), 20 + 70 * load,
                       45 + 23 * load, 18 + 80 * load)]


GPU_NAME = "NVIDIA GeForce RTX 4060 Laptop GPU"
FIXED_REPORT = HardwareView(
    table={"gpus": [{"index": 0, "name": GPU_NAME, "compute_capability": [8, 9], "memory_total": 8 * GIB,
                     "memory_used": int(5.6 * GIB), "temperature_c": 68, "power_w": 95.0, "bf16": True}],
           "cuda_available": True, "bf16": True, "device": "cuda",
           "nvml": {"available": True, "driver_version": "570.124.06", "cuda_driver_version": "12.8"},
           "torch": {"installed": True, "version": "2.13.0+cu128", "cuda_available": True, "cuda_version": "12.8",
                     "device_count": 1},
           "bitsandbytes": {"importable": True, "version": "0.50.2", "matmul_4bit": True},
           "system": {"os": "Linux 6.8.0", "python": "CPython 3.12.3", "cpu_count": 16, "ram_total": 32 * GIB}},
    advice=("This GPU runs bf16: quant.compute_dtype = auto uses it.",),
    gpu_names={0: GPU_NAME},
)

FIXED_MEMORY = MemoryReading(process_bytes=int(1.2 * GIB), available_bytes=int(9.5 * GIB), total_bytes=16 * GIB)

FIXED_PLAN = PlanView("fits", "fits: about 5.4 of 8.0 GiB (2.6 GiB to spare)",
                      ("base weights (nf4): 1.6 GiB", "LoRA + optimizer: 0.2 GiB", "activations: 2.8 GiB",
                       "CUDA context: 0.8 GiB"))

FAKE_ANSWERS = ("Oh, totally! I get that, honestly.", "Ha, yes. Mornings are rough for me too!",
                "Hmm, good question. I'd say go for it?")


class FakeClock:
    """A clock that moves only when told: stable timestamps in logs and charts."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeResult:
    run_id: str
    run_dir: str
    status: str
    adapter_dir: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


class FakeEngine:
    """protocols.TrainingService: emits a deterministic run like engine.training.run.run_training
    would, from the worker thread, in the same order (the contract test checks it).

    hold_at: after that step, wait (for `release()`, Stop or Pause) so a test can act mid-run.
    fail_at: at that step emit Failed and raise, as the engine does.
    A resumed call continues from the step the pause or stop left, like the real checkpoint resume.
    """

    def __init__(self, total_steps: int = 40, eval_every: int = 10, *, hold_at: int | None = None,
                 fail_at: int | None = None, run_id: str = "20260101-120000-demo",
                 device: str = "NVIDIA GeForce RTX 4060 Laptop GPU (bf16)",
                 run_dir: str = "/runs/20260101-120000-demo", method: str = "sft") -> None:
        self.total_steps, self.eval_every = total_steps, eval_every
        self.hold_at, self.fail_at = hold_at, fail_at
        self.run_id, self.device, self.run_dir, self.method = run_id, device, run_dir, method
        self.calls: list[str | None] = []  # the resume argument of each call
        self.saved_step = 0
        self._gate = threading.Event()
        self.holding = threading.Event()  # set while waiting at hold_at (tests wait on it)

    def release(self) -> None:
        self._gate.set()

    def run(self, cfg: Config | None, emit: Callable[[ev.Event], None], stop: threading.Event | None = None, *,
            resume: str | None = None, pause: threading.Event | None = None,
            power: PowerReader | None = None) -> FakeResult:
        self.calls.append(resume)
        self.power = power
        stop, pause = stop or threading.Event(), pause or threading.Event()
        # This engine's own run continues where it stopped; an earlier run (from disk) at step 6, where
        # FakeLibrary's history ends.
        start = 0 if not resume else self.saved_step if resume == self.run_id else 6
        emit(ev.Log("loading builtin:tiny-phi (nf4) ..."))
        # Like the engine, a resumed run reads and splits its data again, and says so.
        emit(ev.DataReport("builtin:sample", 400, 388, {"too_long": 12}, 350, 38, 142.0, 250))
        emit(ev.Log("passes of up to 2,048 tokens, activation checkpointing off"))
        if resume:
            emit(ev.Log(f"resumed {resume} at step {start}"))
        emit(ev.RunStarted(self.run_id, self.run_dir, self.method, cfg.to_dict() if cfg else {}, 3_145_728, 2_782_000_000,
                           self.total_steps, start, self.device))
        for step in range(start + 1, self.total_steps + 1):
            if self.hold_at is not None and step == self.hold_at + 1 and not resume:
                self._hold(stop, pause)
            if stop.is_set() or pause.is_set():
                return self._stop(emit, step - 1, paused=pause.is_set() and not stop.is_set())
            if step == self.fail_at:
                emit(ev.Failed("loss became NaN at step %d; lower train.learning_rate" % step, self.run_id))
                raise TrainingError(f"loss became NaN at step {step}; lower train.learning_rate")
            emit(self._step(step))
            if self.eval_every and step % self.eval_every == 0:
                emit(ev.Eval(step, fake_loss(step) + 0.15, {"eval_logp_accuracy": 0.5 + step / 200,
                                                            "eval_logp_margin": 0.004 * step},
                             samples=(("How was your weekend?", FAKE_ANSWERS[(step // self.eval_every) % 3]),
                                      ("Any tips for sleeping better?", FAKE_ANSWERS[1]))))
        emit(ev.CheckpointSaved(self.total_steps, f"{self.run_dir}/checkpoints/step-{self.total_steps}", "final"))
        emit(ev.Finished(self.run_id, f"{self.run_dir}/adapter", {"final_loss": fake_loss(self.total_steps)}))
        return FakeResult(self.run_id, self.run_dir, "finished", f"{self.run_dir}/adapter")

    def _hold(self, stop: threading.Event, pause: threading.Event) -> None:
        self.holding.set()
        while not self._gate.wait(0.005):
            if stop.is_set() or pause.is_set():
                break
        self.holding.clear()

    def _step(self, step: int) -> ev.Step:
        grad_norm = 0.8 + 0.3 * math.sin(step / 3) + 2.0 / step
        metrics = {"grad_norm": grad_norm}
        if self.method in ("dpo", "orpo", "simpo"):  # the engine's preference figures: reward margin and accuracy
            metrics |= {"reward_margin": 0.05 * step + 0.02 * math.sin(step),
                        "reward_accuracy": min(1.0, 0.5 + step / 80), "reward_chosen": 0.0, "reward_rejected": 0.0}
        lr = 3e-3 * min(1.0, step / 5) * (0.5 + 0.5 * math.cos(math.pi * step / self.total_steps))
        return ev.Step(step, self.total_steps, fake_loss(step), lr, grad_norm, 2150.0 + 40 * math.sin(step / 4),
                       step * 8, step * 1100, step * 0.5, (self.total_steps - step) * 0.5,
                       phase=self.method if self.method in ("dpo", "orpo", "simpo") else "sft", memory_allocated=int(3.9 * GIB),
                       memory_reserved=int(4.9 * GIB), metrics=metrics)

    def _stop(self, emit: Callable[[ev.Event], None], step: int, paused: bool) -> FakeResult:
        self.saved_step = step
        path = f"{self.run_dir}/checkpoints/step-{step}"
        emit(ev.CheckpointSaved(step, path, "pause" if paused else "stop"))
        emit(ev.Stopped(self.run_id, step, path, paused=paused))
        return FakeResult(self.run_id, self.run_dir, "paused" if paused else "stopped")


@dataclass
class FakePreview:
    rows: int
    lengths: list[int]
    max_length: int
    dropped_share: float
    examples: list[str]


def fake_preview(cfg: Config) -> FakePreview:
    lengths = [40 + (i * 37) % 260 for i in range(400)]
    dropped = sum(n > cfg.data.max_length for n in lengths) / len(lengths)
    examples = [f"### Instruct:\nHow was your weekend?\n### Output:\n{FAKE_ANSWERS[0]}\n### End",
                f"### Instruct:\nAny tips for sleeping better?\n### Output:\n{FAKE_ANSWERS[1]}\n### End"]
    return FakePreview(len(lengths), lengths, cfg.data.max_length, dropped, examples)


@dataclass
class FakeHardware:
    """protocols.HardwareService: a fixed report, readings and plan; the preview from `preview`."""

    readings: list[GpuReading] = field(default_factory=lambda: list(FIXED_READINGS))
    report: HardwareView = FIXED_REPORT
    plan_view: PlanView = FIXED_PLAN
    make_preview: Callable[[Config], Any] = fake_preview

    def probe(self) -> HardwareView:
        return self.report

    def sample(self) -> list[GpuReading]:
        return list(self.readings)

    def memory(self) -> MemoryReading:
        return FIXED_MEMORY

    def plan(self, cfg: Config, hardware: HardwareView) -> PlanView:
        if cfg.model.name in FAKE_PEAKS_GIB:  # the model picker plans every model of its list
            peak = FAKE_PEAKS_GIB[cfg.model.name]
            verdict = "fits" if peak <= 7.0 else "tight" if peak <= 8.0 else "does not fit"
            return PlanView(verdict, f"needs about {peak:.2f} GiB of 8.00 GiB free memory")
        return self.plan_view

    def preview(self, cfg: Config) -> Any:
        return self.make_preview(cfg)


# Planned peaks of the picker's models on the fake 8 GiB card (the demo's own model keeps FIXED_PLAN).
FAKE_PEAKS_GIB = {"builtin:smollm2-135m": 1.1, "microsoft/phi-2": 5.6, "HuggingFaceTB/SmolLM2-135M-Instruct": 1.1,
                  "HuggingFaceTB/SmolLM2-360M-Instruct": 1.9, "HuggingFaceTB/SmolLM2-1.7B-Instruct": 4.6,
                  "Qwen/Qwen3-0.6B": 2.6, "Qwen/Qwen3-1.7B": 4.9, "Qwen/Qwen3-4B": 8.4,
                  "meta-llama/Llama-3.2-1B-Instruct": 3.5, "meta-llama/Llama-3.2-3B-Instruct": 7.6,
                  "google/gemma-3-1b-it": 3.9, "microsoft/Phi-4-mini-instruct": 9.2}


class FakeModels:
    """protocols.ModelService: the real curated list; downloads scripted in `chunks` steps of `step_bytes`.
    hold_at: wait at that chunk (until release() or the stop event). A cancelled download keeps what it got
    and the next call resumes from there, as huggingface_hub's cache does."""

    def __init__(self, size: int = 5 * GIB, chunks: int = 10, hold_at: int | None = None) -> None:
        self.size, self.chunks, self.hold_at = size, chunks, hold_at
        self.fetched = 0  # bytes kept in the 'cache'
        self.calls: list[str] = []
        self.holding = threading.Event()
        self._gate = threading.Event()

    def release(self) -> None:
        self._gate.set()

    def choices(self):
        from humanlike_tui.ui.services import EngineModels  # the real list: no torch, no network

        return EngineModels().choices()

    def download(self, name: str, revision: str | None, progress, stop: threading.Event) -> str:
        from humanlike_tui.errors import HumanlikeError
        from humanlike_tui.protocols import DownloadView

        self.calls.append(name)
        step = self.size // self.chunks
        start = self.fetched
        while self.fetched < self.size:
            if self.hold_at is not None and self.fetched >= self.hold_at * step and not self._gate.is_set():
                self.holding.set()
                while not self._gate.wait(0.005) and not stop.is_set():
                    pass
                self.holding.clear()
            if stop.is_set():
                raise HumanlikeError("download cancelled; what was fetched is kept and the next try resumes it")
            self.fetched = min(self.size, self.fetched + step)
            done = self.fetched - start
            progress(DownloadView(self.fetched, self.size, 20e6, (self.size - self.fetched) / 20e6 if done else None))
        progress(DownloadView(self.size, self.size, 20e6, 0.0, finished=True))
        return f"/cache/{name}"


def fake_services(engine: FakeEngine | None = None, clock: FakeClock | None = None, *,
                  readings: list[GpuReading] | None = None, runs: list[RunChoice] | None = None,
                  gpu_interval: float | None = None, plan: PlanView = FIXED_PLAN,
                  preview: Callable[[Config], Any] = fake_preview, library: FakeLibrary | None = None,
                  generation: GenerationService | None = None, scorecard: ScorecardService | None = None,
                  models: FakeModels | None = None, **places: Any) -> Services:
    """Every service scripted; `places` sets Services' clocks and folders (wall_clock, transcripts_dir, ...)."""
    places = {"wall_clock": lambda: FIXED_NOW, "transcripts_dir": lambda: Path("/transcripts"),
              "exports_dir": lambda: Path("/exports"), **places}
    hardware = FakeHardware(FIXED_READINGS if readings is None else readings, plan_view=plan, make_preview=preview)
    library = library or FakeLibrary()
    if runs is not None:
        library.runs = list(runs)
    return Services(training=engine or FakeEngine(), hardware=hardware, library=library,
                    generation=generation or FakeGeneration(library), scorecard=scorecard or FakeScorecard(),
                    models=models or FakeModels(), clock=clock or FakeClock(), gpu_interval=gpu_interval, **places)
