"""The GPU probe through NVML: each card's name, memory, driver, temperature, processes. A null report
when there is no driver; a field NVML cannot read is recorded with its error, never raised."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


NA = "n/a"  # a figure that could not be read
# NVML's "GPU temperature" sensor id; the constant is 0 in every NVML release.
NVML_TEMPERATURE_GPU = 0


def plain_dict(obj: Any) -> dict[str, Any]:
    """dataclasses.asdict with tuples as lists, so the result is ready for json.dumps."""
    def convert(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return {k: convert(v) for k, v in dataclasses.asdict(obj).items()}


@dataclass(frozen=True)
class GpuProcess:
    """A process holding memory on a GPU. `used_bytes` is None where the driver does not tell
    (Windows WDDM, containers without the host's PID namespace)."""

    pid: int
    name: str = NA
    used_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)


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
        d = plain_dict(self)
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
        return {**plain_dict(self), "gpus": [g.to_dict() for g in self.gpus]}


def load_nvml() -> Any | None:
    """The pynvml module, or None when nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def nvml_text(value: Any) -> str:
    """NVML strings are bytes in old pynvml releases and str in new ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def error_text(exc: BaseException) -> str:
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
            self.errors.append(f"{field_name}: {error_text(exc)}")
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
        name = nvml_text(nvml.nvmlSystemGetProcessName(pid))
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
    temp = errors.get("temperature", nvml, "nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU)
    power_mw = errors.get("power", nvml, "nvmlDeviceGetPowerUsage", handle)
    limit_mw = errors.get("power_limit", nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    processes = _gpu_processes(nvml, handle, errors)
    return GpuInfo(
        index=index,
        name=nvml_text(name) if name is not None else NA,
        uuid=nvml_text(uuid) if uuid is not None else None,
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
    nvml = load_nvml()
    if nvml is None:
        return NvmlReport(available=False, error="nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, OSError ...
        return NvmlReport(available=False, error=error_text(exc))
    try:
        errors = _FieldErrors()
        driver = errors.get("driver_version", nvml, "nvmlSystemGetDriverVersion")
        cuda = errors.get("cuda_driver_version", nvml, "nvmlSystemGetCudaDriverVersion")
        count = errors.get("device_count", nvml, "nvmlDeviceGetCount")
        if count is None:
            return NvmlReport(available=False, error="; ".join(errors.errors),
                              driver_version=nvml_text(driver) if driver is not None else None)
        return NvmlReport(
            available=True,
            driver_version=nvml_text(driver) if driver is not None else None,
            cuda_driver_version=_cuda_version_text(cuda),
            gpus=tuple(_probe_gpu(nvml, i) for i in range(int(count))),
        )
    finally:
        nvml_shutdown(nvml)


def nvml_shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - nothing to do about a failed shutdown
        pass
