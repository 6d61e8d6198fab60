"""What the workbench needs from the outside world, as plain callables, so tests and the docs
screenshot swap in scripted stand-ins (fakes.py) and the real ones import the engine lazily.

Every engine import here sits inside a function: importing this module (and so the app) must not
load torch, or the first frame would wait seconds for it. The UI-side types below (GpuReading,
PlanView, RunChoice) are what the screens draw; the adapters translate the engine's objects into them,
so a renamed engine field breaks one function here, not a widget.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from humanlike_tui.config import Config
from humanlike_tui.events import Event


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
    """The VRAM plan for a config as the screens show it."""

    verdict: str  # fits | tight | does not fit | unknown
    headline: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunChoice:
    """An earlier run that can be resumed."""

    run_id: str
    label: str
    config: dict[str, Any] | None = None


class TrainingRunner(Protocol):
    """engine.train.run_training's shape. `power` returns the training GPU's watts (or None); the
    engine integrates it into the run's metadata (energy_wh, energy_cost)."""

    def __call__(self, cfg: Config | None, emit: Callable[[Event], None], stop: threading.Event | None = None, *,
                 resume: str | None = None, pause: threading.Event | None = None,
                 power: Callable[[], float | None] | None = None) -> Any: ...


@dataclass
class Services:
    run_training: TrainingRunner
    list_runs: Callable[[], list[RunChoice]]
    probe_hardware: Callable[[], HardwareView]
    sample_gpus: Callable[[], list[GpuReading]]
    plan_vram: Callable[[Config, HardwareView], PlanView]
    preview_data: Callable[[Config], Any]
    # An earlier run's loss history (train, eval points), so its curve continues on resume.
    run_history: Callable[[str], tuple[list[tuple[int, float]], list[tuple[int, float]]]] = lambda run_id: ([], [])
    clock: Callable[[], float] = time.monotonic
    gpu_interval: float | None = 1.0  # None: no polling worker (snapshot tests feed readings by hand)
    extra: dict[str, Any] = field(default_factory=dict)


def production_services() -> Services:
    return Services(run_training=_run_training, list_runs=_list_runs, probe_hardware=_probe_hardware,
                    sample_gpus=_LazySampler(), plan_vram=_plan_vram, preview_data=_preview_data,
                    run_history=_run_history)


# ---- the real engine, imported on first use (always from a worker thread) ----

_WARM_LOCK = threading.Lock()
_warmed = False


def warm_imports() -> None:
    """Import torch, transformers and peft once, one thread at a time, before any engine work.

    transformers' lazy module is not safe to import from several threads at once: with the hardware
    probe, the data preview and a run all starting together, `from transformers import
    AutoModelForCausalLM` failed in one of them ("cannot import name"). Later calls return at once.
    """
    global _warmed
    with _WARM_LOCK:
        if _warmed:
            return
        import torch  # noqa: F401
        import transformers

        for name in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM", "PreTrainedModel"):
            getattr(transformers, name)
        import peft  # noqa: F401

        _warmed = True


def prepare(cfg: Config | None) -> None:
    """warm_imports(), then make a builtin model's files, also one thread at a time: two threads making
    them at once (the data preview and a run, on first use) replaced each other's folder mid-load."""
    warm_imports()
    name = cfg.model.name.strip() if cfg is not None else ""
    if name.startswith("builtin:"):
        with _WARM_LOCK:
            from humanlike_tui.engine import model

            model.ensure_builtin(name)


def _run_training(cfg, emit, stop=None, *, resume=None, pause=None, power=None):
    prepare(cfg)
    from humanlike_tui.engine.train import run_training

    return run_training(cfg, emit, stop, resume=resume, pause=pause, power=power)


def _list_runs() -> list[RunChoice]:
    """Runs that can go on: a checkpoint on disk, and neither finished nor training elsewhere."""
    from humanlike_tui.engine import store

    return [run_choice(r) for r in store.list_runs()
            if r.status() not in ("finished", "running") and r.latest_checkpoint() is not None]


