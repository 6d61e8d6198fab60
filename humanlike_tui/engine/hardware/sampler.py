"""Live GPU readings (memory, utilisation, power) about once a second, for the VRAM chart and energy."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable
from humanlike_tui.engine.hardware.gpu import NVML_TEMPERATURE_GPU, plain_dict, load_nvml, nvml_shutdown, nvml_text


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
        return plain_dict(self)


class GpuSampler:
    """Cheap readings (a handful of NVML calls, well under a millisecond per GPU) for the VRAM graph.

    No thread inside: the caller polls `sample()` about once a second from its own worker. NVML is
    initialised once and kept open until `close()`. Without NVML it falls back to torch's counters
    when this process already uses CUDA, and otherwise returns an empty list.
    """

    def __init__(self, indices: list[int] | None = None, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._nvml = load_nvml()
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
        temp = _quiet(nvml, "nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU)
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
                uuid = nvml_text(self._nvml.nvmlDeviceGetUUID(handle)).removeprefix("GPU-")
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
            nvml_shutdown(self._nvml)
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




def gpu_power_reader(index: int) -> Callable[[], float | None] | None:
    """Watts drawn by our GPU, from NVML, for the energy figure kept in the run's metadata."""
    sampler = GpuSampler(indices=[index])
    if not sampler.available:
        return None

    def read() -> float | None:
        samples = sampler.sample()
        return samples[0].power_w if samples else None
    return read


def read_watts(power: Callable[[], float | None] | None) -> float | None:
    """Watts now from a power reader, or None: a failing sensor must never stop training."""
    if power is None:
        return None
    try:
        return power()
    except Exception:  # noqa: BLE001
        return None
