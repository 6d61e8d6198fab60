"""The hardware report: GPU (gpu.py), torch and CUDA, bitsandbytes actually computing, RAM and disk,
and recommendations a person can act on."""

from __future__ import annotations

import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from humanlike_tui import __version__
from humanlike_tui.engine.hardware.gpu import NA, GpuInfo, NvmlReport, plain_dict, error_text, probe_nvml


DEMO_HINT = "humanlike-tui train --preset demo"


@dataclass(frozen=True)
class TorchInfo:
    installed: bool
    version: str = NA
    cuda_available: bool = False
    device_count: int = 0
    bf16: bool = False  # bf16 on the GPU (CPU bf16 does not matter for the choice of compute dtype)
    cuda_version: str | None = None  # CUDA that torch was built with; None for a CPU-only build
    device_names: tuple[str, ...] = ()
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)


@dataclass(frozen=True)
class BnbInfo:
    """bitsandbytes: importable, and did a real 4-bit quantize + matmul give the right numbers?"""

    importable: bool
    version: str = NA
    device: str = NA
    matmul_4bit: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)


@dataclass(frozen=True)
class SystemInfo:
    os: str
    python: str
    cpu_count: int | None = None
    ram_total: int | None = None
    ram_available: int | None = None
    data_dir: str = ""
    disk_free: int | None = None  # free bytes on the disk that holds data_dir

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)


@dataclass(frozen=True)
class HardwareReport:
    nvml: NvmlReport
    torch: TorchInfo
    bnb: BnbInfo
    system: SystemInfo
    recommendations: tuple[str, ...] = ()

    @property
    def gpus(self) -> tuple[GpuInfo, ...]:
        return self.nvml.gpus

    @property
    def cuda_available(self) -> bool:
        return self.torch.cuda_available

    @property
    def bf16(self) -> bool:
        return self.torch.bf16

    @property
    def training_device(self) -> str:
        return "cuda" if self.torch.cuda_available else "cpu"

    def free_memory(self, index: int = 0) -> int | None:
        """Free bytes on a GPU as the driver sees it (what a new process can still get)."""
        for gpu in self.gpus:
            if gpu.index == index:
                return gpu.memory_free
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "cuda_available": self.cuda_available,
            "bf16": self.bf16,
            "device": self.training_device,
            "nvml": {k: v for k, v in self.nvml.to_dict().items() if k != "gpus"},
            "torch": self.torch.to_dict(),
            "bitsandbytes": self.bnb.to_dict(),
            "system": self.system.to_dict(),
            "recommendations": list(self.recommendations),
        }


def probe_torch() -> TorchInfo:
    """torch's view. Importing torch takes seconds: call this from a worker, not the UI thread."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install (missing DLL) raises OSError, not ImportError
        return TorchInfo(installed=False, error=f"torch cannot be imported: {error_text(exc)}")
    try:
        available = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if available else 0
        names = tuple(torch.cuda.get_device_name(i) for i in range(count))
        bf16 = bool(available and _native_bf16(torch))
    except Exception as exc:  # noqa: BLE001 - a driver/runtime mismatch surfaces here
        return TorchInfo(installed=True, version=torch.__version__, cuda_version=torch.version.cuda,
                         error=f"torch cannot use CUDA: {error_text(exc)}")
    return TorchInfo(installed=True, version=torch.__version__, cuda_available=available, device_count=count,
                     bf16=bf16, cuda_version=torch.version.cuda, device_names=names)


def _native_bf16(torch: Any) -> bool:
    """bf16 in hardware, not emulated (emulation is slower than fp16). The keyword is new in torch 2.4."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.cuda.is_bf16_supported())


class _QuietLogger:
    """bitsandbytes logs a warning on import on some CPUs about an optional kernel package; it is
    noise in a hardware report, so hold that logger at ERROR while importing."""

    NAMES = ("bitsandbytes", "bitsandbytes.backends.cpu.ops")

    def __enter__(self) -> None:
        self._levels = [(logging.getLogger(n), logging.getLogger(n).level) for n in self.NAMES]
        for logger, _ in self._levels:
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        for logger, level in self._levels:
            logger.setLevel(level)


