"""`humanlike-tui hw` through cli.main, with scripted hardware reports (and one real probe)."""

from __future__ import annotations

import json

import pytest

from humanlike_tui.cli import main
from humanlike_tui.engine import hardware as hardware
from humanlike_tui.engine.hardware.probe import BnbInfo, HardwareReport, SystemInfo, TorchInfo, recommendations
from humanlike_tui.engine.hardware.gpu import GpuInfo, GpuProcess, NvmlReport
from humanlike_tui.engine.bench import peak
from humanlike_tui.engine.hardware import probe as probe_mod

GiB = 2**30
SYSTEM = SystemInfo(os="Linux 6.1", python="CPython 3.11.7", cpu_count=8, ram_total=32 * GiB,
                    ram_available=24 * GiB, data_dir="/tmp/hl", disk_free=100 * GiB)


def _report(nvml: NvmlReport, torch_info: TorchInfo, bnb: BnbInfo) -> HardwareReport:
    return HardwareReport(nvml=nvml, torch=torch_info, bnb=bnb, system=SYSTEM,
                          recommendations=recommendations(nvml, torch_info, bnb))


def gpu_report(free_gib: float = 7.5) -> HardwareReport:
    gpu = GpuInfo(index=0, name="NVIDIA GeForce RTX 3070", compute_capability=(8, 6), memory_total=8 * GiB,
                  memory_used=int((8 - free_gib) * GiB), memory_free=int(free_gib * GiB), utilization_gpu=3,
                  temperature_c=41, power_w=22.5, power_limit_w=220.0,
                  processes=(GpuProcess(pid=1234, name="Xorg", used_bytes=300 * 2**20),))
    return _report(NvmlReport(available=True, driver_version="550.54", cuda_driver_version="12.4", gpus=(gpu,)),
                   TorchInfo(installed=True, version="2.5.1+cu124", cuda_available=True, device_count=1, bf16=True,
                             cuda_version="12.4", device_names=("NVIDIA GeForce RTX 3070",)),
                   BnbInfo(importable=True, version="0.50.2", device="cuda", matmul_4bit=True))


def no_driver_report() -> HardwareReport:
    return _report(NvmlReport(available=False, error="NVML Shared Library Not Found"),
                   TorchInfo(installed=True, version="2.13.0+cpu"),
                   BnbInfo(importable=True, version="0.50.2", device="cpu", matmul_4bit=True))


@pytest.fixture
def fake_probe(monkeypatch):
    def use(report: HardwareReport):
        monkeypatch.setattr(probe_mod, "probe_hardware", lambda check_bnb=True: report)
    return use


