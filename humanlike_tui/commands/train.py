"""`humanlike-tui train`: the engine with a progress bar (or JSON) as its listener.

Ctrl+C, SIGTERM and SIGHUP save a checkpoint and exit cleanly (a second one aborts at once). Exit codes:
0 finished or stopped on request, 2 bad config or data, 1 training failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

from humanlike_tui.cli import DEFAULT_PRESET, add_config_arguments, config_from_args, consent_to_remote_code
from humanlike_tui.events import (LIBRARIES_LOADING, BatchReduced, CheckpointSaved, DataReport, Eval, Event, Failed,
                                  Finished, Log, RunStarted, Step, Stopped)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", metavar="RUN", help="continue run RUN from its last checkpoint "
                        "(its own config; --set may change e.g. train.max_steps)")
    parser.add_argument("--from", dest="from_run", metavar="RUN",
                        help="a new run that starts from finished run RUN's adapter (RUN is left as it is); its "
                             "config unless --config/--preset, e.g. --from warm --set data.source=picks:my-picks")
    parser.add_argument("--name", metavar="NAME", help="name of the new run (default: date-model-method)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the result as the last line")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def resolve_config(args: argparse.Namespace):
    """The config to train with. On resume: the run's own config, with --set applied."""
    if getattr(args, "from_run", None):
        return from_run_config(args)
    if args.resume:
        from humanlike_tui import config as cfgmod
        from humanlike_tui.engine.storage import runs as store

        if args.config or args.preset:
            print("note: --resume uses the run's own config; --config/--preset are ignored", file=sys.stderr)
        return cfgmod.apply_overrides(store.get_run(args.resume).config(), args.overrides)
    return config_from_args(args, default_preset=DEFAULT_PRESET)


def from_run_config(args: argparse.Namespace):
    """train --from RUN: RUN's own config (or --config/--preset) with --set, starting from RUN's adapter."""
    from humanlike_tui import config as cfgmod
    from humanlike_tui.engine.storage import runs as store
    from humanlike_tui.errors import InputError

    if args.resume:
        raise InputError("--from starts a new run and --resume continues one; give only one of them")
    run = store.get_run(args.from_run)
    if not store.is_complete(run.adapter_dir):
        raise InputError(f"--from {run.run_id}: that run has no finished adapter (it is {run.status()}); finish "
                         f"it (train --resume {run.run_id}) or start from another run")
    cfg = config_from_args(args, default_preset=None) or run.config()
    if not (args.config or args.preset):
        cfg = cfgmod.apply_overrides(cfg, args.overrides)
    return cfg.replace(**{"train.from_run": run.run_id})