def probe_bitsandbytes(device: str | None = None) -> BnbInfo:
    """Import bitsandbytes and run a real nf4 quantize + 4-bit matmul on `device` (default: cuda if
    available, else cpu), checked against the same matmul on the dequantized weight."""
    try:
        import torch
        with _QuietLogger():
            import bitsandbytes as bnb
            import bitsandbytes.functional as bnbf
    except Exception as exc:  # noqa: BLE001 - missing CUDA libs raise RuntimeError/OSError on import
        return BnbInfo(importable=False, error=f"bitsandbytes cannot be imported: {error_text(exc)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    version = getattr(bnb, "__version__", NA)
    try:
        ok, detail = _bnb_matmul_check(torch, bnb, bnbf, device)
    except Exception as exc:  # noqa: BLE001 - an unsupported GPU or missing kernel raises here
        return BnbInfo(importable=True, version=version, device=device,
                       error=f"4-bit matmul failed on {device}: {error_text(exc)}")
    return BnbInfo(importable=True, version=version, device=device, matmul_4bit=ok, error=detail)


def _bnb_matmul_check(torch: Any, bnb: Any, bnbf: Any, device: str) -> tuple[bool, str]:
    # Small on purpose (64x128 weight, batch of 4): it proves the kernels load and compute, in milliseconds.
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(128, 64, generator=gen).to(device=device, dtype=dtype)
    x = torch.randn(4, 64, generator=gen).to(device=device, dtype=dtype)
    packed, state = bnbf.quantize_4bit(weight, quant_type="nf4")
    out = bnb.matmul_4bit(x, packed.t(), quant_state=state)
    expected = x @ bnbf.dequantize_4bit(packed, state).t()
    if tuple(out.shape) != (4, 128):
        return False, f"4-bit matmul returned shape {tuple(out.shape)}, expected (4, 128)"
    err = (out.float() - expected.float()).abs().max().item()
    scale = expected.float().abs().max().item() or 1.0
    if not err <= 0.02 * scale:  # fp16 accumulation differs a little; a broken kernel is way off
        return False, f"4-bit matmul gave wrong numbers on {device} (max error {err:.3g})"
    return True, ""


def ram_bytes() -> tuple[int | None, int | None]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except Exception:  # noqa: BLE001 - psutil is optional; fall back to sysconf below
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        return int(total), int(avail)
    except (AttributeError, ValueError, OSError):
        return None, None


def _disk_free(path: Path) -> int | None:
    """Free space where runs will be written; the folder may not exist yet, so walk up to a parent that does."""
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return None


def probe_system() -> SystemInfo:
    from humanlike_tui.paths import data_dir

    ddir = data_dir()
    total, available = ram_bytes()
    return SystemInfo(
        os=f"{platform.system()} {platform.release()}".strip() or NA,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        cpu_count=os.cpu_count(),
        ram_total=total,
        ram_available=available,
        data_dir=str(ddir),
        disk_free=_disk_free(ddir),
    )


def recommendations(nvml: NvmlReport, torch_info: TorchInfo, bnb: BnbInfo) -> tuple[str, ...]:
    """Plain advice for what the probe found, most important first."""
    notes: list[str] = []
    if not nvml.available and not torch_info.cuda_available:
        notes.append(f"No NVIDIA GPU driver found ({nvml.error or 'NVML not available'}). Training will run on "
                     f"the CPU, where small models are practical: the CPU demo (`{DEMO_HINT}`, about a minute) or "
                     "the smol-cpu preset (a real 135M chat model, under an hour); the plan says how long a "
                     "bigger model would take.")
    elif nvml.available and not nvml.gpus:
        notes.append(f"The NVIDIA driver is loaded but reports no GPU. Try the CPU demo: `{DEMO_HINT}`.")
    elif torch_info.installed and not torch_info.cuda_available:
        why = f" ({torch_info.error})" if torch_info.error else ""
        build = "a CPU-only build" if torch_info.cuda_version is None else f"built for CUDA {torch_info.cuda_version}"
        notes.append(f"An NVIDIA GPU is present but torch {torch_info.version} ({build}) cannot use it{why}. "
                     "Install a CUDA build of torch that your driver supports "
                     f"(driver CUDA {nvml.cuda_driver_version or NA}); until then only `{DEMO_HINT}` is practical.")
    if not torch_info.installed:
        notes.append(f"{torch_info.error}; reinstall with `pip install torch`.")
    if not bnb.importable:
        notes.append(f"{bnb.error}. 4-bit training needs it: `pip install -U bitsandbytes`, "
                     "or set quant.mode = 'none' (needs far more memory).")
    elif not bnb.matmul_4bit:
        notes.append(f"bitsandbytes is installed but its 4-bit check failed ({bnb.error}); "
                     "set quant.mode = 'none' or update bitsandbytes.")
    for gpu in nvml.gpus:
        if gpu.compute_capability is not None and gpu.compute_capability < (7, 5):
            notes.append(f"GPU {gpu.index} ({gpu.name}) has compute capability "
                         f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}: no bf16, training uses fp16 "
                         "and is slower; 4-bit still works.")
    if torch_info.cuda_available and not torch_info.bf16:
        notes.append("This GPU has no bf16: quant.compute_dtype = auto will use fp16.")
    return tuple(notes)


def probe_hardware(*, check_bnb: bool = True) -> HardwareReport:
    """The full report. Takes a few seconds (imports torch, runs a bitsandbytes kernel): run it in a
    worker thread. `check_bnb=False` skips bitsandbytes entirely (the report then says so)."""
    nvml = probe_nvml()
    torch_info = probe_torch()
    if check_bnb:
        bnb = probe_bitsandbytes("cuda" if torch_info.cuda_available else "cpu")
    else:
        bnb = BnbInfo(importable=False, error="not checked")
    return HardwareReport(nvml=nvml, torch=torch_info, bnb=bnb, system=probe_system(),
                          recommendations=recommendations(nvml, torch_info, bnb))


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"humanlike_tui": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
