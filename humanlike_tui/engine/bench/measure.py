"""What both sides of the comparison are measured with: the same samples, peak memory, step clocks,
answer loss on the same held-out rows."""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from humanlike_tui.config import DataConfig
from humanlike_tui.engine import data as D
from humanlike_tui.engine.hardware.procmem import peak_rss_bytes, reset_peak_rss
from humanlike_tui.errors import InputError


DEFAULT_SAMPLES = 160


DEFAULT_WARMUP = 2


EVAL_ROWS = 32


EVAL_FRACTION = 0.1


@dataclass
class SideResult:
    """One side of the benchmark. Memory in bytes; None where this device has no such figure."""

    name: str
    samples: int
    timed_samples: int
    tokens: int  # timed tokens: real prompt+answer tokens of the timed samples
    seconds: float
    tokens_per_s: float
    s_per_sample: float
    eval_loss: float
    cpu_seconds: float = 0.0  # process CPU time over the same window: steadier than wall time on a busy machine
    tokens_per_cpu_s: float = 0.0
    peak_allocated: int | None = None
    peak_reserved: int | None = None
    peak_driver: int | None = None
    peak_rss: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchData:
    """The benchmark's samples: `train` in the order given to both sides, `held_out` for eval."""

    rows: list[D.Row]  # one per training sample (repeated when --samples exceeds the data)
    train: list[D.Example]
    held_out: list[D.Example]


def tokenize_row(row: D.Row, tok, dcfg: DataConfig) -> D.Example:
    """Exactly the engine's tokenization (data.tokenize_rows), one row at a time."""
    p = tuple(tok(D.format_prompt(row.prompt, dcfg.template, tok), add_special_tokens=False)["input_ids"])
    return D.Example(p, D.encode_answer(tok, row.chosen, dcfg.template), None, row.prompt)


def bench_data(dcfg: DataConfig, tok, samples: int, seed: int) -> BenchData:
    """Rows that fit data.max_length, split by prompt; the train part cycled to `samples` items."""
    rows, _ = D.load_rows(dcfg, need_rejected=False)
    pairs = [(r, tokenize_row(r, tok, dcfg)) for r in rows]
    pairs = [(r, e) for r, e in pairs if e.length <= dcfg.max_length]
    if len(pairs) < 2:
        raise InputError(f"bench: {dcfg.source} has fewer than 2 usable rows within {dcfg.max_length} tokens")
    by_example = {id(e): r for r, e in pairs}
    train_ex, held = D.split_by_prompt([e for _, e in pairs], EVAL_FRACTION, seed)
    rng = random.Random(seed)
    order: list[D.Example] = []
    while len(order) < samples:  # whole shuffled passes, so every row is seen as evenly as possible
        epoch = list(train_ex)
        rng.shuffle(epoch)
        order += epoch
    order = order[:samples]
    return BenchData([by_example[id(e)] for e in order], order, held[:EVAL_ROWS])


def write_rows(rows: list[D.Row], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"prompt": r.prompt, "chosen": r.chosen}, ensure_ascii=False) + "\n")


def answer_loss(model, examples: list[D.Example], device) -> float:
    """Mean cross-entropy of the answer tokens (EOS included) given the prompt, over held-out rows.

    One row per forward (no padding to get wrong), full logits: simple and the same for both sides."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([list(ex.prompt_ids) + list(ex.chosen_ids)], device=device)
            logits = model(input_ids=ids, use_cache=False).logits[0, len(ex.prompt_ids) - 1:-1].float()
            total += float(F.cross_entropy(logits, ids[0, len(ex.prompt_ids):], reduction="sum"))
            count += len(ex.chosen_ids)
    model.train(was_training)
    return total / max(1, count)


class PeakMemory:
    """Peak memory over a block: torch's allocated/reserved and the driver's used figure on a GPU
    (sampled by a thread, NVML only reports the present), the process's peak RSS on the CPU."""

    def __init__(self, cuda: bool, interval: float = 0.05):
        self.cuda, self.interval = cuda, interval
        self.driver_peak: int | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start_driver_sampler()
        else:
            reset_peak_rss()
        return self

    def _start_driver_sampler(self) -> None:
        from humanlike_tui.engine.hardware.sampler import GpuSampler

        sampler = GpuSampler()
        if not sampler._handles:  # no NVML: torch's figures are all there is
            sampler.close()
            return

        def poll() -> None:
            try:
                while not self._done.is_set():
                    for s in sampler.sample():
                        if s.used_bytes is not None:
                            self.driver_peak = max(self.driver_peak or 0, s.used_bytes)
                    self._done.wait(self.interval)
            finally:
                sampler.close()

        self._thread = threading.Thread(target=poll, name="bench-nvml", daemon=True)
        self._thread.start()

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def figures(self) -> dict[str, int | None]:
        import torch

        if self.cuda:
            return {"peak_allocated": int(torch.cuda.max_memory_allocated()),
                    "peak_reserved": int(torch.cuda.max_memory_reserved()), "peak_driver": self.driver_peak}
        return {"peak_rss": peak_rss_bytes()}


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def timed_rate(marks: list[tuple[float, int]], warmup: int) -> tuple[float, int, int]:
    """(seconds, tokens, steps) from the end of step `warmup` to the end of the last step.

    `marks[i]` = (time at the end of step i+1, tokens of step i+1)."""
    if len(marks) <= max(warmup, 1):  # the first step is never timed: there is no clock mark before it
        raise InputError(f"bench: {len(marks)} steps leave no timed step after the {max(warmup, 1)} untimed "
                         "(--warmup, and the first step is never timed); raise --samples or lower --warmup")
    seconds = marks[-1][0] - marks[warmup - 1][0] if warmup else marks[-1][0] - marks[0][0]
    tokens = sum(n for _, n in marks[warmup:]) if warmup else sum(n for _, n in marks[1:])
    return seconds, tokens, len(marks) - max(warmup, 1)


def make_step_clock(cuda: bool):
    """A TrainerCallback keeping wall and process CPU time at the end of each step (after a device
    sync on a GPU). Made on demand: transformers is imported only when the recipe runs."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                import torch

                torch.cuda.synchronize()
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepClock()


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({_cpu_model()}, {os.cpu_count()} cores)"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """Other processes on the machine skew CPU timings; the load average says how much to trust them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None
