"""The hardware probe and sampler against a fake NVML: the real pynvml module with its functions
monkeypatched, so the real NVMLError classes and call shapes are used, and no driver is needed."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field

import pynvml
import pytest

from humanlike_tui.engine import hardware as hardware
from humanlike_tui.engine.hardware.probe import BnbInfo, TorchInfo, recommendations
from humanlike_tui.energy import EnergyMeter
from humanlike_tui.engine.hardware.sampler import GpuSample, GpuSampler
from humanlike_tui.engine.hardware.gpu import NvmlReport, probe_nvml
from humanlike_tui.engine.hardware import probe as probe_mod

GiB = 1024**3


@dataclass
class FakeGpu:
    name: str = "NVIDIA GeForce RTX 3060"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000001"
    cc: tuple[int, int] = (8, 6)
    total: int = 12 * GiB
    used: int = 1 * GiB
    util: int = 37
    mem_util: int = 12
    temp: int = 55
    power_mw: int = 120_500
    limit_mw: int = 170_000
    # (pid, used bytes or None = the driver does not tell, as on Windows WDDM)
    processes: list[tuple[int, int | None]] = field(default_factory=lambda: [(4242, 900 * 1024**2)])
    # NVML function name -> NVML error code it raises for this GPU
    failing: dict[str, int] = field(default_factory=dict)


class FakeNvml:
    """Installs fake NVML functions on the real pynvml module for the duration of a test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu], init_error: int | None = None,
                 driver: str = "550.54.14", cuda: int = 12040):
        self.gpus = gpus
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: list[str] = []
        fake = {
            "nvmlInit": self._init(init_error),
            "nvmlShutdown": self._shutdown,
            "nvmlSystemGetDriverVersion": lambda: driver,
            "nvmlSystemGetCudaDriverVersion": lambda: cuda,
            "nvmlDeviceGetCount": lambda: len(self.gpus),
            "nvmlDeviceGetHandleByIndex": self._handle,
            "nvmlDeviceGetName": self._q("nvmlDeviceGetName", lambda g: g.name),
            "nvmlDeviceGetUUID": self._q("nvmlDeviceGetUUID", lambda g: g.uuid),
            "nvmlDeviceGetCudaComputeCapability": self._q("nvmlDeviceGetCudaComputeCapability", lambda g: g.cc),
            "nvmlDeviceGetMemoryInfo": self._q("nvmlDeviceGetMemoryInfo", lambda g: types.SimpleNamespace(
                total=g.total, used=g.used, free=g.total - g.used)),
            "nvmlDeviceGetUtilizationRates": self._q("nvmlDeviceGetUtilizationRates",
                                                     lambda g: types.SimpleNamespace(gpu=g.util, memory=g.mem_util)),
            "nvmlDeviceGetTemperature": self._q("nvmlDeviceGetTemperature", lambda g: g.temp),
            "nvmlDeviceGetPowerUsage": self._q("nvmlDeviceGetPowerUsage", lambda g: g.power_mw),
            "nvmlDeviceGetEnforcedPowerLimit": self._q("nvmlDeviceGetEnforcedPowerLimit", lambda g: g.limit_mw),
            "nvmlDeviceGetComputeRunningProcesses": self._q("nvmlDeviceGetComputeRunningProcesses", lambda g: [
                types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in g.processes]),
            "nvmlDeviceGetGraphicsRunningProcesses": self._q("nvmlDeviceGetGraphicsRunningProcesses", lambda g: []),
            "nvmlSystemGetProcessName": lambda pid: b"/usr/bin/python3",
        }
        for name, fn in fake.items():
            monkeypatch.setattr(pynvml, name, fn)

    def _init(self, error: int | None):
        def init():
            self.init_calls += 1
            if error is not None:
                raise pynvml.NVMLError(error)
        return init

    def _shutdown(self):
        self.shutdown_calls += 1

    def _handle(self, index: int):
        if index >= len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ("handle", index)

    def _q(self, fn_name: str, getter):
        def query(handle, *args):
            self.calls.append(fn_name)
            gpu = self.gpus[handle[1]]
            if fn_name in gpu.failing:
                raise pynvml.NVMLError(gpu.failing[fn_name])
            return getter(gpu)
        return query


def test_one_gpu_every_field(monkeypatch):
    nv = FakeNvml(monkeypatch, [FakeGpu()])
    report = probe_nvml()
    assert report.available and report.error == ""
    assert report.driver_version == "550.54.14"
    assert report.cuda_driver_version == "12.4"
    (gpu,) = report.gpus
    assert gpu.name == "NVIDIA GeForce RTX 3060"
    assert gpu.compute_capability == (8, 6) and gpu.bf16 is True
    assert (gpu.memory_total, gpu.memory_used, gpu.memory_free) == (12 * GiB, 1 * GiB, 11 * GiB)
    assert (gpu.utilization_gpu, gpu.temperature_c) == (37, 55)
    assert gpu.power_w == pytest.approx(120.5) and gpu.power_limit_w == pytest.approx(170.0)
    assert gpu.processes == (hardware.GpuProcess(pid=4242, name="python3", used_bytes=900 * 1024**2),)
    assert gpu.errors == ()
    assert nv.init_calls == nv.shutdown_calls == 1  # the probe leaves NVML closed


