"""The process's peak resident memory, on every OS we support (the CPU's "peak memory" figure).

`resource` exists only on POSIX; importing it at module level kept the whole engine from loading on
Windows. Windows reports the peak working set through psutil.
"""

from __future__ import annotations

import platform
from pathlib import Path


def reset_peak_rss() -> bool:
    """Linux can reset the process's peak RSS (VmHWM); elsewhere the peak covers the whole process."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident memory of this process in bytes (0 when the OS will not say)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return _windows_peak()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if platform.system() == "Darwin" else rss * 1024)  # macOS reports bytes, Linux KiB


def _windows_peak() -> int:
    try:
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", 0) or info.rss)
    except Exception:  # noqa: BLE001 - a missing figure must not stop training
        return 0


def peak_memory_bytes(device: str) -> int:
    """The peak a run reports: torch's reserved peak on a GPU, the process's peak resident memory on the CPU."""
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_reserved())
    return peak_rss_bytes()  # CPU: the process's peak resident memory

def device_memory(device) -> tuple[int, int]:
    """(allocated, reserved) bytes torch holds on a CUDA device; (0, 0) on the CPU."""
    if getattr(device, "type", "cpu") != "cuda":
        return 0, 0
    import torch

    return int(torch.cuda.memory_allocated(device)), int(torch.cuda.memory_reserved(device))
