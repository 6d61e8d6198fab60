"""Preference step cost: this engine's DPO, ORPO and SimPO steps on the same pair rows, and TRL's DPOTrainer
(the natural peer) on the same model, rows, batch size and LoRA settings, each side in its own process.

Each side runs in a fresh child process (multiprocessing "spawn"), so its peak RSS is its own and never
what an earlier side left in the allocator. All sides train the same rows once, in steps of
train.batch_size x train.grad_accum pairs, from one preset (smol-cpu for the real model, demo for the
tiny one); the first `warmup` steps are not timed. Tokens are the real (non-pad) tokens of chosen and
rejected sequences, prompt included, the same count on both sides; the reference passes (DPO: ours once
per pair, cached; TRL's every step, adapter disabled) are part of the step's cost, not of its tokens.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from humanlike_tui.config import Config, load_preset
from humanlike_tui.engine import data as D
from humanlike_tui.engine.bench.measure import (PeakMemory, device_name, free_memory, load_average, make_step_clock,
                                                timed_rate)
from humanlike_tui.engine.hardware.probe import library_versions
from humanlike_tui.errors import InputError

ENGINE_METHODS = ("dpo", "orpo", "simpo")
TRL_DPO = "trl-dpo"
SIDES = ENGINE_METHODS + (TRL_DPO,)


def preference_config(preset: str, model: str, data_file: Path, steps: int, method: str) -> Config:
    """The preset for this model, trained on exactly the rows in data_file, no evaluation or checkpoints
    on the way (the final checkpoint is written after the last timed step)."""
    cfg = load_preset(preset)
    return cfg.replace(**{
        "model.name": model, "data.source": str(data_file), "data.rejected_column": "rejected",
        "data.eval_fraction": 0.0, "data.max_rows": 0, "train.method": method, "train.max_steps": steps,
        "train.eval_every": 0, "train.save_every": 0, "train.sample_prompts": 0,
        "train.warmup_steps": min(cfg.train.warmup_steps, max(0, steps - 1))})


def pair_rows(cfg: Config, tok, n: int) -> list[D.Row]:
    """The first n rows with a rejected answer that fit data.max_length, cycled when the data has fewer."""
    rows, counts = D.load_rows(cfg.data, need_rejected=True)
    examples = D.tokenize_rows(rows, tok, cfg.data, counts, True)
    kept = {e.prompt for e in examples}
    usable = [r for r in rows if r.prompt in kept and r.rejected]
    if not usable:
        raise InputError(f"bench --preference: no rows of {cfg.data.source} with a rejected answer fit "
                         f"data.max_length ({cfg.data.max_length} tokens)")
    return [usable[i % len(usable)] for i in range(n)]


def write_pairs(rows: list[D.Row], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected},
                               ensure_ascii=False) + "\n")


def side_result(name: str, marks: list[tuple[float, int]], cpu_marks: list[tuple[float, int]], warmup: int,
                per_step: int, mem: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    seconds, tokens, steps = timed_rate(marks, warmup)
    cpu_seconds = timed_rate(cpu_marks, warmup)[0]
    return {"name": name, "timed_steps": steps, "pairs_per_step": per_step, "tokens": tokens,
            "seconds": round(seconds, 3), "s_per_step": round(seconds / steps, 3),
            "tokens_per_s": round(tokens / seconds, 1), "cpu_seconds": round(cpu_seconds, 3),
            "tokens_per_cpu_s": round(tokens / max(cpu_seconds, 1e-9), 1), **mem, "settings": settings}


def engine_side(cfg: Config, warmup: int, log: Callable[[str], None]) -> dict[str, Any]:
    """run_training with this method; step clocks from its Step events (after the step's one host sync)."""
    import torch

    from humanlike_tui.engine.storage import runs as S
    from humanlike_tui.engine.training.run import run_training
    from humanlike_tui.events import Step

    marks: list[tuple[float, int]] = []
    cpu_marks: list[tuple[float, int]] = []

    def emit(event) -> None:
        if isinstance(event, Step):
            marks.append((time.perf_counter(), event.tokens_seen - sum(n for _, n in marks)))
            cpu_marks.append((time.process_time(), marks[-1][1]))

    log(f"{cfg.train.method}: {cfg.train.max_steps} steps of {cfg.train.batch_size * cfg.train.grad_accum} pairs")
    with PeakMemory(torch.cuda.is_available()) as peak:
        result = run_training(cfg, emit, run_name=f"bench-{cfg.train.method}-{int(time.time())}")
    mem = peak.figures()
    state = _final_state(result.run_id)
    S.delete_run(result.run_id)  # a benchmark's adapter does not belong in the user's library
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    return side_result(cfg.train.method, marks, cpu_marks, warmup, per_step, mem,
                       {"lora_r": cfg.lora.r, "targets": list(cfg.lora.target_modules), "lr": cfg.train.learning_rate,
                        "grad_ckpt": state.get("checkpointing"), "micro_batch_tokens": state.get("budget"),
                        "reference": "cached once per pair" if cfg.train.method == "dpo" else "none"})


def _final_state(run_id: str) -> dict[str, Any]:
    from humanlike_tui.engine.storage import runs as S

    latest = S.get_run(run_id).latest_checkpoint()
    return S.read_json(latest[1] / "state.json") if latest else {}


def trl_dpo_side(cfg: Config, warmup: int, out_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """TRL's DPOTrainer on the same base and LoRA (built by our loader), the same rows as text in our
    template, the same batch, learning rate and beta; TRL's own defaults otherwise (its reference is the
    base with the adapter disabled, computed every step; gradient checkpointing on)."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback
    from trl import DPOConfig, DPOTrainer

    from humanlike_tui.engine import models as M

    cuda = torch.cuda.is_available()
    t = cfg.train
    per_step = t.batch_size * t.grad_accum
    with PeakMemory(cuda) as peak:
        precision = M.resolve_precision(cfg)
        model, tok = M.load_base_model(cfg, precision)
        torch.manual_seed(t.seed)
        model = M.attach_lora(cfg, model, False)
        rows, counts = D.load_rows(cfg.data, need_rejected=True)
        examples = D.tokenize_rows(rows, tok, cfg.data, counts, True)
        # Our own tokens as text: the formatted prompt and each answer with its end token, so TRL reads the same.
        data = Dataset.from_dict({
            "prompt": [tok.decode(e.prompt_ids) for e in examples],
            "chosen": [tok.decode(e.chosen_ids) for e in examples],
            "rejected": [tok.decode(e.rejected_ids) for e in examples]})
        seen: list[int] = []
        clock = make_step_clock(cuda)
        args = DPOConfig(output_dir=str(out_dir), per_device_train_batch_size=t.batch_size,
                         gradient_accumulation_steps=t.grad_accum, max_steps=t.max_steps, learning_rate=t.learning_rate,
                         beta=t.dpo_beta, max_length=None, report_to=[], save_strategy="no", logging_steps=10**6,
                         use_cpu=not cuda, bf16=precision.compute == "bf16", seed=t.seed, dataloader_num_workers=0)
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[clock])
        for quiet in (PrinterCallback, ProgressCallback):  # they print to stdout
            trainer.remove_callback(quiet)
        collate = trainer.data_collator

        def counting(batch):
            out = collate(batch)
            seen.append(int(out["attention_mask"].sum()))
            return out

        trainer.data_collator = counting
        log(f"{TRL_DPO}: {t.max_steps} steps of {per_step} pairs")
        trainer.train()
    mem = peak.figures()
    step_tokens = [sum(seen[i * t.grad_accum:(i + 1) * t.grad_accum]) for i in range(len(clock.wall))]
    settings = {"lora_r": cfg.lora.r, "targets": list(cfg.lora.target_modules), "lr": t.learning_rate,
                "grad_ckpt": bool(args.gradient_checkpointing), "reference": "every step (adapter disabled)",
                "trl": trl_version()}
    out = side_result(TRL_DPO, list(zip(clock.wall, step_tokens)), list(zip(clock.cpu, step_tokens)), warmup,
                      per_step, mem, settings)
    del trainer, model
    free_memory()
    return out


def trl_version() -> str:
    import trl

    return trl.__version__


def _child(side: str, cfg_dict: dict[str, Any], warmup: int, threads: int, out_dir: str, queue) -> None:
    """One side in a fresh process: its result (or its error text) goes back through the queue."""
    import contextlib
    import sys

    try:
        import torch

        from humanlike_tui.config import config_from_dict
        from humanlike_tui.engine import models as M

        M.quiet_libraries()
        if threads:
            torch.set_num_threads(threads)
        cfg = config_from_dict(cfg_dict)

        def log(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

        with contextlib.redirect_stdout(sys.stderr):
            if side == TRL_DPO:
                result = trl_dpo_side(cfg, warmup, Path(out_dir) / "trl", log)
            else:
                result = engine_side(cfg, warmup, log)
        queue.put(("ok", result))
    except BaseException as exc:  # the parent reports it; the child must not hang the queue
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_side(side: str, cfg: Config, warmup: int, threads: int, out_dir: Path) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(side, cfg.to_dict(), warmup, threads, str(out_dir), queue),
                       name=f"bench-{side}")
    proc.start()
    status, payload = queue.get()
    proc.join()
    if status != "ok":
        raise InputError(f"bench --preference: the {side} side failed: {payload}")
    return payload


def run_preference_bench(model: str, steps: int, sides: tuple[str, ...], data: str = "builtin:sample",
                         warmup: int = 1, threads: int = 0, preset: str | None = None,
                         log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Each side trains the same `steps` x batch pairs in its own process; returns every side and the ratios
    to our DPO (speed) and, with TRL's side, ours against TRL's."""
    from humanlike_tui.engine import models as M

    bad = [s for s in sides if s not in SIDES]
    if bad:
        raise InputError(f"--sides: unknown {', '.join(bad)}; choose from {', '.join(SIDES)}")
    if steps <= warmup:
        raise InputError(f"--steps: must be more than the {warmup} warm-up step(s)")
    preset = preset or ("demo" if model == "builtin:tiny-phi" else "smol-cpu")
    start_load = load_average()
    with tempfile.TemporaryDirectory(prefix="hlt-pref-bench-") as tmp:
        tmp_dir = Path(tmp)
        data_file = tmp_dir / "pairs.jsonl"
        probe = preference_config(preset, model, data_file, steps, "dpo")
        source = data
        tok = M.load_tokenizer(probe, M.resolve_model_path(probe, log))
        per_step = probe.train.batch_size * probe.train.grad_accum
        rows = pair_rows(probe.replace(**{"data.source": source}), tok, steps * per_step)
        write_pairs(rows, data_file)
        log(f"{len(rows)} pairs from {source}, {steps} steps of {per_step} ({warmup} not timed), preset {preset}")
        results = {}
        for side in sides:
            cfg = preference_config(preset, model, data_file, steps, "dpo" if side == TRL_DPO else side)
            results[side] = run_side(side, cfg, warmup, threads, tmp_dir)
            log(f"{side}: " + json.dumps(results[side]))  # each side's figures as soon as it ends
    return {"device": device_name(), "threads": threads or None, "model": model, "preset": preset, "data": source,
            "steps": steps, "warmup_steps": warmup, "pairs_per_step": per_step, "sides": results,
            "ratios": ratios(results), "load_average": {"start": start_load, "end": load_average()},
            "versions": library_versions()}


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """tokens/s of each side over our DPO's, and our DPO over TRL's (speed and peak RSS)."""
    out = {}
    dpo = results.get("dpo")
    if dpo:
        for name, r in results.items():
            if name != "dpo":
                out[f"{name}_vs_dpo_tokens_per_s"] = round(r["tokens_per_s"] / dpo["tokens_per_s"], 2)
    trl = results.get(TRL_DPO)
    if dpo and trl:
        out["dpo_vs_trl_tokens_per_s"] = round(dpo["tokens_per_s"] / trl["tokens_per_s"], 2)
        if dpo.get("peak_rss") and trl.get("peak_rss"):
            out["dpo_vs_trl_peak_rss"] = round(dpo["peak_rss"] / trl["peak_rss"], 2)
    return out
