"""The hardware report as a person would write it: 'NVIDIA driver 570.124.06 (CUDA 12.8)', not
'nvml.cuda_driver_version'; empty fields left out (no 'torch.error —'). Pure, so it is tested without a
terminal. The report is HardwareView.table (the engine's HardwareReport.to_dict())."""

from __future__ import annotations

from typing import Any, Iterator

from humanlike_tui.formatting import gib
from humanlike_tui.protocols import MemoryReading

RAM_ROW = "ram"  # the row the live RAM readings rewrite


def _yes(value: Any) -> str:
    return "yes" if value else "no"


VALUE_WIDTH = 40  # the report's value column


def fit(text: str, width: int = VALUE_WIDTH) -> str:
    """A value cut to the column with a visible mark ('not found (NVML Shared Library Not Found' was cut
    mid-parenthesis with nothing to say more was there)."""
    return text if len(text) <= width else text[:width - 1] + "…"


def ram_text(available: int | None, total: int | None, process: int | None = None) -> str:
    # short enough for the column: "22.2 GiB free of 23.5 GiB · this app 0.4 GiB" lost its unit
    if available is None and total is None:
        return "unknown"
    if available is None:
        text = f"{gib(total, 1)} in all"
    else:
        text = f"{gib(available, 1, unit=False)} of {gib(total, 1)} free"
    if process:
        text += f" · app {gib(process, 2)}"
    return text


def report_rows(table: dict[str, Any], memory: MemoryReading | None = None) -> Iterator[tuple[str, str, str]]:
    """(row key, label, value) for each fact worth a row, in the order people ask about them."""
    gpus = table.get("gpus") or []
    nvml, torch = table.get("nvml") or {}, table.get("torch") or {}
    bnb, system = table.get("bitsandbytes") or {}, table.get("system") or {}
    device = table.get("device")
    if device:
        yield "device", "Trains on", "the GPU (CUDA)" if device == "cuda" else "the CPU (no usable GPU)"
    for g in gpus:
        i = g.get("index", 0)
        yield f"gpu{i}", f"GPU {i}", str(g.get("name") or "unknown")
        if g.get("memory_total") is not None:
            used = g.get("memory_used")
            used_text = f"{gib(used, 2)} used of " if used is not None else ""
            yield f"gpu{i}-memory", "  memory", f"{used_text}{gib(g['memory_total'], 2)}"
        cc = g.get("compute_capability")
        if cc:
            bf16 = g.get("bf16")
            yield f"gpu{i}-cc", "  compute capability", ".".join(map(str, cc)) + (
                "" if bf16 is None else f" (bf16: {_yes(bf16)})")
        if g.get("temperature_c") is not None:
            yield f"gpu{i}-temp", "  temperature", f"{g['temperature_c']:.0f} °C"
        if g.get("power_w") is not None:
            limit = f" of {g['power_limit_w']:.0f} W" if g.get("power_limit_w") else ""
            yield f"gpu{i}-power", "  power", f"{g['power_w']:.0f} W{limit}"
    if nvml.get("available"):
        cuda = f" (CUDA {nvml['cuda_driver_version']})" if nvml.get("cuda_driver_version") else ""
        yield "driver", "NVIDIA driver", f"{nvml.get('driver_version') or 'version unknown'}{cuda}"
    elif nvml:
        yield "driver", "NVIDIA driver", "not found" + (f" ({nvml['error']})" if nvml.get("error") else "")
    if torch:
        if not torch.get("installed", True):
            yield "torch", "PyTorch", torch.get("error") or "not installed"
        else:
            if torch.get("cuda_available"):
                cuda = f"CUDA {torch.get('cuda_version') or '?'}"
                n = torch.get("device_count")
                if n:
                    cuda += f", {n} GPU{'s' if n != 1 else ''}"
            else:
                cuda = "no CUDA" + (" (a CPU-only build)" if torch.get("cuda_version") is None else "")
            yield "torch", "PyTorch", f"{torch.get('version', '?')} · {cuda}"
            if torch.get("error"):
                yield "torch-error", "  PyTorch problem", str(torch["error"])
    if bnb:
        if bnb.get("importable"):
            check = "4-bit matmul works" if bnb.get("matmul_4bit") else "4-bit matmul failed"
            where = f" on {bnb['device']}" if bnb.get("device") and bnb.get("device") != "n/a" else ""
            yield "bnb", "bitsandbytes", f"{bnb.get('version', '?')}{where} · {check}"
        else:
            yield "bnb", "bitsandbytes", bnb.get("error") or "not importable"
        if bnb.get("importable") and bnb.get("error"):
            yield "bnb-error", "  bitsandbytes problem", str(bnb["error"])
    if system.get("os"):
        yield "os", "System", str(system["os"])
    if system.get("python"):
        yield "python", "Python", str(system["python"])
    if system.get("cpu_count"):
        yield "cpus", "CPU cores", str(system["cpu_count"])
    if memory is not None:
        yield RAM_ROW, "RAM (live)", ram_text(memory.available_bytes, memory.total_bytes, memory.process_bytes)
    elif system.get("ram_total") or system.get("ram_available"):
        yield RAM_ROW, "RAM", ram_text(system.get("ram_available"), system.get("ram_total"))
    if system.get("data_dir"):
        free = f" ({gib(system['disk_free'], 1)} free)" if system.get("disk_free") is not None else ""
        yield "data", "Runs are kept in", f"{system['data_dir']}{free}"
