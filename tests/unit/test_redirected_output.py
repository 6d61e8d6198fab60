"""Redirected to a file or a pipe, the commands' output is never wrapped at 80 columns: paths and long
lines stay whole (commands/output.py); on a terminal, rich wraps at the terminal's width as before."""

from __future__ import annotations

import io
import sys

from humanlike_tui.cli import main
from humanlike_tui.commands.output import console
from humanlike_tui.engine.hardware import probe as probe_mod
from humanlike_tui.engine.hardware.probe import BnbInfo, HardwareReport, SystemInfo, TorchInfo, recommendations
from humanlike_tui.engine.hardware.gpu import NvmlReport

LONG_DIR = "/home/someone/.local/share/humanlike-tui/" + "/".join(f"folder-{i:02d}" for i in range(12))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_redirected_console_never_wraps(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    console().print(f"checkpoint at step 40: {LONG_DIR}/checkpoints/step-40")
    assert out.getvalue().count("\n") == 1 and f"{LONG_DIR}/checkpoints/step-40" in out.getvalue()
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    monkeypatch.setenv("COLUMNS", "80")
    console().print(f"checkpoint at step 40: {LONG_DIR}/checkpoints/step-40")
    assert tty.getvalue().count("\n") > 1  # a terminal 80 columns wide: wrapped there


def test_hw_piped_keeps_its_lines_whole(monkeypatch, capsys):
    system = SystemInfo(os="Linux 6.1", python="CPython 3.11.7", cpu_count=8, ram_total=32 * 2**30,
                        ram_available=24 * 2**30, data_dir=LONG_DIR, disk_free=100 * 2**30)
    nvml = NvmlReport(available=False, error="NVML Shared Library Not Found")
    torch_info = TorchInfo(installed=True, version="2.13.0+cpu")
    bnb = BnbInfo(importable=True, version="0.50.2", device="cpu", matmul_4bit=True)
    report = HardwareReport(nvml=nvml, torch=torch_info, bnb=bnb, system=system,
                            recommendations=recommendations(nvml, torch_info, bnb))
    monkeypatch.setattr(probe_mod, "probe_hardware", lambda check_bnb=True: report)
    assert main(["hw", "--preset", "demo"]) == 0
    out = capsys.readouterr().out
    assert any(LONG_DIR in line for line in out.splitlines())  # the folder on one line, not split
    assert max(len(line) for line in out.splitlines()) > 80
