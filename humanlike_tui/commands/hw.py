"""`humanlike-tui hw`: what this machine can do, and with a config, whether that run fits in memory.

    humanlike-tui hw                         hardware report, and the plan of the default preset
    humanlike-tui hw --set model.name=Qwen/Qwen3-1.7B   ... of that preset with this model
    humanlike-tui hw --preset gaming-8gb     ... and the VRAM plan for that config
    humanlike-tui hw --preset gaming-8gb --vram 8   plan for an 8 GiB GPU (from a machine without one)
    humanlike-tui hw --json                  the same as one JSON object
    humanlike-tui hw --preset demo --measure  ... and 3 real steps: measured peak next to the estimate
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from humanlike_tui.cli import DEFAULT_PRESET, add_config_arguments, config_from_args, consent_to_remote_code
from humanlike_tui.errors import ConfigError
from humanlike_tui.formatting import gib, memory_text

VERDICT_STYLE = {"fits": "bold green", "tight": "bold yellow", "does not fit": "bold red", "unknown": "dim"}


MAX_VRAM_GIB = 100_000  # the largest GPUs have ~200 GiB; this bounds --vram so a plan's numbers stay numbers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    add_config_arguments(parser)
    parser.add_argument("--gpu", type=int, default=0, metavar="N", help="plan against GPU N (default 0)")
    parser.add_argument("--vram", type=float, metavar="GIB",
                        help="plan for a GPU with this many GiB free instead of this machine's")
    parser.add_argument("--no-bnb-check", dest="bnb_check", action="store_false",
                        help="skip the bitsandbytes 4-bit test matmul")
    parser.add_argument("--measure", type=int, nargs="?", const=3, default=0, metavar="STEPS",
                        help="also train STEPS real steps (default 3) and show the measured peak next to the "
                             "estimate (loads the model; the check run is deleted afterwards)")


def run(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.hardware.probe import probe_hardware

    if args.measure and not (args.config or args.preset):
        raise ConfigError("--measure: needs a config to train; add --preset NAME or --config FILE")
    # No config named: the plan of the default preset (train's), with any --set applied, so
    # `hw --set model.name=...` plans that model. ConfigError -> exit 2 in cli.main.
    cfg = config_from_args(args, default_preset=DEFAULT_PRESET)
    consent_to_remote_code(args, cfg)  # the plan reads the model's config, which may import its code
    if args.vram is not None and not 0 < args.vram <= MAX_VRAM_GIB:  # also false for nan; inf is past the limit
        raise ConfigError(f"--vram: must be a number of GiB > 0 and at most {MAX_VRAM_GIB:,} (a limit past any GPU), "
                          f"got {args.vram}")
    if args.measure < 0:
        raise ConfigError(f"--measure: must be a number of steps >= 1, got {args.measure}")
    report = probe_hardware(check_bnb=args.bnb_check)
    plan = _plan(cfg, report, args)
    cpu = _cpu_time(cfg, plan, report)
    if not args.json:
        _print_human(report, plan, cpu, "" if (args.config or args.preset) else DEFAULT_PRESET)
    check = _measure(cfg, args) if args.measure else None
    if args.json:
        data = {**report.to_dict(), "plan": plan.to_dict() if plan else None,
                "preset": args.preset or (None if args.config else DEFAULT_PRESET),
                "cpu_time": cpu.to_dict() if cpu else None}
        if check is not None:
            data["measured"] = check.to_dict()
        print(json.dumps(data, indent=2))
    elif check is not None:
        _print_check(check)
    return 0


def _cpu_time(cfg: Any, plan: Any, report: Any) -> Any:
    """How long the run would take on this CPU (planning.CpuTime, the workbench's figure); None on a GPU."""
    if plan is None or plan.device != "cpu":
        return None
    from humanlike_tui.engine import planning

    return planning.cpu_time(cfg, plan.total_params, getattr(report.system, "cpu_count", None))


def _measure(cfg: Any, args: argparse.Namespace) -> Any:
    import sys

    from humanlike_tui.engine.bench.peak import measure_peak

    print(f"training {args.measure} step(s) to measure the peak ...", file=sys.stderr)
    return measure_peak(cfg, steps=args.measure)


def _print_check(check: Any) -> None:
    from humanlike_tui.commands.output import console as make_console

    console = make_console(highlight=False)
    what = "torch's peak reserved memory" if check.device == "cuda" else "the process's peak RSS"
    console.print(f"Measured over {check.steps} step(s) on {check.device} ({check.tokens:,} tokens per pass, rows "
                  f"up to {check.seq_len}): {what} {memory_text(check.measured_bytes)}, estimate "
                  f"{memory_text(check.estimated_bytes)} ({check.error:+.0%}).", soft_wrap=True)
    if check.budget_reduced:
        console.print("[yellow]The engine ran out of memory and halved its token budget during the check.[/]")


def _plan(cfg: Any, report: Any, args: argparse.Namespace) -> Any:
    from humanlike_tui.engine.planning.shapes import GiB
    from humanlike_tui.engine.planning.advice import plan_for_hardware

    vram = int(args.vram * GiB) if args.vram is not None else None
    return plan_for_hardware(cfg, report, gpu_index=args.gpu, vram_bytes=vram)


# --- human output ----------------------------------------------------------------------------------


def _used_total(used: int | None, total: int | None) -> str:
    """'5.0/8.0 GiB': compact, so the GPU table fits an 80-column terminal."""
    return f"{gib(used, 1, unit=False, unknown='n/a')}/{gib(total, 1, unit=False, unknown='n/a')} GiB"


def _na(value: Any, fmt: str = "{}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _print_human(report: Any, plan: Any, cpu: Any = None, default_preset: str = "") -> None:
    from humanlike_tui.commands.output import console as make_console

    console = make_console(highlight=False)
    _print_gpus(console, report)
    _print_software(console, report)
    for note in report.recommendations:
        console.print(f"[yellow]![/] {note}", soft_wrap=True)
    if plan is not None:
        console.print()
        if default_preset:
            console.print(f"[dim]Plan for the default preset {default_preset} (--preset NAME or --config FILE "
                          "for another; --set KEY=VALUE changes it)[/]", soft_wrap=True)
        _print_plan(console, plan)
    if cpu is not None:
        console.print(f"On this CPU: {cpu.time_text()}", soft_wrap=True)
        if cpu.advice():
            console.print(f"[yellow]![/] {cpu.advice()}", soft_wrap=True)


def _print_gpus(console: Any, report: Any) -> None:
    from rich.table import Table

    nvml = report.nvml
    if not nvml.available:
        console.print(f"[bold]GPU:[/] no NVIDIA driver found ({nvml.error or 'NVML not available'})")
        return
    table = Table(title=f"NVIDIA driver {_na(nvml.driver_version)}, CUDA {_na(nvml.cuda_driver_version)}",
                  title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("name", no_wrap=True)  # the name is what people grep for: never split it
    for col in ("cc", "used / total", "free", "util", "temp", "power"):
        table.add_column(col, justify="right")
    for g in report.gpus:
        cc = f"{g.compute_capability[0]}.{g.compute_capability[1]}" if g.compute_capability else "n/a"
        table.add_row(str(g.index), g.name, cc, _used_total(g.memory_used, g.memory_total),
                      memory_text(g.memory_free), _na(g.utilization_gpu, "{}%"), _na(g.temperature_c, "{}°C"),
                      f"{_na(g.power_w, '{:.0f}')}/{_na(g.power_limit_w, '{:.0f}')} W")
    console.print(table)
    for g in report.gpus:
        if g.processes is None:
            console.print(f"  GPU {g.index} processes: n/a (the driver does not list them here)")
        elif g.processes:
            procs = ", ".join(f"{p.name} (pid {p.pid}) {memory_text(p.used_bytes)}" for p in g.processes)
            console.print(f"  GPU {g.index} processes: {procs}", soft_wrap=True)
        if g.errors:
            console.print(f"  [dim]GPU {g.index} fields not available: {'; '.join(g.errors)}[/]", soft_wrap=True)


def _print_software(console: Any, report: Any) -> None:
    from rich.table import Table

    t, b, s = report.torch, report.bnb, report.system
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if t.installed:
        cuda = (f"CUDA {t.cuda_version}, {t.device_count} device(s), bf16 {'yes' if t.bf16 else 'no'}"
                if t.cuda_available else f"no CUDA ({'CPU-only build' if t.cuda_version is None else t.error})")
        table.add_row("torch", f"{t.version}: {cuda}")
    else:
        table.add_row("torch", f"[red]{t.error}[/]")
    if b.importable:
        check = "4-bit matmul OK" if b.matmul_4bit else f"[red]4-bit matmul failed: {b.error}[/]"
        table.add_row("bitsandbytes", f"{b.version} on {b.device}: {check}")
    else:
        table.add_row("bitsandbytes", f"[red]{b.error}[/]" if b.error != "not checked" else "not checked")
    table.add_row("system", f"{s.os}, {s.python}, {_na(s.cpu_count)} CPUs")
    table.add_row("RAM", f"{memory_text(s.ram_available)} available of {memory_text(s.ram_total)}")
    table.add_row("disk", f"{memory_text(s.disk_free)} free in {s.data_dir}")
    console.print(table)


def _print_plan(console: Any, plan: Any) -> None:
    from rich.table import Table

    title = (f"VRAM plan: {plan.model}, {plan.quant}, {plan.compute_dtype}, "
             f"{plan.tokens:,} tokens per pass, checkpointing {'on' if plan.gradient_checkpointing else 'off'}")
    if plan.device == "cpu":
        title = title.replace("VRAM plan", "Memory plan (CPU)")
    wide = console.width >= 110  # the notes column only where it does not squeeze the labels
    table = Table(title=title, title_justify="left")
    table.add_column("at the peak of a step")
    table.add_column("size", justify="right", no_wrap=True)
    if wide:
        table.add_column("", style="dim")
    for it in plan.items:
        table.add_row(it.label, memory_text(it.bytes), *([it.note] if wide else []))
    table.add_section()
    torch_share = f"torch's share {memory_text(plan.peak_torch_bytes)}" if plan.device == "cuda" else ""
    table.add_row("[bold]peak[/]", f"[bold]{memory_text(plan.peak_bytes)}[/]", *([torch_share] if wide else []))
    table.add_row("available", memory_text(plan.available_bytes), *([plan.available_source] if wide else []))
    console.print(table)
    if not wide:
        console.print(f"  [dim]available = {plan.available_source}[/]", soft_wrap=True)
    style = VERDICT_STYLE.get(plan.verdict, "")
    head = f"[{style}]{plan.verdict.upper()}[/]"
    if plan.headroom_bytes is not None:
        head += f" ({memory_text(abs(plan.headroom_bytes))} {'left' if plan.headroom_bytes >= 0 else 'short'})"
    console.print(head)
    for sg in plan.suggestions:
        console.print(f"  - {sg.text}", soft_wrap=True)
    for note in plan.notes:
        console.print(f"  [dim]{note}[/]", soft_wrap=True)
