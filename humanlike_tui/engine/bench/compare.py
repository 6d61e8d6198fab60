"""Benchmark: the original QLoRA recipe against this engine, on the same samples in one process.

The recipe side is a faithful copy of the seed report's script (`shared/tools/seed_recipe_anchor.py`):
HF Trainer, batch 1, nf4 with fp16 compute (fp32 on CPU), LoRA r=32/alpha=32 on q/k/v/dense with
dropout 0.05, prepare_model_for_kbit_training, gradient checkpointing, paged 8-bit AdamW (adamw_torch
on CPU), lr 2e-4, the instruct template with pad = EOS and DataCollatorForLanguageModeling. So it
keeps the recipe's known mistakes: loss on the prompt too, and the EOS masked away with the padding.

The engine side is `run_training` with a config built from our defaults (the gaming-8gb preset) for
the same model, the same samples and the same number of samples; precision and micro-batch budget are
what the engine picks for the detected hardware.

Both sides are measured the same way: tokens = real (non-pad) prompt+answer tokens of each sample;
the first `warmup` optimizer steps are not timed (one-time costs: allocator growth, kernel
selection); eval loss = mean answer-token cross-entropy on the same held-out rows, by one function.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable
from humanlike_tui.config import Config, DataConfig, load_preset
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import InputError
from humanlike_tui.engine.bench.measure import (BenchData, DEFAULT_SAMPLES, DEFAULT_WARMUP, PeakMemory, SideResult,
                                                load_average, answer_loss, bench_data, device_name, free_memory,
                                                timed_rate, write_rows)
from humanlike_tui.engine.bench.recipe import RECIPE_LR, recipe_side
from humanlike_tui.engine.hardware.probe import library_versions


# Keys --engine-set may not touch: they would make the two sides train different things.
FIXED_FOR_COMPARISON = ("model.name", "data.", "train.max_steps", "train.batch_size", "train.grad_accum",
                        "train.eval_", "train.save_every", "train.sample_prompts")


def check_engine_overrides(items: list[str]) -> None:
    """--engine-set may change how the engine runs (precision, checkpointing, VRAM limit, LoRA), not
    what the comparison trains on; a bad key or value is an InputError naming it."""
    from humanlike_tui.config import apply_overrides, parse_override
    from humanlike_tui.errors import ConfigError

    for item in items:
        key = parse_override(item)[0]
        if key.startswith(FIXED_FOR_COMPARISON):
            raise InputError(f"--engine-set {item!r}: {key} is fixed by the benchmark so both sides train the "
                             "same samples; use --model, --data, --samples instead")
    try:
        apply_overrides(load_preset("gaming-8gb"), items)
    except ConfigError as exc:
        raise InputError(f"--engine-set: {exc}") from None


def engine_config(model: str, data_file: Path, samples: int, lr: float | None = None,
                  overrides: tuple[str, ...] = ()) -> Config:
    """Our defaults (the gaming-8gb preset) for this model and these samples: one pass over them.

    Warm-up keeps the preset's share of the run (10 of 600 steps), so a short run is not all warm-up.
    The learning rate defaults to the recipe's 2e-4 per sample scaled by our batch (the linear scaling
    rule, Goyal et al. 2017): the recipe takes one optimizer step per sample, we take one per 16, and
    "the same training, faster" means the same step size per sample. docs/benchmarks.md shows both.
    """
    from humanlike_tui.config import apply_overrides

    base = apply_overrides(load_preset("gaming-8gb"), list(overrides))
    per_step = base.train.batch_size * base.train.grad_accum
    steps = max(1, samples // per_step)
    warm = max(1, round(steps * base.train.warmup_steps / base.train.max_steps))
    return base.replace(**{
        "model.name": model, "data.source": str(data_file), "data.rejected_column": "",
        "data.eval_fraction": 0.0, "train.max_steps": steps, "train.warmup_steps": min(warm, max(0, steps - 1)),
        "train.learning_rate": lr if lr is not None else RECIPE_LR * per_step,
        "train.eval_every": 0, "train.save_every": 0, "train.sample_prompts": 0})


def per_step_samples() -> int:
    t = load_preset("gaming-8gb").train
    return t.batch_size * t.grad_accum


def engine_side(cfg: Config, data: BenchData, warmup: int, log: Callable[[str], None]) -> SideResult:
    import torch

    from humanlike_tui.engine import models as M
    from humanlike_tui.engine.training.run import run_training
    from humanlike_tui.events import RunStarted, Step

    cuda = torch.cuda.is_available()
    marks: list[tuple[float, int]] = []
    cpu_marks: list[tuple[float, int]] = []
    started: dict[str, Any] = {}

    def emit(event) -> None:
        if isinstance(event, Step):  # emitted after the step's one host sync: the device is done
            now, cpu = time.perf_counter(), time.process_time()
            marks.append((now, event.tokens_seen - (sum(n for _, n in marks))))
            cpu_marks.append((cpu, marks[-1][1]))
        elif isinstance(event, RunStarted):
            started["device"] = event.device

    log(f"engine: training {cfg.train.max_steps} steps of {cfg.train.batch_size * cfg.train.grad_accum} samples")
    free_memory()
    with PeakMemory(cuda) as peak:
        result = run_training(cfg, emit, run_name=f"bench-{int(time.time())}")
    mem = peak.figures()
    seconds, tokens, steps = timed_rate(marks, warmup)
    cpu_seconds = timed_rate(cpu_marks, warmup)[0]
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    precision = M.resolve_precision(cfg)
    model, _ = M.load_base_model(cfg, precision)
    model = M.load_adapter(model, result.adapter_dir, cfg.model.name)
    eval_loss = answer_loss(model, data.held_out, next(model.parameters()).device)
    del model
    free_memory()
    plan = _final_plan(result.run_id)
    S.delete_run(result.run_id)  # a benchmark's adapter does not belong in the user's library
    return SideResult("engine", cfg.train.max_steps * per_step, steps * per_step, tokens, round(seconds, 3),
                      round(tokens / seconds, 1), round(seconds / (steps * per_step), 4), round(eval_loss, 4),
                      round(cpu_seconds, 3), round(tokens / max(cpu_seconds, 1e-9), 1), **mem,
                      settings={"batch": per_step, "lr": cfg.train.learning_rate, "quant": cfg.quant.mode,
                                "compute": precision.compute,
                                "lora_r": cfg.lora.r, "grad_ckpt": plan.get("checkpointing"),
                                "micro_batch_tokens": plan.get("budget"),
                                "optimizer": "AdamW (fused)" if cuda else "AdamW (foreach)",
                                "device": started.get("device"), "run_id": result.run_id})


def _final_plan(run_id: str) -> dict[str, Any]:
    """The pass budget and checkpointing the engine settled on (kept in its last checkpoint's counters)."""
    latest = S.get_run(run_id).latest_checkpoint()
    return S.read_json(latest[1] / "state.json") if latest else {}


def run_bench(model: str = "builtin:tiny-phi", samples: int = DEFAULT_SAMPLES, data: str = "builtin:sample",
              warmup: int = DEFAULT_WARMUP, lr: float | None = None, seed: int = 0, threads: int = 0,
              log: Callable[[str], None] = lambda m: None, engine_overrides: tuple[str, ...] = (),
              baseline: bool = True) -> dict[str, Any]:
    """Train the same samples with the recipe and with the engine; return both sides and the ratio.

    threads: torch's CPU threads for both sides (0 = torch's default, one per core); restored after.
    engine_overrides: `section.key=value` changes to the engine's config (an A/B of one engine choice).
    baseline=False skips the recipe (speedup is then None): for comparing engine variants quickly."""
    check_engine_overrides(list(engine_overrides))
    import torch

    from humanlike_tui.engine import models as M

    M.quiet_libraries()
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        load_before = load_average()
        per_step = per_step_samples()
        # at least one timed step after the untimed ones (with --warmup 0 the first step is still untimed)
        samples = max(per_step * (max(warmup, 1) + 1), math.ceil(samples / per_step) * per_step)
        base, engine = _both_sides(model, samples, data, warmup, lr, seed, log, engine_overrides, baseline)
        return {"device": device_name(), "threads": torch.get_num_threads(), "model": model, "data": data,
                "samples": samples, "warmup_steps": warmup, "engine_overrides": list(engine_overrides),
                "baseline": asdict(base) if base else None, "engine": asdict(engine),
                "speedup": round(engine.tokens_per_s / base.tokens_per_s, 2) if base else None,
                "eval_loss_delta": round(engine.eval_loss - base.eval_loss, 4) if base else None,
                "load_average": {"start": load_before, "end": load_average()}, "versions": library_versions()}
    finally:
        torch.set_num_threads(threads_before)


def _both_sides(model: str, samples: int, data: str, warmup: int, lr: float | None, seed: int,
                log: Callable[[str], None], overrides: tuple[str, ...] = (),
                with_baseline: bool = True) -> tuple[SideResult | None, SideResult]:
    import torch

    from humanlike_tui.engine import models as M

    with tempfile.TemporaryDirectory(prefix="hlt-bench-") as tmp:
        tmp_dir = Path(tmp)
        data_file = tmp_dir / "samples.jsonl"
        cfg = engine_config(model, data_file, samples, lr, overrides)
        model_path = M.resolve_model_path(cfg, log)
        tok = M.load_tokenizer(cfg, model_path)
        dcfg = DataConfig(source=data, rejected_column="", max_length=cfg.data.max_length, template=cfg.data.template)
        bench = bench_data(dcfg, tok, samples, seed)
        if not bench.held_out:
            raise InputError("bench: no held-out rows for the eval loss; use data with more distinct prompts")
        write_rows(bench.rows, data_file)
        log(f"{len(bench.train)} samples ({sum(e.length for e in bench.train) / len(bench.train):.0f} tokens mean), "
            f"{len(bench.held_out)} held-out rows")
        torch.manual_seed(seed)
        baseline = recipe_side(model_path, tok, bench, warmup, tmp_dir, log) if with_baseline else None
        engine = engine_side(cfg, bench, warmup, log)
    return baseline, engine


