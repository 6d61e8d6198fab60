"""Per-GPU memory and utilization bars, redrawn from the newest reading (about once a second)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from humanlike_tui.formatting import gib
from humanlike_tui.protocols import GpuReading, MemoryReading
from humanlike_tui.ui import format as fmt

BAR = 20


def _style(fraction: float) -> str:
    return "green" if fraction < 0.75 else "yellow" if fraction < 0.92 else "red"


def ram_line(memory: MemoryReading) -> Text:
    text = Text()
    if memory.total_bytes and memory.available_bytes is not None:
        used = (memory.total_bytes - memory.available_bytes) / memory.total_bytes
        text.append("RAM     ")
        text.append(fmt.bar(used, BAR), style=_style(used))
        text.append(f" {gib(memory.total_bytes - memory.available_bytes, 1, unit=False)} / "
                    f"{gib(memory.total_bytes, 1)}")
    text.append(f"\n  this app {gib(memory.process_bytes, 2)}", style="dim")
    return text


def render_readings(readings: list[GpuReading] | None, names: dict[int, str] | None = None,
                    memory: MemoryReading | None = None) -> Text:
    text = _render_gpus(readings, names)
    if memory is not None:
        text.append("\n")
        text.append_text(ram_line(memory))
    return text


def _render_gpus(readings: list[GpuReading] | None, names: dict[int, str] | None = None) -> Text:
    if readings is None:
        return Text("reading the GPUs ...", style="dim")
    if not readings:
        return Text("No NVIDIA GPU found (or no driver): training runs on the CPU.\n"
                    "Small models are practical there (the demo and smol-cpu presets).", style="yellow")
    text = Text()
    for r in readings:
        mem = r.used_bytes / r.total_bytes if r.total_bytes else 0.0
        text.append(f"GPU {r.index}  {(names or {}).get(r.index, r.name)}\n", style="bold")
        text.append("  memory ")
        text.append(fmt.bar(mem, BAR), style=_style(mem))
        text.append(f" {gib(r.used_bytes, 1, unit=False)} / {gib(r.total_bytes, 1)}\n")
        if r.reserved_bytes:
            text.append(f"  of which this app's torch reserved {gib(r.reserved_bytes, 1)}\n", style="dim")
        if r.util_pct is not None:
            util = r.util_pct / 100
            text.append("  compute")
            text.append(" " + fmt.bar(util, BAR), style=_style(util))
            text.append(f" {r.util_pct:.0f}%")
        extras = [f"{r.temp_c:.0f}°C" if r.temp_c is not None else "",
                  f"{r.power_w:.0f} W" if r.power_w is not None else ""]
        if any(extras):
            text.append("   " + "  ".join(e for e in extras if e), style="dim")
        text.append("\n")
    text.rstrip()
    return text


class GpuBars(Static):
    DEFAULT_CSS = """
    GpuBars { height: auto; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.show(None)

    def show(self, readings: list[GpuReading] | None, names: dict[int, str] | None = None,
             memory: MemoryReading | None = None) -> None:
        self.update(render_readings(readings, names, memory))
