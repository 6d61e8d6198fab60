"""What this machine can do: a GPU probe through NVML, torch's and bitsandbytes' view, the OS, RAM
and disk, plus a cheap sampler for the live VRAM graph.

The UI imports this module on its first frame, so the module itself imports only the stdlib; pynvml,
torch and bitsandbytes are imported inside the functions that need them. Nothing here raises because a
driver is missing or one NVML query fails: a failed query degrades that one field (None, shown as
"n/a") and is listed in the GPU's `errors`, so a half-working driver still gives a useful report.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

NA = "n/a"
DEMO_HINT = "humanlike-tui train --preset demo"
# NVML's "GPU temperature" sensor id; the constant is 0 in every NVML release.
_NVML_TEMPERATURE_GPU = 0


def _asdict(obj: Any) -> dict[str, Any]:
    """dataclasses.asdict with tuples as lists, so the result is ready for json.dumps."""
    def convert(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return {k: convert(v) for k, v in dataclasses.asdict(obj).items()}


# --------------------------------------------------------------------------------------------------
# Report types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuProcess:
    """A process holding memory on a GPU. `used_bytes` is None where the driver does not tell
    (Windows WDDM, containers without the host's PID namespace)."""

    pid: int
    name: str = NA
    used_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _asdict(self)


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML sees it. Any field may be None: that query failed (see `errors`)."""

    index: int
    name: str = NA
    uuid: str | None = None
    compute_capability: tuple[int, int] | None = None
    memory_total: int | None = None
    memory_used: int | None = None
    memory_free: int | None = None
    utilization_gpu: int | None = None  # percent of time a kernel ran in the last sample period
    utilization_memory: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    processes: tuple[GpuProcess, ...] | None = None  # None = the driver would not list them
    errors: tuple[str, ...] = ()  # "field: NVML error" for each query that failed

    @property
    def bf16(self) -> bool | None:
        """Ampere (8.0) and newer run bf16 natively; None when the capability is unknown."""
        return None if self.compute_capability is None else self.compute_capability >= (8, 0)

    def to_dict(self) -> dict[str, Any]:
        d = _asdict(self)
        d["bf16"] = self.bf16
        return d


@dataclass(frozen=True)
class NvmlReport:
    """The driver's view: whether NVML loaded, driver versions and every GPU."""

    available: bool
    error: str = ""  # why NVML is unavailable ("NVML Shared Library Not Found", ...)
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # highest CUDA the driver supports, e.g. "12.4"
    gpus: tuple[GpuInfo, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**_asdict(self), "gpus": [g.to_dict() for g in self.gpus]}


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
        return _asdict(self)


@dataclass(frozen=True)
class BnbInfo:
    """bitsandbytes: importable, and did a real 4-bit quantize + matmul give the right numbers?"""

    importable: bool
    version: str = NA
    device: str = NA
    matmul_4bit: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _asdict(self)


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
        return _asdict(self)


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


# --------------------------------------------------------------------------------------------------
# NVML
# --------------------------------------------------------------------------------------------------


def _load_nvml() -> Any | None:
    """The pynvml module, or None when nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _text(value: Any) -> str:
    """NVML strings are bytes in old pynvml releases and str in new ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


class _FieldErrors:
    """Runs one NVML query; a failure becomes None for that field and a line in `errors`.

    Catching every Exception (not only NVMLError) is deliberate: old pynvml builds lack some
    functions (AttributeError) and odd drivers return garbage (ValueError); none of that may take
    the whole report down.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def get(self, field_name: str, nvml: Any, fn_name: str, *args: Any) -> Any:
        try:
            return getattr(nvml, fn_name)(*args)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self.errors.append(f"{field_name}: {_error_text(exc)}")
            return None


def _cuda_version_text(version: int | None) -> str | None:
    """NVML's 12040 -> '12.4'."""
    if not isinstance(version, int) or version <= 0:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def _gpu_processes(nvml: Any, handle: Any, errors: _FieldErrors) -> tuple[GpuProcess, ...] | None:
    """Compute and graphics processes on a GPU, merged by pid. None if the driver lists neither."""
    lists = []
    for kind, fn_name in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                          ("graphics", "nvmlDeviceGetGraphicsRunningProcesses")):
        result = errors.get(f"processes ({kind})", nvml, fn_name, handle)
        if result is not None:
            lists.append(result)
    if not lists:
        return None
    by_pid: dict[int, GpuProcess] = {}
    for entries in lists:
        for entry in entries:
            pid = int(getattr(entry, "pid", -1))
            used = getattr(entry, "usedGpuMemory", None)
            # pynvml turns NVML_VALUE_NOT_AVAILABLE into None; keep a defensive check for raw values.
            if not isinstance(used, int) or used < 0 or used >= 2**63:
                used = None
            known = by_pid.get(pid)
            if known is not None and known.used_bytes is not None and used is None:
                continue
            by_pid[pid] = GpuProcess(pid=pid, name=_process_name(nvml, pid), used_bytes=used)
    return tuple(sorted(by_pid.values(), key=lambda p: p.pid))


