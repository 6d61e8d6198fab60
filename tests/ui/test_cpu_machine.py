"""On a machine without a GPU the workbench speaks of the CPU: pausing frees memory (not "GPU memory"),
the chart shows the process's RAM over time, the Hardware screen's RAM figure is live, and the plan for a
big model says how long it would take on this CPU instead of a bare FITS."""

from __future__ import annotations

from humanlike_tui.protocols import HardwareView, MemoryReading, PlanView
from humanlike_tui.ui.messages import GpuSamples
from humanlike_tui.ui.widgets.charts import VramChart
from humanlike_tui.ui.widgets.plan_panel import PlanPanel
from support.fakes import FakeClock, FakeEngine
from ui_helpers import SIZE, build, settle, wait_until

GIB = 1024**3
CPU_REPORT = HardwareView(
    table={"gpus": [], "cuda_available": False, "bf16": False, "device": "cpu",
           "nvml": {"available": False, "error": "NVML Shared Library Not Found"},
           "torch": {"installed": True, "version": "2.13.0+cpu", "cuda_available": False, "cuda_version": None,
                     "error": ""},
           "bitsandbytes": {"importable": True, "version": "0.50.2", "device": "cpu", "matmul_4bit": True, "error": ""},
           "system": {"os": "Linux 6.8", "python": "CPython 3.11.7", "cpu_count": 2, "ram_total": 16 * GIB,
                      "ram_available": 9 * GIB, "data_dir": "/data", "disk_free": 50 * GIB}})
SLOW_PLAN = PlanView("fits", "needs about 8.91 GiB of 12.00 GiB free RAM", ("base weights (nf4): 1.21 GiB",),
                     device="cpu", slow="about 21 days for 600 steps at ~1.7 tokens/s on 2 CPU cores")


def cpu_app(engine=None, clock=None, **kw):
    app = build(engine, clock, readings=[], plan=SLOW_PLAN, **kw)
    app.services.hardware.report = CPU_REPORT
    return app


def memory(gib_used: float, free: float = 9.0) -> MemoryReading:
    return MemoryReading(int(gib_used * GIB), int(free * GIB), 16 * GIB)


async def feed_memory(pilot, clock, used_gib: list[float]) -> None:
    """One RAM reading a second, as the app's polling thread sends them (no GPU on this machine)."""
    for used in used_gib:
        clock.advance(1)
        pilot.app.post_message(GpuSamples([], clock(), memory(used)))
        await pilot.pause(0)


async def test_a_cpu_run_charts_ram_and_pauses_without_gpu_words():
    engine = FakeEngine(total_steps=30, hold_at=10, device="CPU (fp32)")
    clock = FakeClock()
    app = cpu_app(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", "n")
        await wait_until(pilot, engine.holding.is_set, what="the hold step")
        await feed_memory(pilot, clock, [1.0 + second * 0.2 for second in range(5)])
        await settle(pilot)
        t = app.state.tracker
        assert not t.has_gpu and len(t.ram) == 5 and t.ram[-1].process == int(1.8 * GIB)
        chart = app.screen.query_one(VramChart)
        assert "process RAM GiB (CPU run) of 16.0 in the machine" in chart.shown_title
        await pilot.press("p")
        await wait_until(pilot, lambda: t.status == "paused", what="the pause")
        await settle(pilot)
        said = [n.message for n in app._notifications] + list(t.log) + [str(app.screen.query_one("#hint").render())]
        assert any("memory freed" in s for s in said)
        assert not any("GPU memory" in s for s in said), said


async def test_hardware_screen_reads_ram_live_and_the_plan_says_how_long():
    clock = FakeClock()
    app = cpu_app(clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        from textual.widgets import DataTable

        table = app.screen.query_one(DataTable)

        def ram_cell() -> str:
            return str(table.get_cell("ram", "value"))

        assert ram_cell() == "9.0 of 16.0 GiB free"  # the probe's figure, until a reading comes
        for free in (8.0, 6.5):
            clock.advance(1)
            app.post_message(GpuSamples([], clock(), memory(1.5, free)))
            await pilot.pause(0)
            assert ram_cell() == f"{free:.1f} of 16.0 GiB free · app 1.50 GiB"  # live, not frozen
        plan = str(app.screen.query_one(PlanPanel).render())
        assert plan.startswith("FITS IN RAM") and "but slow on this CPU: about 21 days" in plan
        assert str(app.screen.query_one("#plan-label").render()) == "RAM and time plan for the current config"
        assert "Trains on" in [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


async def test_the_memory_chart_ends_with_the_run():
    engine = FakeEngine(total_steps=4, hold_at=2, device="CPU (fp32)")
    clock = FakeClock()
    app = cpu_app(engine, clock)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", "n")
        await wait_until(pilot, engine.holding.is_set, what="the hold step")
        t = app.state.tracker
        await feed_memory(pilot, clock, [1.0] * 3)
        await settle(pilot)
        assert len(t.ram) == 3
        engine.release()
        await wait_until(pilot, lambda: t.status == "finished", what="the run to finish")
        points = len(t.ram)
        await feed_memory(pilot, clock, [1.0] * 5)  # the app keeps reading memory for the Hardware screen
        assert len(t.ram) == points
