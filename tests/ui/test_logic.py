"""The UI's pure parts, without a terminal: the run tracker (what the Train screen draws), the energy
meter, event lines for the log, formatting, and the adapters from the real engine's types."""

from __future__ import annotations

import pytest

from humanlike_tui import events as ev
from humanlike_tui import formatting
from humanlike_tui.config import load_preset
from humanlike_tui.energy import EnergyMeter
from humanlike_tui.errors import StoreError
from humanlike_tui.protocols import GpuReading
from humanlike_tui.ui import format as fmt
from humanlike_tui.ui.event_text import describe
from humanlike_tui.ui.run_state import RunTracker
from humanlike_tui.ui.services import EngineLibrary, gpu_reading, hardware_view, plan_view, run_choice
from humanlike_tui.engine.storage import files

CFG = load_preset("demo")


def step(n: int, total: int = 40, loss: float = 2.0) -> ev.Step:
    return ev.Step(n, total, loss, 1e-3, 0.5, 1000.0, n * 8, n * 800, n * 1.0, (total - n) * 1.0)


def started(start: int = 0, device: str = "NVIDIA RTX (bf16)") -> ev.RunStarted:
    return ev.RunStarted("run-1", "/runs/run-1", "sft", {}, 10, 100, 40, start, device)


def test_tracker_follows_a_run_through_pause_and_resume():
    t = RunTracker()
    t.begin(CFG, 0.0)
    assert t.status == "starting" and t.total_steps == CFG.train.max_steps
    t.apply(started(), 1.0)
    for n in range(1, 11):
        t.apply(step(n), 1.0 + n)
    t.apply(ev.Eval(10, 1.9, samples=(("hi?", "hey!"),)), 12.0)
    t.request("pause", 12.5)
    assert t.status == "pausing" and t.active
    t.apply(ev.Stopped("run-1", 10, "/runs/run-1/checkpoints/step-10", paused=True), 13.0)
    assert t.status == "paused" and t.can_resume and not t.active
    t.begin(CFG, 20.0, resume="run-1")  # the same run: its history stays, the curve goes on
    t.apply(started(start=10), 21.0)
    t.apply(step(11), 22.0)
    assert [s for s, _ in t.train] == list(range(1, 12)) and t.step == 11
    assert t.samples[0].answers == (("hi?", "hey!"),)
    t.begin(CFG, 30.0)  # a new run starts clean, but the log runs on
    assert t.train == [] and t.samples == [] and t.run_id == "" and t.log_total > 5


def test_tracker_failure_from_event_or_worker():
    t = RunTracker()
    t.begin(CFG, 0.0)
    t.apply(ev.Failed("data.source: no rows", kind="input"), 1.0)
    assert t.status == "failed" and t.failure == "data.source: no rows"
    t.worker_ended(2.0, None, "data.source: no rows")
    assert t.log[-1].endswith("FAILED (input): data.source: no rows")  # said once, not twice
    u = RunTracker()
    u.begin(CFG, 0.0)
    u.worker_ended(1.0, None, "unexpected error: KeyError: 'x'")
    assert u.status == "failed" and "KeyError" in u.log[-1]


def test_tracker_vram_and_energy_only_while_training_on_a_gpu():
    gpu = [GpuReading(0, "GPU", 4 * 1024**3, 8 * 1024**3, 3 * 1024**3, 50.0, 60.0, 100.0)]
    t = RunTracker()
    t.add_readings(gpu, 1.0)  # idle: charted, not billed
    t.begin(CFG, 2.0)
    t.apply(started(), 2.0)
    for s in range(3, 9):
        t.add_readings(gpu, float(s))
    assert t.energy.wh == pytest.approx(100 * 5 / 3600)
    assert t.vram[-1].t == 6.0 and t.vram[-1].reserved == 3 * 1024**3
    cpu = RunTracker()
    cpu.begin(CFG, 0.0)
    cpu.apply(started(device="CPU (fp32)"), 0.0)
    cpu.add_readings(gpu, 1.0)
    cpu.add_readings(gpu, 2.0)
    assert cpu.energy.wh == 0.0


def test_energy_meter_trapezoid_gaps_and_pause():
    m = EnergyMeter()
    m.add(0.0, 100.0)
    m.add(3600.0, 100.0)  # longer than the gap limit: not bridged
    assert m.wh == 0.0
    m.add(3601.0, 200.0)
    assert m.wh == pytest.approx(150 / 3600)
    m.pause()
    m.add(3605.0, 200.0)
    assert m.wh == pytest.approx(150 / 3600)
    assert m.cost(0.30) == pytest.approx(m.wh / 1000 * 0.30)


