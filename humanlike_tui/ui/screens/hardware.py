"""Hardware: what this machine has (a table), how its GPUs are doing right now (bars, about once a
second, with the RAM) and whether the current config fits (the VRAM plan; on the CPU, RAM and time)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Static

from humanlike_tui.ui.hardware_text import RAM_ROW, VALUE_WIDTH, fit, ram_text, report_rows
from humanlike_tui.ui.state import WorkbenchState
from humanlike_tui.ui.widgets.gpu_bars import GpuBars
from humanlike_tui.ui.widgets.plan_panel import PlanPanel, plan_title
from humanlike_tui.ui.widgets.footer import WorkbenchFooter


def config_line(state: WorkbenchState) -> str:
    c = state.config
    return (f"{c.model.name} · quant {c.quant.mode} · LoRA r={c.lora.r} · "
            f"batch {c.train.batch_size}x{c.train.grad_accum} · max_length {c.data.max_length}")


class HardwareScreen(Screen):
    SUB_TITLE = "Hardware"
    DEFAULT_CSS = """
    HardwareScreen #hw-left { width: 68; }
    HardwareScreen #hw-right { width: 1fr; }
    HardwareScreen.-narrow #hw-main { layout: vertical; }
    HardwareScreen.-narrow #hw-left { width: 1fr; height: 1fr; }
    HardwareScreen.-narrow #hw-right { width: 1fr; height: 1fr; }
    HardwareScreen.-short .section { margin-top: 0; }
    HardwareScreen.-short #hw-advice { max-height: 4; }
    HardwareScreen DataTable { height: 1fr; }
    HardwareScreen .section { text-style: bold; color: $text-accent; padding: 0 1; margin-top: 1; }
    HardwareScreen #hw-config { color: $text-muted; padding: 0 1; }
    HardwareScreen #hw-error { color: $text-error; padding: 0 1; height: auto; }
    HardwareScreen #hw-advice { color: $text-warning; padding: 0 1; height: auto; max-height: 12; }
    """

    def __init__(self, state: WorkbenchState) -> None:
        super().__init__()
        self.state = state
        self._report_shown: object = object()
        self.filled = False  # the widgets after the first frame are mounted (fill)

    def compose(self) -> ComposeResult:
        # The app's first frame: the header, the sections and the footer. The table, the bars and the plan
        # (empty until the probe answers, seconds later) are mounted just after it (fill): drawing
        # them made the first frame ~0.05 s later (tools/ui_timing.py).
        yield Header()
        with Horizontal(id="hw-main"):
            with Vertical(id="hw-left"):
                yield Label("Hardware report", classes="section")
                yield Static("probing (torch, NVML, bitsandbytes) ...", id="hw-error")
            with VerticalScroll(id="hw-right"):
                yield Label("GPUs and RAM, live", classes="section")
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        self.call_after_refresh(self.fill)

    async def fill(self) -> None:
        table = DataTable(id="hw-report", cursor_type="row", zebra_stripes=True)
        table.show_header = False
        table.add_column("", width=22, key="label")
        table.add_column("", width=VALUE_WIDTH, key="value")
        await self.query_one("#hw-left").mount_all([table, Static("", id="hw-advice")])
        await self.query_one("#hw-right").mount_all([
            GpuBars(id="hw-gpus"), Label("VRAM plan for the current config", classes="section", id="plan-label"),
            Static("", id="hw-config"), PlanPanel(id="hw-plan")])
        self.filled = True
        if self.focused is None or self.focused.id == "hw-right":
            table.focus()  # the screen's auto focus chose the table when it was there from the start
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        if not self.filled:
            return
        self.show_report()
        self.show_readings()
        self.show_plan()

    def show_report(self) -> None:
        hardware = self.state.hardware
        if (hardware, self.state.hardware_error) == self._report_shown:
            return  # rebuilding the table on every redraw would reset its scroll and cursor
        self._report_shown = (hardware, self.state.hardware_error)
        table = self.query_one(DataTable)
        table.clear()
        if hardware is not None:
            for key, label, text in report_rows(hardware.table, self.state.memory):
                table.add_row(label, fit(text), key=key)
        advice = "\n".join(f"• {line}" for line in hardware.advice) if hardware is not None else ""
        self.query_one("#hw-advice", Static).update(advice)
        error = self.state.hardware_error
        self.query_one("#hw-error", Static).update(error or ("probing (torch, NVML, bitsandbytes) ..."
                                                             if hardware is None else ""))

    def show_readings(self) -> None:
        if not self.filled:
            return
        names = self.state.hardware.gpu_names if self.state.hardware is not None else {}
        self.query_one(GpuBars).show(self.state.readings, names, self.state.memory)
        memory = self.state.memory
        table = self.query_one(DataTable)
        if memory is not None and RAM_ROW in table.rows:  # the live figure, not the one read at launch
            table.update_cell(RAM_ROW, "label", "RAM (live)")
            table.update_cell(RAM_ROW, "value", fit(ram_text(memory.available_bytes, memory.total_bytes,
                                                             memory.process_bytes)))

    def show_plan(self) -> None:
        self.query_one("#hw-config", Static).update(config_line(self.state))
        note = self.state.plan_note or ("the config has problems; see the Config screen (F2)"
                                        if self.state.config_problems else "")
        self.query_one(PlanPanel).show(self.state.plan, note)
        self.query_one("#plan-label", Label).update(plan_title(self.state.plan, "plan for the current config"))
