"""Pure functions of the step: the phase (SFT or DPO), the learning rate, the micro-batches; and what a
resume may not change. Unit-tested; exact resume rests on them."""

from __future__ import annotations

import math
from humanlike_tui.config import Config
from humanlike_tui.errors import ConfigError


# Fields that define what a checkpoint means; a resume may change the others (e.g. max_steps).
# (sft+dpo's switch step is checked by its effective value: sft_steps = 0 means half of max_steps.)
RESUME_FIXED = ("model", "quant", "lora", "data", "train.method", "train.batch_size", "train.grad_accum",
                "train.seed")


def phase_of(cfg: Config, step: int) -> str:
    if cfg.train.method != "sft+dpo":
        return cfg.train.method
    return "sft" if step < sft_steps(cfg) else "dpo"


def sft_steps(cfg: Config) -> int:
    return cfg.train.sft_steps or cfg.train.max_steps // 2


def lr_at(cfg: Config, step: int) -> float:
    """Warm-up then schedule, restarted for the DPO phase of sft+dpo. A pure function of the step."""
    t = cfg.train
    start, end = 0, t.max_steps
    if t.method == "sft+dpo":
        start, end = (0, sft_steps(cfg)) if step < sft_steps(cfg) else (sft_steps(cfg), t.max_steps)
    i, n = step - start, max(1, end - start)
    warm = min(t.warmup_steps, max(0, n - 1))
    if i < warm:
        return t.learning_rate * (i + 1) / (warm + 1)
    progress = (i - warm) / max(1, n - warm)
    if t.lr_scheduler == "cosine":
        return t.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
    if t.lr_scheduler == "linear":
        return t.learning_rate * (1 - progress)
    return t.learning_rate


def pack_micro_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Split positions into micro-batches with rows x longest <= budget tokens (longest first)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) + 1 <= budget // max(1, lengths[batches[-1][0]]):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def check_resume_compatible(old: Config, new: Config) -> None:
    old_d, new_d = old.to_dict(), new.to_dict()
    problems = []
    for key in RESUME_FIXED:
        section, _, name = key.partition(".")
        a = old_d[section] if not name else old_d[section][name]
        b = new_d[section] if not name else new_d[section][name]
        if a != b:
            problems.append(f"{key}: cannot change when resuming (the checkpoint was made with {a!r}); "
                            "start a new run instead")
    if old.train.method == new.train.method == "sft+dpo" and sft_steps(old) != sft_steps(new):
        # Extending a run with sft_steps = 0 (half of max_steps) would silently move the SFT -> DPO switch.
        problems.append(f"train.sft_steps: this run switches from SFT to DPO at step {sft_steps(old)}; the new "
                        f"config would switch at {sft_steps(new)} (0 means half of train.max_steps); "
                        f"set train.sft_steps = {sft_steps(old)} to keep the switch where it was")
    if problems:
        raise ConfigError(problems)
