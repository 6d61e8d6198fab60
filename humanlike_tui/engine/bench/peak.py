"""measure_peak: train a few real steps of a config and compare the measured peak with the plan."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable
from humanlike_tui.config import Config
from humanlike_tui.engine.planning.estimate import estimate_items, micro_batch_tokens, settings_for
from humanlike_tui.engine.planning.shapes import load_model_shapes


@dataclass(frozen=True)
class PeakCheck:
    """A few real training steps next to the estimate for exactly the passes they ran."""

    device: str
    steps: int
    measured_bytes: int  # CUDA: torch.cuda.max_memory_reserved(); CPU: the process's peak RSS
    estimated_bytes: int  # the comparable estimate: torch's share on CUDA, the whole process on the CPU
    seq_len: int  # longest row in the data (what the estimate used)
    tokens: int  # tokens per pass the estimate used (the engine's budget, or less if the steps hold less)
    budget_reduced: bool  # the engine ran out of memory and halved its budget
    run_id: str

    @property
    def error(self) -> float:
        """measured / estimated - 1: +0.10 means the real peak was 10% above the estimate."""
        return self.measured_bytes / max(1, self.estimated_bytes) - 1

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "error": round(self.error, 4)}


def measurement_config(cfg: Config, steps: int, device: str) -> Config:
    """The config for a memory check: a few steps, no evaluation, samples or periodic checkpoints, the
    token budget fixed to the plan's (so estimate and engine agree on the pass size), and the DPO
    phase of sft+dpo (its passes hold chosen + rejected: the larger peak)."""
    values: dict[str, Any] = {
        "train.max_steps": steps, "train.warmup_steps": 0, "train.eval_every": 0, "train.sample_prompts": 0,
        "train.save_every": 0, "data.eval_fraction": 0.0, "train.micro_batch_tokens": micro_batch_tokens(cfg, device)}
    if cfg.train.method == "sft+dpo":
        values["train.method"] = "dpo"
        values["train.micro_batch_tokens"] = micro_batch_tokens(cfg.replace(**{"train.method": "dpo"}), device)
    return cfg.replace(**values)


def measure_peak(cfg: Config, steps: int = 3, *, emit: Callable[[Any], None] | None = None,
                 stop: Any = None, keep_run: bool = False) -> PeakCheck:
    """Run `steps` real optimizer steps through the engine and compare its peak with the estimate.

    Loads the model for real (minutes for a hub model). The run is deleted afterwards unless
    keep_run. Raises what run_training raises (InputError for bad input, TrainingError otherwise).
    """
    import torch

    from humanlike_tui.engine.storage import runs as store
    from humanlike_tui.engine.training.run import run_training
    from humanlike_tui.events import BatchReduced, DataReport, RunStarted

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    mcfg = measurement_config(cfg, steps, device)
    seen: dict[str, Any] = {"budget": mcfg.train.micro_batch_tokens, "reduced": False, "run_id": "", "longest": 0}

    def listen(event: Any) -> None:
        if isinstance(event, RunStarted):
            seen["run_id"] = event.run_id
        elif isinstance(event, DataReport):
            seen["longest"] = event.tokens_max
        elif isinstance(event, BatchReduced):
            seen["budget"], seen["reduced"] = event.new_tokens, True
        if emit is not None:
            emit(event)

    try:
        result = run_training(mcfg, listen, stop)
    finally:
        if seen["run_id"] and not keep_run:
            _delete_quietly(store, seen["run_id"])
    measured = int(result.summary.get("peak_memory_bytes", 0))
    shapes = load_model_shapes(mcfg)
    rows_factor = 1 if mcfg.train.method == "sft" else 2
    seq = max(1, min(seen["longest"] or mcfg.data.max_length, mcfg.data.max_length))
    rows_per_step = mcfg.train.batch_size * mcfg.train.grad_accum
    tokens = min(seen["budget"], rows_per_step * seq * rows_factor)
    s = dataclasses.replace(settings_for(mcfg, shapes, device, bf16), seq_len=seq, tokens=tokens)
    items = estimate_items(shapes, s)
    context = sum(it.bytes for it in items if it.key == "cuda_context")
    return PeakCheck(device=device, steps=int(result.summary.get("steps", steps)), measured_bytes=measured,
                     estimated_bytes=sum(it.bytes for it in items) - context, seq_len=seq, tokens=tokens,
                     budget_reduced=seen["reduced"], run_id=result.run_id)


def _delete_quietly(store: Any, run_id: str) -> None:
    """A leftover check run is clutter, not an error worth hiding the measurement for."""
    try:
        store.delete_run(run_id)
    except Exception:  # noqa: BLE001
        pass