def test_two_gpus_are_listed_in_order(monkeypatch):
    FakeNvml(monkeypatch, [FakeGpu(), FakeGpu(name="Tesla T4", cc=(7, 5), total=16 * GiB, used=0, processes=[])])
    report = probe_nvml()
    assert [g.index for g in report.gpus] == [0, 1]
    assert report.gpus[1].name == "Tesla T4" and report.gpus[1].bf16 is False
    assert report.gpus[1].processes == ()
    assert report.gpus[1].memory_free == 16 * GiB


def test_no_driver_says_so_and_recommends_the_cpu_demo(monkeypatch):
    FakeNvml(monkeypatch, [], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    report = probe_nvml()
    assert not report.available and report.gpus == ()
    assert "Library Not Found" in report.error
    notes = recommendations(report, TorchInfo(installed=True, version="2.13.0+cpu"),
                            BnbInfo(importable=True, matmul_4bit=True))
    assert len(notes) == 1
    assert "No NVIDIA GPU driver found" in notes[0] and "humanlike-tui train --preset demo" in notes[0]


def test_driver_not_loaded_is_reported(monkeypatch):
    FakeNvml(monkeypatch, [], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    report = probe_nvml()
    assert not report.available and "Driver Not Loaded" in report.error


def test_per_process_memory_not_available_gives_none_not_a_crash(monkeypatch):
    # Windows WDDM: NVML lists the processes but pynvml returns usedGpuMemory=None.
    FakeNvml(monkeypatch, [FakeGpu(processes=[(10, None), (11, 2 * GiB)])])
    (gpu,) = probe_nvml().gpus
    assert [(p.pid, p.used_bytes) for p in gpu.processes] == [(10, None), (11, 2 * GiB)]
    assert gpu.to_dict()["processes"][0]["used_bytes"] is None
    assert gpu.errors == ()


def test_process_listing_refused_gives_none(monkeypatch):
    FakeNvml(monkeypatch, [FakeGpu(failing={
        "nvmlDeviceGetComputeRunningProcesses": pynvml.NVML_ERROR_NO_PERMISSION,
        "nvmlDeviceGetGraphicsRunningProcesses": pynvml.NVML_ERROR_NOT_SUPPORTED})])
    (gpu,) = probe_nvml().gpus
    assert gpu.processes is None
    assert gpu.memory_total == 12 * GiB  # the rest of the report is intact
    assert any("processes (compute)" in e and "Insufficient Permissions" in e for e in gpu.errors)


def test_one_failing_query_degrades_only_that_field(monkeypatch):
    FakeNvml(monkeypatch, [FakeGpu(failing={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED,
                                            "nvmlDeviceGetTemperature": pynvml.NVML_ERROR_UNKNOWN})])
    (gpu,) = probe_nvml().gpus
    assert gpu.power_w is None and gpu.temperature_c is None
    assert gpu.power_limit_w == pytest.approx(170.0) and gpu.memory_used == 1 * GiB
    assert gpu.name == "NVIDIA GeForce RTX 3060" and gpu.processes is not None
    assert sorted(e.split(":")[0] for e in gpu.errors) == ["power", "temperature"]


def test_a_failing_memory_query_keeps_the_gpu_listed(monkeypatch):
    FakeNvml(monkeypatch, [FakeGpu(failing={"nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_GPU_IS_LOST}),
                           FakeGpu(name="second")])
    gpus = probe_nvml().gpus
    assert gpus[0].memory_total is None and gpus[0].memory_free is None
    assert gpus[1].memory_total == 12 * GiB


def test_a_missing_pynvml_function_degrades_the_field(monkeypatch):
    FakeNvml(monkeypatch, [FakeGpu()])
    monkeypatch.delattr(pynvml, "nvmlDeviceGetEnforcedPowerLimit")
    (gpu,) = probe_nvml().gpus
    assert gpu.power_limit_w is None and gpu.power_w == pytest.approx(120.5)
    assert any(e.startswith("power_limit:") for e in gpu.errors)


def test_report_to_dict_is_json_with_required_keys(monkeypatch):
    FakeNvml(monkeypatch, [FakeGpu()])
    monkeypatch.setattr(probe_mod, "probe_torch", lambda: TorchInfo(
        installed=True, version="2.5.1+cu124", cuda_available=True, device_count=1, bf16=True, cuda_version="12.4"))
    report = hardware.probe_hardware(check_bnb=False)
    d = json.loads(json.dumps(report.to_dict()))
    assert {"gpus", "cuda_available", "bf16", "bitsandbytes", "system", "torch"} <= d.keys()
    assert d["gpus"][0]["compute_capability"] == [8, 6] and d["cuda_available"] is True
    assert report.free_memory(0) == 11 * GiB and report.free_memory(3) is None
    assert report.training_device == "cuda"


def test_gpu_without_usable_torch_says_how_to_fix():
    nvml = NvmlReport(available=True, driver_version="550", cuda_driver_version="12.4",
                      gpus=(hardware.GpuInfo(index=0, name="RTX", compute_capability=(8, 9)),))
    notes = recommendations(nvml, TorchInfo(installed=True, version="2.13.0+cpu"),
                            BnbInfo(importable=True, matmul_4bit=True))
    assert "CPU-only build" in notes[0] and "CUDA build of torch" in notes[0]


def test_bitsandbytes_missing_is_explained():
    nvml = NvmlReport(available=False, error="x")
    notes = recommendations(nvml, TorchInfo(installed=True), BnbInfo(importable=False, error="no module"))
    assert any("pip install -U bitsandbytes" in n for n in notes)


def test_real_probe_on_this_machine_never_raises():
    # No NVIDIA driver in CI: the report must still come back, with the CPU path checked for real.
    report = hardware.probe_hardware()
    assert isinstance(report.to_dict()["gpus"], list)
    assert report.system.python
    assert report.system.disk_free is None or report.system.disk_free >= 0
    if not report.cuda_available:
        assert report.bnb.device == "cpu"
        assert report.bnb.matmul_4bit, report.bnb.error  # bnb >= 0.45 runs 4-bit on the CPU


def test_module_import_stays_light():
    # The UI imports this module on its first frame; torch and pynvml must load only when used.
    code = ("import sys, humanlike_tui.engine.hardware; "
            "print(any(m in sys.modules for m in ('torch', 'pynvml', 'bitsandbytes', 'textual')))")
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- sampler -----------------------------------------------------------------------------------


def test_sampler_reads_every_gpu(monkeypatch):
    nv = FakeNvml(monkeypatch, [FakeGpu(), FakeGpu(used=3 * GiB, power_mw=50_000)])
    with GpuSampler(clock=lambda: 100.0) as sampler:
        samples = sampler.sample()
        assert sampler.available
    assert [s.index for s in samples] == [0, 1]
    assert samples[1] == GpuSample(timestamp=100.0, index=1, used_bytes=3 * GiB, total_bytes=12 * GiB,
                                   torch_reserved=0, torch_allocated=0, util_percent=37, temperature_c=55,
                                   power_w=50.0)
    assert nv.init_calls == 1 and nv.shutdown_calls == 1  # one init for the sampler's life, not per sample


def test_sampler_survives_a_failing_query(monkeypatch):
    FakeNvml(monkeypatch, [FakeGpu(failing={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED})])
    sampler = GpuSampler()
    (s,) = sampler.sample()
    assert s.power_w is None and s.used_bytes == 1 * GiB
    sampler.close()


def test_sampler_without_driver_is_empty(monkeypatch):
    FakeNvml(monkeypatch, [], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    sampler = GpuSampler()
    assert sampler.sample() == [] and not sampler.available


def test_sampler_is_cheap(monkeypatch):
    # Cheap by construction, not by a stopwatch: per sample, only the few live readings are queried
    # (no init, no name/UUID/process look-ups, which are slow on real drivers).
    nv = FakeNvml(monkeypatch, [FakeGpu()])
    sampler = GpuSampler()
    sampler.sample()
    before = len(nv.calls)
    for _ in range(10):
        sampler.sample()
    per_sample = (len(nv.calls) - before) / 10
    assert per_sample <= 4, nv.calls[before:]
    assert not {"nvmlDeviceGetName", "nvmlDeviceGetComputeRunningProcesses"} & set(nv.calls[before:])
    assert nv.init_calls == 1


def test_energy_meter_integrates_watts_into_watt_hours():
    # One integration for the trainer and the UI (humanlike_tui.energy); the trainer bridges whole steps.
    meter = EnergyMeter(max_gap_s=600)
    meter.add(0.0, 100.0)
    meter.add(1.0, 200.0)
    # trapezoid: (100 + 200) / 2 W for 1 s = 150 J = 150 / 3600 Wh
    assert meter.wh == pytest.approx(150 / 3600)
    meter.add(700.0, 200.0)  # longer than max_gap_s: not bridged
    assert meter.wh == pytest.approx(150 / 3600)
    meter.add(701.0, None)  # no sensor: nothing invented, and the next reading starts afresh
    meter.add(702.0, 200.0)
    assert meter.wh == pytest.approx(150 / 3600)
    assert EnergyMeter(wh=1.5).cost(price_per_kwh=0.30) == pytest.approx(1.5 / 1000 * 0.30)


def test_sampler_maps_torch_counters_by_uuid(monkeypatch):
    # Under CUDA_VISIBLE_DEVICES=1 torch's device 0 is NVML's GPU 1: counters must follow the UUID.
    FakeNvml(monkeypatch, [FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb")])
    fake_cuda = types.SimpleNamespace(
        is_initialized=lambda: True, device_count=lambda: 1,
        get_device_properties=lambda i: types.SimpleNamespace(uuid="bbbb"),
        memory_reserved=lambda i: 3 * GiB, memory_allocated=lambda i: 2 * GiB)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    samples = GpuSampler().sample()
    assert (samples[0].torch_reserved, samples[1].torch_reserved) == (0, 3 * GiB)
    assert samples[1].torch_allocated == 2 * GiB