def _process_name(nvml: Any, pid: int) -> str:
    """NVML knows the name when it may see the process; inside a container it often may not."""
    try:
        name = _text(nvml.nvmlSystemGetProcessName(pid))
        return Path(name).name or NA
    except Exception:  # noqa: BLE001 - a missing name is not worth an error line
        return NA


def _probe_gpu(nvml: Any, index: int) -> GpuInfo:
    errors = _FieldErrors()
    handle = errors.get("handle", nvml, "nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return GpuInfo(index=index, errors=tuple(errors.errors))
    name = errors.get("name", nvml, "nvmlDeviceGetName", handle)
    uuid = errors.get("uuid", nvml, "nvmlDeviceGetUUID", handle)
    cc = errors.get("compute_capability", nvml, "nvmlDeviceGetCudaComputeCapability", handle)
    mem = errors.get("memory", nvml, "nvmlDeviceGetMemoryInfo", handle)
    util = errors.get("utilization", nvml, "nvmlDeviceGetUtilizationRates", handle)
    temp = errors.get("temperature", nvml, "nvmlDeviceGetTemperature", handle, _NVML_TEMPERATURE_GPU)
    power_mw = errors.get("power", nvml, "nvmlDeviceGetPowerUsage", handle)
    limit_mw = errors.get("power_limit", nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    processes = _gpu_processes(nvml, handle, errors)
    return GpuInfo(
        index=index,
        name=_text(name) if name is not None else NA,
        uuid=_text(uuid) if uuid is not None else None,
        compute_capability=(int(cc[0]), int(cc[1])) if cc is not None else None,
        memory_total=int(mem.total) if mem is not None else None,
        memory_used=int(mem.used) if mem is not None else None,
        memory_free=int(mem.free) if mem is not None else None,
        utilization_gpu=int(util.gpu) if util is not None else None,
        utilization_memory=int(util.memory) if util is not None else None,
        temperature_c=int(temp) if temp is not None else None,
        power_w=power_mw / 1000.0 if power_mw is not None else None,  # NVML reports milliwatts
        power_limit_w=limit_mw / 1000.0 if limit_mw is not None else None,
        processes=processes,
        errors=tuple(errors.errors),
    )


def probe_nvml() -> NvmlReport:
    """Every GPU the driver knows. Without nvidia-ml-py or a driver: available=False and why."""
    nvml = _load_nvml()
    if nvml is None:
        return NvmlReport(available=False, error="nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, OSError ...
        return NvmlReport(available=False, error=_error_text(exc))
    try:
        errors = _FieldErrors()
        driver = errors.get("driver_version", nvml, "nvmlSystemGetDriverVersion")
        cuda = errors.get("cuda_driver_version", nvml, "nvmlSystemGetCudaDriverVersion")
        count = errors.get("device_count", nvml, "nvmlDeviceGetCount")
        if count is None:
            return NvmlReport(available=False, error="; ".join(errors.errors),
                              driver_version=_text(driver) if driver is not None else None)
        return NvmlReport(
            available=True,
            driver_version=_text(driver) if driver is not None else None,
            cuda_driver_version=_cuda_version_text(cuda),
            gpus=tuple(_probe_gpu(nvml, i) for i in range(int(count))),
        )
    finally:
        _nvml_shutdown(nvml)


def _nvml_shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - nothing to do about a failed shutdown
        pass


# --------------------------------------------------------------------------------------------------
# torch and bitsandbytes
# --------------------------------------------------------------------------------------------------


def probe_torch() -> TorchInfo:
    """torch's view. Importing torch takes seconds: call this from a worker, not the UI thread."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install (missing DLL) raises OSError, not ImportError
        return TorchInfo(installed=False, error=f"torch cannot be imported: {_error_text(exc)}")
    try:
        available = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if available else 0
        names = tuple(torch.cuda.get_device_name(i) for i in range(count))
        bf16 = bool(available and _native_bf16(torch))
    except Exception as exc:  # noqa: BLE001 - a driver/runtime mismatch surfaces here
        return TorchInfo(installed=True, version=torch.__version__, cuda_version=torch.version.cuda,
                         error=f"torch cannot use CUDA: {_error_text(exc)}")
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
        return BnbInfo(importable=False, error=f"bitsandbytes cannot be imported: {_error_text(exc)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    version = getattr(bnb, "__version__", NA)
    try:
        ok, detail = _bnb_matmul_check(torch, bnb, bnbf, device)
    except Exception as exc:  # noqa: BLE001 - an unsupported GPU or missing kernel raises here
        return BnbInfo(importable=True, version=version, device=device,
                       error=f"4-bit matmul failed on {device}: {_error_text(exc)}")
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


# --------------------------------------------------------------------------------------------------
# OS, RAM, disk
# --------------------------------------------------------------------------------------------------


def _ram() -> tuple[int | None, int | None]:
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
    total, available = _ram()
    return SystemInfo(
        os=f"{platform.system()} {platform.release()}".strip() or NA,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        cpu_count=os.cpu_count(),
        ram_total=total,
        ram_available=available,
        data_dir=str(ddir),
        disk_free=_disk_free(ddir),
    )


# --------------------------------------------------------------------------------------------------
# The whole report
# --------------------------------------------------------------------------------------------------


def recommendations(nvml: NvmlReport, torch_info: TorchInfo, bnb: BnbInfo) -> tuple[str, ...]:
    """Plain advice for what the probe found, most important first."""
    notes: list[str] = []
    if not nvml.available and not torch_info.cuda_available:
        notes.append(f"No NVIDIA GPU driver found ({nvml.error or 'NVML not available'}). Training will run on "
                     f"the CPU: only the builtin tiny model is practical. Try the CPU demo: `{DEMO_HINT}`.")
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


# --------------------------------------------------------------------------------------------------
# Live sampler
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSample:
    """One reading for the live graph. Driver numbers include every process; torch numbers are ours
    (0 when torch has not touched CUDA in this process). None = that query failed."""

    timestamp: float
    index: int
    used_bytes: int | None
    total_bytes: int | None
    torch_reserved: int = 0
    torch_allocated: int = 0
    util_percent: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _asdict(self)


class GpuSampler:
    """Cheap readings (a handful of NVML calls, well under a millisecond per GPU) for the VRAM graph.

    No thread inside: the caller polls `sample()` about once a second from its own worker. NVML is
    initialised once and kept open until `close()`. Without NVML it falls back to torch's counters
    when this process already uses CUDA, and otherwise returns an empty list.
    """

    def __init__(self, indices: list[int] | None = None, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._nvml = _load_nvml()
        self._handles: dict[int, Any] = {}
        self._torch_index: dict[int, int] | None = None
        if self._nvml is not None:
            try:
                self._nvml.nvmlInit()
            except Exception:  # noqa: BLE001 - no driver: torch-only sampling
                self._nvml = None
        if self._nvml is not None:
            wanted = indices if indices is not None else range(self._device_count())
            for i in wanted:
                try:
                    self._handles[i] = self._nvml.nvmlDeviceGetHandleByIndex(i)
                except Exception:  # noqa: BLE001 - a GPU that vanished is simply not sampled
                    continue

    @property
    def available(self) -> bool:
        return bool(self._handles) or self._torch_cuda() is not None

    def _device_count(self) -> int:
        try:
            return int(self._nvml.nvmlDeviceGetCount())
        except Exception:  # noqa: BLE001
            return 0

    def sample(self) -> list[GpuSample]:
        now = self._clock()
        if not self._handles:
            return self._torch_only(now)
        return [self._sample_one(now, i, h) for i, h in self._handles.items()]

    def _sample_one(self, now: float, index: int, handle: Any) -> GpuSample:
        nvml = self._nvml
        mem = _quiet(nvml, "nvmlDeviceGetMemoryInfo", handle)
        util = _quiet(nvml, "nvmlDeviceGetUtilizationRates", handle)
        temp = _quiet(nvml, "nvmlDeviceGetTemperature", handle, _NVML_TEMPERATURE_GPU)
        power_mw = _quiet(nvml, "nvmlDeviceGetPowerUsage", handle)
        reserved, allocated = self._torch_memory(index)
        return GpuSample(
            timestamp=now, index=index,
            used_bytes=int(mem.used) if mem is not None else None,
            total_bytes=int(mem.total) if mem is not None else None,
            torch_reserved=reserved, torch_allocated=allocated,
            util_percent=int(util.gpu) if util is not None else None,
            temperature_c=int(temp) if temp is not None else None,
            power_w=power_mw / 1000.0 if power_mw is not None else None,
        )

    @staticmethod
    def _torch_cuda() -> Any | None:
        """torch, only if this process already imported it and initialised CUDA: the sampler must
        neither pay torch's import time in the UI nor create a CUDA context (~400 MB) by asking."""
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_initialized():
                return torch
        except Exception:  # noqa: BLE001
            pass
        return None

    def _torch_memory(self, nvml_index: int) -> tuple[int, int]:
        torch = self._torch_cuda()
        if torch is None:
            return 0, 0
        t_index = self._torch_index_map(torch).get(nvml_index)
        if t_index is None:
            return 0, 0
        try:
            return int(torch.cuda.memory_reserved(t_index)), int(torch.cuda.memory_allocated(t_index))
        except Exception:  # noqa: BLE001
            return 0, 0

    def _torch_index_map(self, torch: Any) -> dict[int, int]:
        """NVML index -> torch index. They differ under CUDA_VISIBLE_DEVICES, so match by UUID;
        fall back to the same number when UUIDs are not available."""
        if self._torch_index is not None:
            return self._torch_index
        mapping: dict[int, int] = {}
        try:
            # NVML says "GPU-<uuid>"; torch's str() may or may not carry the prefix.
            torch_uuids = {str(torch.cuda.get_device_properties(i).uuid).removeprefix("GPU-"): i
                           for i in range(torch.cuda.device_count())}
            for i, handle in self._handles.items():
                uuid = _text(self._nvml.nvmlDeviceGetUUID(handle)).removeprefix("GPU-")
                if uuid in torch_uuids:
                    mapping[i] = torch_uuids[uuid]
        except Exception:  # noqa: BLE001
            mapping = {}
        if not mapping and not os.environ.get("CUDA_VISIBLE_DEVICES"):
            mapping = {i: i for i in self._handles}
        self._torch_index = mapping
        return mapping

    def _torch_only(self, now: float) -> list[GpuSample]:
        torch = self._torch_cuda()
        if torch is None:
            return []
        samples = []
        for i in range(torch.cuda.device_count()):
            try:
                free, total = torch.cuda.mem_get_info(i)
                samples.append(GpuSample(timestamp=now, index=i, used_bytes=int(total - free), total_bytes=int(total),
                                         torch_reserved=int(torch.cuda.memory_reserved(i)),
                                         torch_allocated=int(torch.cuda.memory_allocated(i))))
            except Exception:  # noqa: BLE001
                continue
        return samples

    def close(self) -> None:
        if self._nvml is not None:
            _nvml_shutdown(self._nvml)
            self._nvml = None
        self._handles = {}

    def __enter__(self) -> "GpuSampler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _quiet(nvml: Any, fn_name: str, *args: Any) -> Any:
    """A sampler query: failures give None and no log line (it runs every second)."""
    try:
        return getattr(nvml, fn_name)(*args)
    except Exception:  # noqa: BLE001
        return None


@dataclass
class EnergyMeter:
    """Integrates power samples into watt-hours (trapezoid rule), per GPU, for the energy/cost display.

    Gaps longer than `max_gap_s` (the sampler was paused) are not bridged: guessing the power across a
    pause would invent energy.
    """

    max_gap_s: float = 10.0
    wh: dict[int, float] = field(default_factory=dict)
    _last: dict[int, tuple[float, float]] = field(default_factory=dict)

    def add(self, samples: list[GpuSample]) -> float:
        for s in samples:
            if s.power_w is None:
                continue
            prev = self._last.get(s.index)
            if prev is not None:
                dt = s.timestamp - prev[0]
                if 0 < dt <= self.max_gap_s:
                    self.wh[s.index] = self.wh.get(s.index, 0.0) + (prev[1] + s.power_w) / 2 * dt / 3600.0
            self._last[s.index] = (s.timestamp, s.power_w)
        return self.total_wh

    @property
    def total_wh(self) -> float:
        return sum(self.wh.values())

    def cost(self, price_per_kwh: float) -> float:
        return self.total_wh / 1000.0 * price_per_kwh
