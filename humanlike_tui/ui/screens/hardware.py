"""Hardware: what this machine has (a table), how its GPUs are doing right now (bars, about once a
second) and whether the current config fits (the VRAM plan)."""

from __future__ import annotations

from typing import Any, Iterator

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Static

from humanlike_tui.formatting import gib
from humanlike_tui.ui.state import WorkbenchState
from humanlike_tui.ui.widgets.gpu_bars import GpuBars
from humanlike_tui.ui.widgets.plan_panel import PlanPanel
from humanlike_tui.ui.widgets.footer import WorkbenchFooter


# Report fields in bytes, shown in GiB (the rest print as they are).
BYTE_FIELDS = {"memory_total", "memory_used", "memory_free", "used_bytes", "ram_total", "ram_available", "disk_free"}


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """A nested report as (key path, text) rows: gpus[0].name -> 'NVIDIA ...'."""
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from flatten(sub, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        for i, sub in enumerate(value):
            yield from flatten(sub, f"{prefix}[{i}]")
    elif isinstance(value, (list, tuple)):
        yield prefix, ", ".join(map(str, value)) or "—"
    elif isinstance(value, bool):
        yield prefix, "yes" if value else "no"
    elif isinstance(value, int) and prefix.rsplit(".", 1)[-1] in BYTE_FIELDS:
        yield prefix, gib(value)
    else:
        yield prefix, "—" if value is None or value == "" else str(value)


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

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="hw-main"):
            with Vertical(id="hw-left"):
                yield Label("Hardware report", classes="section")
                yield Static("", id="hw-error")
                yield DataTable(id="hw-report", cursor_type="row", zebra_stripes=True)
                yield Static("", id="hw-advice")
            with VerticalScroll(id="hw-right"):
                yield Label("GPUs, live", classes="section")
                yield GpuBars(id="hw-gpus")
                yield Label("VRAM plan for the current config", classes="section")
                yield Static("", id="hw-config")
                yield PlanPanel(id="hw-plan")
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("item", width=28)
        table.add_column("value", width=34)
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
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
            for key, text in flatten(hardware.table):
                table.add_row(key, text)
        advice = "\n".join(f"• {line}" for line in hardware.advice) if hardware is not None else ""
        self.query_one("#hw-advice", Static).update(advice)
        error = self.state.hardware_error
        self.query_one("#hw-error", Static).update(error or ("probing (torch, NVML, bitsandbytes) ..."
                                                             if hardware is None else ""))

    def show_readings(self) -> None:
        names = self.state.hardware.gpu_names if self.state.hardware is not None else {}
        self.query_one(GpuBars).show(self.state.readings, names)

    def show_plan(self) -> None:
        self.query_one("#hw-config", Static).update(config_line(self.state))
        note = self.state.plan_note or ("the config has problems; see the Config screen (F2)"
                                        if self.state.config_problems else "")
        self.query_one(PlanPanel).show(self.state.plan, note)
