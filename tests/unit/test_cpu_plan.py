"""The plan on a CPU says how long the run would take there (engine/planning/duration.py), so a big model
that fits in RAM is not shown as a bare FITS beside advice that only small models are practical."""

from __future__ import annotations

from humanlike_tui.config import load_preset
from humanlike_tui.engine import planning
from humanlike_tui.engine.hardware.gpu import NvmlReport
from humanlike_tui.engine.hardware.probe import BnbInfo, HardwareReport, SystemInfo, TorchInfo, recommendations
from humanlike_tui.protocols import HardwareView
from humanlike_tui.ui.services import EngineHardware

GiB = 2**30


def cpu_view(ram_gib: float = 9.0, cores: int = 2) -> HardwareView:
    nvml, torch_info = NvmlReport(available=False, error="no driver"), TorchInfo(installed=True, version="2.13.0+cpu")
    bnb = BnbInfo(importable=True, version="0.50.2", device="cpu", matmul_4bit=True)
    system = SystemInfo(os="Linux", python="CPython 3.11", cpu_count=cores, ram_total=16 * GiB,
                        ram_available=int(ram_gib * GiB), data_dir="/data", disk_free=GiB)
    report = HardwareReport(nvml=nvml, torch=torch_info, bnb=bnb, system=system,
                            recommendations=recommendations(nvml, torch_info, bnb))
    return HardwareView({}, report.recommendations, {}, report)


def test_speed_scales_with_cores_and_size():
    assert planning.cpu_tokens_per_s(135_000_000, 2) == 2 * planning.cpu_tokens_per_s(135_000_000, 1)
    assert 30 < planning.cpu_tokens_per_s(134_500_000, 2) < 60  # SmolLM2-135M as measured on 2 cores
    assert planning.cpu_tokens_per_s(2_780_000_000, 2) < 2  # phi-2: under 2 tokens/s


def test_phi2_fits_in_ram_but_the_plan_says_it_would_take_weeks():
    plan = EngineHardware().plan(load_preset("gaming-8gb"), cpu_view())
    assert plan.device == "cpu" and plan.verdict in ("fits", "tight")
    assert "days for 600 steps" in plan.slow and "tokens/s on 2 CPU cores" in plan.slow
    assert "builtin:tiny-phi" in plan.lines[0]  # what is practical here, first
    demo = EngineHardware().plan(load_preset("demo"), cpu_view())
    assert demo.slow == "" and demo.lines[0].startswith("time: roughly")


def test_cpu_advice_no_longer_says_only_the_tiny_model():
    advice = " ".join(cpu_view().advice)
    assert "only the builtin tiny model" not in advice and "smol-cpu" in advice and "how long" in advice