def _run_history(run_id: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    from humanlike_tui.engine import store

    metrics = store.get_run(run_id).metrics()
    train = [(int(m["step"]), float(m["loss"])) for m in metrics if m.get("kind") == "train" and "loss" in m]
    evals = [(int(m["step"]), float(m["eval_loss"])) for m in metrics if m.get("kind") == "eval" and "eval_loss" in m]
    return train, evals


def _probe_hardware() -> HardwareView:
    warm_imports()
    from humanlike_tui.engine import hardware

    return hardware_view(hardware.probe_hardware())


class _LazySampler:
    """Creates the engine's GPU sampler on the first call, in the polling thread (NVML init is slow)."""

    def __init__(self) -> None:
        self._sampler: Any = None

    def __call__(self) -> list[GpuReading]:
        if self._sampler is None:
            from humanlike_tui.engine import hardware

            self._sampler = hardware.GpuSampler()
        return [gpu_reading(s, i) for i, s in enumerate(self._sampler.sample())]


def _plan_vram(cfg: Config, report: HardwareView) -> PlanView:
    warm_imports()
    from humanlike_tui.engine import memory

    return plan_view(memory.plan_for_hardware(cfg, report.raw))


def _preview_data(cfg: Config) -> Any:
    prepare(cfg)
    from humanlike_tui.engine import data

    return data.preview(cfg, n_examples=3)


# ---- adapters: engine objects -> the UI's types ----

def _pick(obj: Any, names: tuple[str, ...], default: Any = None) -> Any:
    """The first of `names` the object has and is not None (fields the driver could not read are None)."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return default


def gpu_reading(sample: Any, position: int = 0) -> GpuReading:
    """engine.hardware.GpuSample -> GpuReading (the sample has no name: the report has it)."""
    return GpuReading(
        index=int(_pick(sample, ("index",), position)),
        name=str(_pick(sample, ("name",), f"GPU {position}")),
        used_bytes=int(_pick(sample, ("used_bytes",), 0)),
        total_bytes=int(_pick(sample, ("total_bytes",), 0)),
        reserved_bytes=_pick(sample, ("torch_reserved",)),
        util_pct=_pick(sample, ("util_percent",)),
        temp_c=_pick(sample, ("temperature_c",)),
        power_w=_pick(sample, ("power_w",)),
    )


def hardware_view(report: Any) -> HardwareView:
    """engine.hardware.HardwareReport -> HardwareView: advice apart (long sentences, not table cells)."""
    table = report.to_dict()
    advice = tuple(table.pop("recommendations", ()) or ())
    names = {int(g["index"]): str(g.get("name") or f"GPU {g['index']}") for g in table.get("gpus", [])}
    return HardwareView(table, advice, names, report)


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024**3:.2f} GiB"


def plan_view(plan: Any) -> PlanView:
    """engine.memory.MemoryPlan -> PlanView: verdict, need vs have, the items, and what to change."""
    where = f" ({plan.available_source})" if plan.available_source else ""
    if plan.available_bytes is None:
        headline = f"needs about {_gib(plan.peak_bytes)}; free memory unknown{where}"
    else:
        headline = f"needs about {_gib(plan.peak_bytes)} of {_gib(plan.available_bytes)} free{where}"
    lines = [f"{item.label}: {_gib(item.bytes)}" for item in plan.items if item.bytes >= 5 * 1024**2]
    lines += [f"try: {s.text} (peak {_gib(s.peak_bytes)})" for s in plan.suggestions[:3]]
    return PlanView(plan.verdict, headline, tuple(lines))


def run_choice(run: Any) -> RunChoice:
    """engine.store.Run -> RunChoice, with its saved config (resume continues under it)."""
    meta = run.meta()
    status = run.status()
    steps, total = meta.get("steps"), meta.get("max_steps")
    progress = f"step {steps}/{total}" if steps is not None and total else ""
    created = meta.get("created")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if isinstance(created, (int, float)) else ""
    label = " · ".join(x for x in (run.run_id, status, progress, when) if x)
    try:
        config = run.config().to_dict()
    except Exception:  # a run whose config no longer loads is still listed; resume then uses the current one
        config = None
    return RunChoice(run.run_id, label, config)
