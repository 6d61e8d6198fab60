"""Training figures in TensorBoard and Weights & Biases (`train.report_to`), beside metrics.jsonl.

Every record the trainer appends to the run's metrics.jsonl (one per optimizer step, kind "train":
loss, lr, tokens, grad_norm, energy_wh, DPO rewards ...; one per evaluation, kind "eval": eval_loss and
its metrics) is also written here, each number as a scalar tagged "<kind>/<key>" at the record's step:

- tensorboard: event files in <run folder>/tensorboard/ (`tensorboard --logdir <run folder>`), through
  torch.utils.tensorboard (it needs the `tensorboard` package: pip install "humanlike-tui[tensorboard]").
  A resumed run purges the events past its checkpoint's step, as metrics.jsonl is truncated.
- wandb: a W&B run in <run folder>/wandb/, in OFFLINE mode unless the person set WANDB_MODE (e.g.
  WANDB_MODE=online after `wandb login`): nothing is sent anywhere unless asked. `wandb sync` uploads
  an offline run later.

A reporter whose package is missing is skipped with a warning: training never fails for its logs.
`export_tensorboard(run_dir)` writes the scalars of an existing metrics.jsonl (a run trained without
report_to) the same way.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

TB_FOLDER = "tensorboard"
WANDB_PROJECT = "humanlike-tui"


def scalars(record: dict[str, Any]) -> tuple[int, dict[str, float]]:
    """(step, {"<kind>/<key>": value}) for the finite numbers of one metrics.jsonl record."""
    kind = str(record.get("kind", "train"))
    out = {}
    for key, value in record.items():
        if key in ("step", "kind") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[f"{kind}/{key}"] = float(value)
    return int(record.get("step", 0)), out


class _TensorBoard:
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter  # raises ImportError without the tensorboard package

        self.log_dir = log_dir
        self.writer = None
        self.factory = SummaryWriter

    def write(self, step: int, values: dict[str, float]) -> None:
        if self.writer is None:  # opened at the first record: a resumed run drops events from that step on
            self.writer = self.factory(log_dir=str(self.log_dir), purge_step=step, flush_secs=10)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _WandB:
    def __init__(self, run_dir: Path, run_id: str, config: dict[str, Any]):
        import wandb  # raises ImportError when W&B is not installed

        os.environ.setdefault("WANDB_MODE", "offline")  # never online unless the person chose it
        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT), name=run_id,
                              id=_wandb_id(run_id), resume="allow", dir=str(run_dir), config=config,
                              mode=os.environ["WANDB_MODE"])

    def write(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.run.finish()


def _wandb_id(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in run_id)[:64]


class MetricReporters:
    """The reporters one run asked for; `write(record)` after every metrics.jsonl record."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def write(self, record: dict[str, Any]) -> None:
        step, values = scalars(record)
        if not values:
            return
        for sink in self.sinks:
            sink.write(step, values)
        if record.get("kind") == "eval":
            self.flush()

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def open_reporters(report_to: Iterable[str], run_dir: Path, run_id: str, config: dict[str, Any],
                   log: Callable[[str, str], None] = lambda message, level: None) -> MetricReporters | None:
    """The reporters named in train.report_to; None when there are none. A missing package is a warning."""
    sinks = []
    for name in report_to:
        try:
            if name == "tensorboard":
                sinks.append(_TensorBoard(Path(run_dir) / TB_FOLDER))
                log(f"TensorBoard: tensorboard --logdir {Path(run_dir) / TB_FOLDER}", "info")
            elif name == "wandb":
                sinks.append(_WandB(Path(run_dir), run_id, config))
                log(f"W&B: logging to {Path(run_dir) / 'wandb'} ({os.environ.get('WANDB_MODE')} mode)", "info")
        except ImportError as exc:
            package = "tensorboard" if name == "tensorboard" else "wandb"
            log(f"train.report_to: {name} is not installed ({exc}); training goes on without it. Install it with "
                f"pip install {package}", "warning")
    return MetricReporters(sinks) if sinks else None


def export_tensorboard(run_dir: str | Path) -> Path:
    """Write an existing run's metrics.jsonl to <run folder>/tensorboard (replacing what was there)."""
    import shutil

    run_dir = Path(run_dir)
    records = []
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash
    shutil.rmtree(run_dir / TB_FOLDER, ignore_errors=True)
    reporters = MetricReporters([_TensorBoard(run_dir / TB_FOLDER)])
    for record in records:
        reporters.write(record)
    reporters.close()
    return run_dir / TB_FOLDER