def test_event_lines():
    assert describe(step(3)) is None and describe(step(4)) is not None  # every 40 // 20 = 2 steps
    assert describe(step(40)).startswith("step 40/40 loss 2.0000")
    assert describe(ev.Failed("oom", kind="oom")) == "FAILED (oom): oom"
    report = ev.DataReport("builtin:sample", 120, 118, {"too_long": 2, "empty": 0}, 106, 12)
    assert describe(report) == ("data builtin:sample: 118/120 rows kept (dropped: 2 too_long); "
                                "106 train, 12 eval")
    assert describe(ev.Log("slow disk", "warning")) == "warning: slow disk"
    assert "resumed at step 10" in describe(started(10))


def test_formatting():
    assert [formatting.duration(x) for x in (None, 5, 65, 3725, float("nan"))] == ["—", "5s", "1m05s", "1h02m", "—"]
    assert formatting.clock_stamp(61) == "01:01" and formatting.clock_stamp(3661) == "1:01:01"
    sizes = (None, 512, 58 * 1024**2, 3 * 1024**3 // 2)
    assert [formatting.size_text(n) for n in sizes] == ["—", "512 B", "58.0 MB", "1.5 GB"]
    assert formatting.size_text(1_794_000_000, "MB") == "1,710.9 MB"
    assert formatting.gib(int(5.6 * 1024**3)) == "5.60 GiB" and formatting.gib(8 * 1024**3, 1, unit=False) == "8.0"
    assert formatting.gib(None) == "—"
    assert formatting.error_text(StoreError("no run named 'x'")) == "no run named 'x'"
    assert formatting.error_text(KeyError("x")) == "unexpected error: KeyError: 'x'"
    assert fmt.bar(0.5, 4) == "██  " and fmt.bar(1.5, 3) == "███" and len(fmt.bar(0.33, 10)) == 10
    assert fmt.rate(12345) == "12k" and fmt.rate(1500) == "1.5k" and fmt.rate(0) == "—"


def test_adapters_read_the_real_hardware_types():
    from humanlike_tui.engine import hardware as hw

    sample = hw.GpuSample(timestamp=1.0, index=1, used_bytes=5, total_bytes=10, torch_reserved=3,
                          util_percent=40, temperature_c=55, power_w=80.5)
    assert gpu_reading(sample) == GpuReading(1, "GPU 0", 5, 10, 3, 40, 55, 80.5)
    report = hw.HardwareReport(
        nvml=hw.NvmlReport(True, gpus=(hw.GpuInfo(index=0, name="RTX", memory_total=8),)),
        torch=hw.TorchInfo(True, cuda_available=True), bnb=hw.BnbInfo(True), system=hw.SystemInfo("Linux", "3.12"),
        recommendations=("do this",))
    view = hardware_view(report)
    assert view.advice == ("do this",) and view.gpu_names == {0: "RTX"} and view.raw is report
    assert "recommendations" not in view.table and view.table["gpus"][0]["memory_total"] == 8


def test_adapters_read_the_real_memory_plan():
    from humanlike_tui.engine import planning as memory

    # Hand-made shapes: reading the builtin model's config would import transformers (seconds).
    linears = tuple(memory.LinearShape(n, 64, 64, True, 2) for n in ("q_proj", "k_proj", "v_proj", "dense"))
    shapes = memory.ModelShapes("builtin:tiny-phi", "test", "phi", 1000, 64, 256, 2, 4, 4, 16, "gelu_new", 0.0,
                                200_000, linears)
    plan = memory.plan_memory(CFG, device="cpu", available_bytes=8 * 1024**3, shapes=shapes)
    view = plan_view(plan)
    assert view.verdict == plan.verdict == "fits"
    assert "of 8.00 GiB free" in view.headline and view.lines


def test_adapters_read_the_real_store():
    from humanlike_tui.engine.storage import runs as store

    run = store.create_run(CFG)
    choice = run_choice(store.list_runs()[0])
    assert choice.run_id == run.run_id and choice.config == CFG.to_dict()
    assert run.run_id in choice.label and "interrupted" in choice.label  # created, never trained


def test_resumable_runs_and_their_history_from_the_real_store():
    from humanlike_tui.engine.storage import runs as store
    library = EngineLibrary()

    finished, stopped, bare = store.create_run(CFG), store.create_run(CFG), store.create_run(CFG)
    for run, status in ((finished, "finished"), (stopped, "stopped"), (bare, "stopped")):
        run.update_meta(status=status)
    finished.adapter_dir.mkdir()
    (finished.adapter_dir / files.COMPLETE).write_text("")
    for run in (finished, stopped):
        ckpt = run.checkpoints_dir / "step-000004"
        ckpt.mkdir(parents=True)
        (ckpt / files.COMPLETE).write_text("")
    stopped.append_metric({"step": 1, "kind": "train", "loss": 2.5, "lr": 1e-3})
    stopped.append_metric({"step": 2, "kind": "eval", "eval_loss": 2.4})
    # finished: nothing to resume; bare: no checkpoint to resume from
    assert [c.run_id for c in library.resumable()] == [stopped.run_id]
    assert library.history(stopped.run_id) == ([(1, 2.5)], [(2, 2.4)])
