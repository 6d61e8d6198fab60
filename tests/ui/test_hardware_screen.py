"""Hardware screen: the report as a table, live GPU bars, the plan verdict for the current config,
and clear messages when there is no GPU or the probe breaks."""

from __future__ import annotations

from textual.widgets import DataTable

from humanlike_tui.protocols import PlanView
from humanlike_tui.ui.messages import GpuSamples
from humanlike_tui.ui.hardware_text import report_rows
from humanlike_tui.ui.screens.hardware import HardwareScreen
from humanlike_tui.ui.widgets.gpu_bars import GpuBars
from humanlike_tui.ui.widgets.plan_panel import PlanPanel
from support.fakes import FakeClock
from ui_helpers import SIZE, build, feed_readings, settle, wait_until


def text_of(widget) -> str:
    return str(widget.render())


async def test_report_bars_and_plan():
    clock = FakeClock()
    app = build(clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HardwareScreen)
        table = app.screen.query_one(DataTable)
        rows = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1]) for i in range(table.row_count)}
        assert rows["GPU 0"] == "NVIDIA GeForce RTX 4060 Laptop GPU"
        assert rows["  memory"] == "5.60 GiB used of 8.00 GiB"
        assert rows["NVIDIA driver"] == "570.124.06 (CUDA 12.8)"
        assert not any("." in label or "_" in label for label in rows)  # no raw keys such as nvml.driver_version
        assert "bf16" in text_of(app.screen.query_one("#hw-advice"))
        assert "reading the GPUs" in text_of(app.screen.query_one(GpuBars))
        await feed_readings(pilot, clock, 1)
        bars = text_of(app.screen.query_one(GpuBars))
        assert "GPU 0  NVIDIA GeForce RTX 4060 Laptop GPU" in bars  # name from the report
        assert "5.6 / 8.0 GiB" in bars and "87%" in bars and "95 W" in bars
        plan = text_of(app.screen.query_one(PlanPanel))
        assert plan.startswith("FITS") and "5.4 of 8.0 GiB" in plan
        assert "builtin:tiny-phi" in text_of(app.screen.query_one("#hw-config"))


async def test_no_gpu_and_broken_probe_are_explained():
    def broken_probe():
        raise RuntimeError("NVML exploded")

    app = build(readings=[])
    app.services.hardware.probe = broken_probe
    async with app.run_test(size=SIZE) as pilot:
        await feed_readings(pilot, FakeClock(), 1, readings=[])
        await wait_until(pilot, lambda: bool(app.state.hardware_error), what="the probe's failure")
        await pilot.pause(0)
        assert "No NVIDIA GPU found" in text_of(app.screen.query_one(GpuBars))
        assert "hardware probe failed: unexpected error: RuntimeError: NVML exploded" in text_of(
            app.screen.query_one("#hw-error"))
        assert "no VRAM estimate without a hardware report" in text_of(app.screen.query_one(PlanPanel))


async def test_plan_follows_the_config_and_shows_planner_errors():
    seen = []

    def planner(cfg, hardware):
        seen.append(cfg.lora.r)
        if cfg.lora.r == 64:
            raise ImportError("no memory module")
        return PlanView("tight", f"r={cfg.lora.r}")

    app = build(initial_screen="config")
    app.services.hardware.plan = planner
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.state.plan.headline == "r=16"
        (await app.screen.form.reveal("lora.r")).set_value(64)
        await wait_until(pilot, lambda: app.state.plan.verdict == "unknown", what="the debounced plan")
        assert seen[-1] == 64
        await pilot.press("f1")
        await settle(pilot)
        assert "VRAM estimate unavailable" in text_of(app.screen.query_one(PlanPanel))


async def test_gpu_polling_worker_runs_and_stops():
    app = build(gpu_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: bool(app.state.readings), what="a reading from the polling worker")
        assert app.state.readings[0].power_w == 95.0
    assert app._shutting_down.is_set()


async def test_a_reading_that_arrives_while_quitting_redraws_nothing():
    # A GpuSamples message still queued at exit used to query the Hardware screen's widgets while
    # Textual was removing them (NoMatches: GpuBars). Once exit is asked for, no screen is "shown".
    app = build()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.shown("hardware"), HardwareScreen)
        app.exit()
        assert app.shown("hardware") is None
        for bars in list(app.screen.query(GpuBars)):
            bars.remove()  # what teardown does next: the handler must not look for them
        app.on_gpu_samples(GpuSamples([], 0.0))  # must not raise


def test_the_report_reads_as_a_person_would_write_it():
    cpu_only = {"gpus": [], "device": "cpu", "nvml": {"available": False, "error": "NVML Shared Library Not Found",
                                                      "driver_version": None, "cuda_driver_version": None},
                "torch": {"installed": True, "version": "2.13.0+cpu", "cuda_available": False, "cuda_version": None,
                          "error": ""},
                "bitsandbytes": {"importable": True, "version": "0.50.2", "device": "cpu", "matmul_4bit": True,
                                 "error": ""},
                "system": {"os": "Linux 6.8", "python": "CPython 3.11.7", "cpu_count": 2, "ram_total": 16 * 2**30,
                           "ram_available": 9 * 2**30, "data_dir": "/data", "disk_free": 50 * 2**30}}
    rows = {label: value for _, label, value in report_rows(cpu_only)}
    assert rows["Trains on"] == "the CPU (no usable GPU)"
    assert rows["NVIDIA driver"] == "not found (NVML Shared Library Not Found)"
    assert rows["PyTorch"] == "2.13.0+cpu · no CUDA (a CPU-only build)"
    assert rows["bitsandbytes"] == "0.50.2 on cpu · 4-bit matmul works"
    assert rows["RAM"] == "9.0 of 16.0 GiB free" and rows["CPU cores"] == "2"
    assert "PyTorch problem" not in rows and not any("—" in v for v in rows.values())  # nothing empty shown


def test_a_value_too_long_for_its_column_is_cut_with_a_mark():
    from humanlike_tui.ui.hardware_text import VALUE_WIDTH, fit, ram_text

    long = "not found (NVML Shared Library Not Found: libnvidia-ml.so.1)"
    assert fit(long).endswith("…") and len(fit(long)) == VALUE_WIDTH
    assert fit("short") == "short"
    worst = ram_text(999 * 1024**3, 1000 * 1024**3, 99 * 1024**3)  # big numbers still fit, unit included
    assert len(worst) <= VALUE_WIDTH and worst.endswith("GiB")
