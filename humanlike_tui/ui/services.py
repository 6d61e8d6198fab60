"""The workbench's service adapters over the real engine: training, hardware and the run library
(generation and the scorecard are in chat_services.py). Each implements a protocol of
humanlike_tui.protocols; app.production_services() wires them, and tests hand the app scripted
doubles of the same protocols instead (tests/support/fakes.py).

Every engine import here sits inside a method: importing this module (and so the app) must not load
torch, or the first frame would wait seconds for it. The functions at the bottom translate the
engine's objects into the records the screens draw (protocols.GpuReading, PlanView, ...), so a
renamed engine field breaks one function here, not a widget.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from humanlike_tui.config import Config
from humanlike_tui import events as ev
from humanlike_tui.formatting import date_text, gib
from humanlike_tui.protocols import (DownloadView, Emit, GpuReading, HardwareView, Log, LossHistory, MemoryReading,
                                     ModelChoice, PlanView, PowerReader, RunChoice, RunOutcome)

if TYPE_CHECKING:
    from humanlike_tui.records import AdapterInfo

# ---- guards: the engine's first use, one thread at a time ----

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


def prepare(cfg: Config | None, log: Log = lambda message: None) -> None:
    """warm_imports(), then make a builtin model's files, also one thread at a time: two threads making
    them at once (the data preview and a run, on first use) replaced each other's folder mid-load.
    `log` hears what takes seconds (the imports, making the model) before it starts."""
    if not _warmed:
        log(ev.LIBRARIES_LOADING)
    warm_imports()
    name = cfg.model.name.strip() if cfg is not None else ""
    if name.startswith("builtin:"):
        with _WARM_LOCK:
            from humanlike_tui.engine import models

            models.ensure_builtin(name, log)


# ---- the services ----

class EngineTraining:
    """protocols.TrainingService over engine.training.run.run_training."""

    def run(self, cfg: Config | None, emit: Emit, stop: threading.Event | None = None, *,
            resume: str | None = None, pause: threading.Event | None = None,
            power: PowerReader | None = None) -> RunOutcome:
        prepare(cfg, lambda message: emit(ev.Log(message)))
        from humanlike_tui.engine.training.run import run_training

        return run_training(cfg, emit, stop, resume=resume, pause=pause, power=power)


class EngineHardware:
    """protocols.HardwareService: the probe, the GPU sampler (made on first use, in the polling
    thread: NVML init is slow), the VRAM planner and the data preview."""

    def __init__(self) -> None:
        self._sampler: Any = None

    def probe(self) -> HardwareView:
        warm_imports()
        from humanlike_tui.engine import hardware

        return hardware_view(hardware.probe_hardware())

    def sample(self) -> list[GpuReading]:
        if self._sampler is None:
            from humanlike_tui.engine import hardware

            self._sampler = hardware.GpuSampler()
        return [gpu_reading(s, i) for i, s in enumerate(self._sampler.sample())]

    def memory(self) -> MemoryReading:
        import psutil

        ram = psutil.virtual_memory()
        return MemoryReading(int(psutil.Process().memory_info().rss), int(ram.available), int(ram.total))

    def plan(self, cfg: Config, hardware: HardwareView) -> PlanView:
        warm_imports()
        from humanlike_tui.engine import planning

        plan = planning.plan_for_hardware(cfg, hardware.raw)
        if plan.device != "cpu":
            return plan_view(plan)
        cores = getattr(getattr(hardware.raw, "system", None), "cpu_count", None)
        return plan_view(plan, planning.cpu_time(cfg, plan.total_params, cores))

    def preview(self, cfg: Config) -> Any:
        prepare(cfg)
        from humanlike_tui.engine import data
        from humanlike_tui.engine.models.loading import load_tokenizer, resolve_model_path

        return data.preview(cfg, load_tokenizer(cfg, resolve_model_path(cfg)), n_examples=3)


class EngineModels:
    """protocols.ModelService: the curated catalogue (no download needed for its shapes) and hub downloads."""

    def choices(self) -> list[ModelChoice]:
        from humanlike_tui.engine.models import catalogue

        builtins = [ModelChoice("builtin:tiny-phi", "Tiny Phi (random weights: tries the workbench in a minute)",
                                0.0, "MIT", False, offline=True),
                    ModelChoice("builtin:smollm2-135m", "SmolLM2 135M Instruct, builtin (offline, no hub account)",
                                0.135, "Apache-2.0", False, offline=True)]
        return builtins + [ModelChoice(m.hub_id, m.label, m.params_b, m.licence, m.gated) for m in catalogue.CATALOGUE]

    def download(self, name: str, revision: str | None, progress: Any, stop: threading.Event) -> str:
        from humanlike_tui.engine.models.download import download_model

        def report(p: Any) -> None:
            progress(DownloadView(p.done_bytes, p.total_bytes, p.bytes_per_s, p.eta_s, p.finished))

        return str(download_model(name, revision, progress=report, stop=stop))


class EngineLibrary:
    """protocols.LibraryService over the run store (engine.storage)."""

    def adapters(self) -> list[AdapterInfo]:
        from humanlike_tui.engine.storage import library

        return library.list_adapters()

    def details(self, name: str) -> dict[str, Any]:
        from humanlike_tui.engine.storage import library

        return library.run_details(name)

    def rename(self, old: str, new: str) -> None:
        from humanlike_tui.engine.storage import runs

        runs.rename_run(old, new)

    def delete(self, name: str) -> None:
        from humanlike_tui.engine.storage import runs

        runs.delete_run(name)

    def export(self, name: str, folder: Path, dtype: str, log: Log, fmt: str = "safetensors",
               quant: str = "q8_0", merge_into: str = "trained") -> Path:
        warm_imports()
        from humanlike_tui.engine.storage import export, gguf_export, runs

        prepare(runs.get_run(name).config())
        if fmt == "gguf":  # as `adapters export --format gguf`: the .gguf file (a Modelfile beside it)
            return gguf_export.export_gguf(name, folder, quant=quant, merge_into=merge_into, log=log)
        return export.export_merged(name, folder, dtype=dtype, merge_into=merge_into, log=log)

    def check_name(self, name: str) -> str:
        from humanlike_tui.engine.storage import runs

        return runs.check_name(name)

    def resumable(self) -> list[RunChoice]:
        """Runs that can go on: a checkpoint on disk, and neither finished nor training elsewhere."""
        from humanlike_tui.engine.storage import runs

        return [run_choice(r) for r in runs.list_runs()
                if r.status() not in ("finished", "running") and r.latest_checkpoint() is not None]

    def history(self, run_id: str) -> LossHistory:
        from humanlike_tui.engine.storage import runs

        metrics = runs.get_run(run_id).metrics()
        train = [(int(m["step"]), float(m["loss"])) for m in metrics if m.get("kind") == "train" and "loss" in m]
        evals = [(int(m["step"]), float(m["eval_loss"])) for m in metrics
                 if m.get("kind") == "eval" and "eval_loss" in m]
        return train, evals


# ---- engine objects -> the UI's records ----

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


def plan_view(plan: Any, cpu: Any = None) -> PlanView:
    """engine.planning.advice.MemoryPlan -> PlanView: verdict, need vs have, the items, and what to change;
    on the CPU (`cpu`: engine.planning.CpuTime) also how long the run would take there."""
    where = f" ({plan.available_source})" if plan.available_source else ""
    memory = "RAM" if plan.device == "cpu" else "memory"
    if plan.available_bytes is None:
        headline = f"needs about {gib(plan.peak_bytes)}; free {memory} unknown{where}"
    else:
        headline = f"needs about {gib(plan.peak_bytes)} of {gib(plan.available_bytes)} free {memory}{where}"
    lines = [f"{item.label}: {gib(item.bytes)}" for item in plan.items if item.bytes >= 5 * 1024**2]
    lines += [f"try: {s.text} (peak {gib(s.peak_bytes)})" for s in plan.suggestions[:3]]
    slow = ""
    if cpu is not None:  # the engine's texts (planning.CpuTime), which `hw` prints too
        if cpu.practical:
            lines.insert(0, f"time: {cpu.time_text()}")
        else:
            slow = cpu.time_text()
            lines.insert(0, cpu.advice())
    return PlanView(plan.verdict, headline, tuple(lines), device=plan.device, slow=slow)


def run_choice(run: Any) -> RunChoice:
    """engine.storage.runs.Run -> RunChoice, with its saved config (resume continues under it)."""
    meta = run.meta()
    status = run.status()
    steps, total = meta.get("steps"), meta.get("max_steps")
    progress = f"step {steps}/{total}" if steps is not None and total else ""
    created = meta.get("created")
    when = date_text(created, with_time=True, unknown="") if isinstance(created, (int, float)) else ""
    label = " · ".join(x for x in (run.run_id, status, progress, when) if x)
    try:
        config = run.config().to_dict()
    except Exception:  # a run whose config no longer loads is still listed; resume then uses the current one
        config = None
    return RunChoice(run.run_id, label, config)