def test_json_has_the_documented_keys_and_a_plan(fake_probe, capsys):
    fake_probe(gpu_report())
    assert main(["hw", "--json", "--preset", "gaming-8gb"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"gpus", "cuda_available", "bf16", "bitsandbytes", "plan"} <= data.keys()
    assert data["gpus"][0]["name"] == "NVIDIA GeForce RTX 3070" and data["cuda_available"] is True
    plan = data["plan"]
    assert plan["device"] == "cuda" and plan["compute_dtype"] == "bf16"
    assert plan["available_bytes"] == int(7.5 * GiB)
    assert plan["verdict"] in ("fits", "tight", "does not fit")
    assert sum(item["bytes"] for item in plan["items"]) == plan["peak_bytes"]


def test_json_without_config_plans_the_default_preset_with_the_cpu_time(fake_probe, capsys):
    """`hw` alone gave "plan": null; now the default preset's plan, and on a CPU the workbench's own time
    and advice (planning.CpuTime): one source for both."""
    from humanlike_tui.config import load_preset
    from humanlike_tui.engine import planning

    fake_probe(no_driver_report())
    assert main(["hw", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpus"] == [] and data["cuda_available"] is False
    assert "humanlike-tui train --preset demo" in data["recommendations"][0]
    assert data["preset"] == "gaming-8gb" and data["plan"]["device"] == "cpu"
    cpu = data["cpu_time"]
    expected = planning.cpu_time(load_preset("gaming-8gb"), data["plan"]["total_params"], SYSTEM.cpu_count)
    assert cpu["time"] == expected.time_text() and "days for 600 steps" in cpu["time"]
    assert cpu["advice"] == expected.advice() and "builtin:smollm2-135m" in cpu["advice"]


def test_set_alone_plans_the_default_preset_with_that_model(fake_probe, capsys):
    """The README's own example printed no plan."""
    fake_probe(no_driver_report())
    assert main(["hw", "--set", "model.name=Qwen/Qwen3-1.7B"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Qwen/Qwen3-1.7B" in out and "default preset gaming-8gb" in out
    assert "On this CPU: roughly" in out and "practical on this CPU: builtin:tiny-phi" in out


def test_human_report_without_driver_recommends_the_demo(fake_probe, capsys):
    fake_probe(no_driver_report())
    assert main(["hw"]) == 0
    out = capsys.readouterr().out
    assert "no NVIDIA driver found" in out
    assert "humanlike-tui train --preset demo" in out
    assert "4-bit matmul OK" in out


def test_human_report_with_gpu_and_plan(fake_probe, capsys):
    fake_probe(gpu_report(free_gib=3.0))
    assert main(["hw", "--preset", "gaming-8gb", "--set", "model.gradient_checkpointing=false"]) == 0
    out = capsys.readouterr().out
    assert "RTX 3070" in out and "Xorg" in out
    assert "DOES NOT FIT" in out
    assert "model.gradient_checkpointing" in out  # the first suggestion


def test_vram_flag_plans_for_a_gpu_this_machine_lacks(fake_probe, capsys):
    fake_probe(no_driver_report())
    assert main(["hw", "--json", "--preset", "gaming-8gb", "--vram", "8"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["device"] == "cuda" and plan["available_bytes"] == 8 * GiB and "--vram" in plan["available_source"]


def test_without_gpu_the_plan_is_for_the_cpu(fake_probe, capsys):
    fake_probe(no_driver_report())
    assert main(["hw", "--json", "--preset", "demo"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["device"] == "cpu" and plan["compute_dtype"] == "fp32" and plan["verdict"] == "fits"


def test_config_errors_exit_2(fake_probe, capsys):
    fake_probe(no_driver_report())
    assert main(["hw", "--preset", "nope"]) == 2
    assert "preset 'nope' does not exist" in capsys.readouterr().err
    assert main(["hw", "--preset", "demo", "--set", "data.max_length=1"]) == 2
    assert "data.max_length" in capsys.readouterr().err
    assert main(["hw", "--preset", "demo", "--vram", "0"]) == 2


def test_real_probe_end_to_end(capsys):
    # This machine as it is (CI has no NVIDIA driver): must exit 0 and print valid JSON.
    assert main(["hw", "--json", "--no-bnb-check"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data["gpus"], list) and data["bitsandbytes"]["error"] == "not checked"


def test_measure_flag_prints_measured_next_to_estimate(fake_probe, monkeypatch, capsys):

    fake_probe(gpu_report())
    fake = peak.PeakCheck(device="cuda", steps=3, measured_bytes=5 * GiB, estimated_bytes=4 * GiB, seq_len=512,
                            tokens=4096, budget_reduced=False, run_id="x")
    monkeypatch.setattr(peak, "measure_peak", lambda cfg, steps: fake)
    assert main(["hw", "--preset", "gaming-8gb", "--measure"]) == 0
    assert "+25%" in capsys.readouterr().out
    assert main(["hw", "--json", "--preset", "gaming-8gb", "--measure", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["measured"]["error"] == 0.25


def test_measure_needs_a_config(fake_probe, capsys):
    fake_probe(no_driver_report())
    assert main(["hw", "--measure"]) == 2
    assert "--measure: needs a config" in capsys.readouterr().err