class ProgressListener:
    """Turns engine events into a rich progress bar and log lines (stderr, so --json stays clean)."""

    def __init__(self, quiet: bool = False):
        from humanlike_tui.commands.output import console

        self.console = console(stderr=True)
        self.quiet = quiet
        self.progress = None
        self.task = None
        self.last_eval: float | None = None

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        handler = getattr(self, f"on_{type(event).__name__}", None)
        if handler:
            handler(event)

    def _start_bar(self, total: int, done: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=done, info="")

    def _print(self, text: str) -> None:
        (self.progress.console if self.progress else self.console).print(text, highlight=False)

    def on_Log(self, e: Log) -> None:
        self._print(f"[dim]{e.message}[/]" if e.level == "info" else f"[yellow]{e.level}: {e.message}[/]")

    def on_DataReport(self, e: DataReport) -> None:
        dropped = ", ".join(f"{n} {why}" for why, n in e.dropped.items()) or "none"
        self._print(f"data: {e.rows_read} rows read, {e.rows_kept} kept (dropped: {dropped}); "
                    f"{e.train_rows} train / {e.eval_rows} eval, {e.tokens_mean:.0f} tokens mean, {e.tokens_max} max")

    def on_RunStarted(self, e: RunStarted) -> None:
        self._print(f"run {e.run_id}: {e.method} on {e.device}, {e.trainable_params:,} trainable of "
                    f"{e.total_params:,} parameters" + (f", resumed at step {e.start_step}" if e.start_step else ""))
        if e.config.get("model", {}).get("trust_remote_code"):
            self._print("[yellow]warning: model.trust_remote_code is on: the model's own Python code runs[/]")
        self._start_bar(e.total_steps, e.start_step)

    def on_Step(self, e: Step) -> None:
        self.last_step = e
        self._update_info()

    def _update_info(self, final: dict | None = None) -> None:
        """The bar's text: the last step's loss, lr and speed with the latest eval loss. At the end
        (`final`, the run's summary) the same numbers as the finished line: the final eval loss and the
        run's average speed, not the last step's."""
        e = getattr(self, "last_step", None)
        if e is None or not self.progress:
            return
        loss, eval_loss, speed = e.loss, self.last_eval, e.tokens_per_s
        if final:
            loss = final.get("final_loss", loss) if isinstance(final.get("final_loss"), (int, float)) else loss
            if isinstance(final.get("final_eval_loss"), (int, float)):
                eval_loss = final["final_eval_loss"]
            if isinstance(final.get("tokens_per_s"), (int, float)):
                speed = final["tokens_per_s"]
        info = f"loss {loss:.4f}" + (f" eval {eval_loss:.4f}" if eval_loss is not None else "")
        info += f" lr {e.lr:.2e} {speed:,.0f} tok/s"
        if "reward_accuracy" in e.metrics:
            info += f" reward acc {e.metrics['reward_accuracy']:.2f}"
        self.progress.update(self.task, completed=e.step, info=info)

    def on_Eval(self, e: Eval) -> None:
        self.last_eval = e.eval_loss
        self._update_info()
        extra = "".join(f", {k} {v:.3f}" for k, v in e.metrics.items())
        self._print(f"step {e.step}: eval loss {e.eval_loss:.4f}{extra}")
        for prompt, answer in e.samples:
            self._print(f"  [dim]> {prompt[:70]}[/]\n    {answer[:160]!r}")

    def on_CheckpointSaved(self, e: CheckpointSaved) -> None:
        if e.reason != "periodic":
            self._print(f"checkpoint ({e.reason}) at step {e.step}: {e.path}")

    def on_BatchReduced(self, e: BatchReduced) -> None:
        self._print(f"[yellow]{e.message}[/]")

    def on_Stopped(self, e: Stopped) -> None:
        self.close()
        self._print(f"{'paused' if e.paused else 'stopped'} at step {e.step}; resume with: "
                    f"humanlike-tui train --resume {e.run_id}")

    def on_Finished(self, e: Finished) -> None:
        s = e.summary
        self._update_info(final=s)
        self.close()
        speed = s.get("tokens_per_s")
        speed = f"{speed:,.0f}" if isinstance(speed, (int, float)) else "n/a"
        self._print(f"[green]finished[/] {e.run_id}: {s.get('steps')} steps, loss {_fmt(s.get('first_loss'))} -> "
                    f"{_fmt(s.get('final_loss'))}, eval {_fmt(s.get('final_eval_loss'))}, "
                    f"{speed} tok/s (average), {duration(s.get('duration_s'))}\nadapter: {e.adapter_dir}")

    def on_Failed(self, e: Failed) -> None:
        self.close()

    def close(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None


def duration(seconds: Any) -> str:
    from humanlike_tui.formatting import duration as text

    return text(seconds if isinstance(seconds, (int, float)) else None)


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "n/a"


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl+C, a service manager or `kill`, the terminal closing


def install_interrupt(stop: threading.Event, started: threading.Event | None = None) -> dict:
    """First Ctrl+C, SIGTERM or SIGHUP: stop after this step with a checkpoint. A second one: abort now.
    Before the first step (`started` not set: loading, converting the real model, templating the data)
    there is nothing to save, and those phases never look at `stop`: the first one aborts at once (the
    engine removes a new run's folder, every half-written file is a temporary one).
    Returns the handlers it replaced (restore_signals puts them back)."""
    def handler(signum, frame):
        name = "Ctrl+C" if signum == signal.SIGINT else signal.Signals(signum).name
        if started is not None and not started.is_set():
            stop.set()
            _say(f"\n{name}: stopping now (no step has run yet, so there is nothing to save)")
            raise KeyboardInterrupt
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        _say(f"\n{name}: stopping after this step, saving a checkpoint (Ctrl+C again to abort)")

    previous = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)  # Windows has no SIGHUP
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread (tests): no handler
            break
    return previous


def _say(text: str) -> None:
    """Print from a signal handler: a closed stderr (the terminal went away with SIGHUP) must not turn the
    stop into an OSError that some `except Exception` on the way swallows."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def restore_signals(previous: dict) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)


def result_json(result) -> dict[str, Any]:
    s = result.summary
    return {"run_id": result.run_id, "status": result.status, "adapter_dir": result.adapter_dir,
            "run_dir": result.run_dir, "steps": s.get("steps"), "first_loss": s.get("first_loss"),
            "final_loss": s.get("final_loss"), "final_eval_loss": s.get("final_eval_loss"),
            "tokens_per_s": s.get("tokens_per_s"), "peak_memory_bytes": s.get("peak_memory_bytes"),
            "duration_s": s.get("duration_s")}


def failure_json(exc: BaseException) -> dict[str, Any]:
    """--json when the command fails: the status and the error, on stdout like a result (the message
    also goes to stderr as for every command)."""
    from humanlike_tui.errors import HumanlikeError

    known = isinstance(exc, HumanlikeError)
    return {"status": "failed", "error": str(exc) if known else f"{type(exc).__name__}: {exc}",
            "error_type": type(exc).__name__, "exit_code": getattr(exc, "exit_code", 1) if known else 1}


def run(args: argparse.Namespace) -> int:
    if not args.json:
        return train(args)
    try:
        return train(args)
    except Exception as exc:  # noqa: BLE001 - reported on stdout, then handled by cli.main as always
        _print_json(failure_json(exc))
        raise


def _print_json(obj: dict[str, Any]) -> None:
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(obj), flush=True)


def train(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    consent_to_remote_code(args, cfg)  # before anything of the model is read
    listener = ProgressListener(quiet=args.quiet)
    if "torch" not in sys.modules:
        listener(Log(LIBRARIES_LOADING))
    from humanlike_tui.engine.training.run import run_training

    stop, started = threading.Event(), threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, RunStarted):  # from here on a stop waits for the step and saves a checkpoint
            started.set()
        listener(event)

    # Under a launcher (accelerate, torchrun) only the main process hears RunStarted, and every process must
    # stop after the same step (one would otherwise leave the others hanging in an all-reduce): there a
    # signal always waits for the step boundary.
    distributed = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    previous = install_interrupt(stop, None if distributed else started)
    try:
        result = run_training(cfg, emit, stop, resume=args.resume, run_name=args.name)
    finally:
        listener.close()
        restore_signals(previous)
    if args.json:
        _print_json(result_json(result))
    return 0
