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

import copy
import gc
import json
import math
import os
import platform
import random
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from humanlike_tui.config import Config, DataConfig, load_preset
from humanlike_tui.engine import data as D
from humanlike_tui.engine import store as S
from humanlike_tui.engine.procmem import peak_rss_bytes, reset_peak_rss
from humanlike_tui.errors import InputError

RECIPE_LORA = dict(r=32, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "dense"])
RECIPE_LR = 2e-4
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


# --- data --------------------------------------------------------------------------------------------

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


# --- measuring ---------------------------------------------------------------------------------------

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
        from humanlike_tui.engine.hardware import GpuSampler

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
    if len(marks) <= warmup:
        raise InputError(f"bench: {len(marks)} steps is not more than the {warmup} warm-up steps; "
                         "raise --samples or lower --warmup")
    seconds = marks[-1][0] - marks[warmup - 1][0] if warmup else marks[-1][0] - marks[0][0]
    tokens = sum(n for _, n in marks[warmup:]) if warmup else sum(n for _, n in marks[1:])
    return seconds, tokens, len(marks) - max(warmup, 1)


# --- the original recipe -----------------------------------------------------------------------------

def recipe_side(model_path: str, tok, data: BenchData, warmup: int, out_dir: Path,
                log: Callable[[str], None]) -> SideResult:
    """The seed report's recipe, as the anchor script runs it, on our samples."""
    import torch
    from transformers import PrinterCallback, ProgressCallback, Trainer

    cuda = torch.cuda.is_available()
    compute = torch.float16 if cuda else torch.float32
    log(f"recipe: loading {model_path} in nf4 ({compute})")
    free_memory()
    seen: list[int] = []  # real tokens of each batch, in step order (no data-loader workers, no prefetch)
    clock = make_step_clock(cuda)
    rows = [{"input_ids": list(e.prompt_ids) + list(e.chosen_ids), "attention_mask": [1] * e.length}
            for e in data.train]
    with PeakMemory(cuda) as peak:
        model = load_recipe_model(model_path, compute, cuda)
        trainer = Trainer(model=model, args=recipe_arguments(out_dir, len(rows), cuda), train_dataset=rows,
                          data_collator=recipe_collator(tok, seen), callbacks=[clock])
        for quiet in (PrinterCallback, ProgressCallback):  # they print to stdout, where --json goes
            trainer.remove_callback(quiet)
        log(f"recipe: training {len(rows)} samples at batch 1")
        trainer.train()
    mem = peak.figures()
    seconds, tokens, steps = timed_rate(list(zip(clock.wall, seen)), warmup)
    cpu_seconds = timed_rate(list(zip(clock.cpu, seen)), warmup)[0]
    eval_loss = answer_loss(model, data.held_out, next(model.parameters()).device)
    del trainer, model
    free_memory()
    optimizer = "paged_adamw_8bit" if cuda else "adamw_torch"
    return SideResult("recipe", len(rows), steps, tokens, round(seconds, 3), round(tokens / seconds, 1),
                      round(seconds / steps, 4), round(eval_loss, 4), round(cpu_seconds, 3),
                      round(tokens / max(cpu_seconds, 1e-9), 1), **mem,
                      settings={"batch": 1, "lr": RECIPE_LR, "quant": "nf4", "lora_r": RECIPE_LORA["r"],
                                "compute": str(compute).removeprefix("torch."), "grad_ckpt": True,
                                "optimizer": optimizer})


def load_recipe_model(model_path: str, compute, cuda: bool):
    """nf4 (no double quant) with `compute` matmuls, prepared for k-bit training, LoRA r=32 attached."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from humanlike_tui.engine.model import keep_cpu_4bit_layout

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                             bnb_4bit_use_double_quant=False)
    model = AutoModelForCausalLM.from_pretrained(model_path, quantization_config=bnb,
                                                 device_map={"": 0} if cuda else None)
    keep_cpu_4bit_layout(model)  # a bitsandbytes CPU quirk (see model.py); no effect on a GPU
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    return get_peft_model(model, LoraConfig(bias="none", task_type="CAUSAL_LM", **RECIPE_LORA))


def recipe_collator(tok, seen: list[int]):
    """DataCollatorForLanguageModeling with pad = EOS, as the recipe had it: labels = input_ids with
    every pad id masked, so the EOS at the end of each sample is masked too. Counts real tokens."""
    from transformers import DataCollatorForLanguageModeling

    recipe_tok = copy.deepcopy(tok)
    recipe_tok.pad_token = recipe_tok.eos_token
    recipe_tok.padding_side = "right"
    collator = DataCollatorForLanguageModeling(recipe_tok, mlm=False)

    def collate(features):
        batch = collator(features)
        seen.append(int(batch["attention_mask"].sum()))
        return batch

    return collate


def recipe_arguments(out_dir: Path, steps: int, cuda: bool):
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    group = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in fields
             else {"group_by_length": True})  # renamed in transformers 5.x
    return TrainingArguments(
        output_dir=str(out_dir / "recipe"), warmup_steps=1, per_device_train_batch_size=1,
        gradient_accumulation_steps=1, max_steps=steps, learning_rate=RECIPE_LR,
        optim="paged_adamw_8bit" if cuda else "adamw_torch", logging_steps=10**6, save_strategy="no",
        eval_strategy="no", gradient_checkpointing=True, report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=not cuda, seed=0, **group)


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


# --- the engine --------------------------------------------------------------------------------------

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

    from humanlike_tui.engine import model as M
    from humanlike_tui.engine.train import run_training
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
                      settings={"batch": per_step, "lr": cfg.train.learning_rate, "quant": cfg.quant.mode, "compute": precision.compute,
                                "lora_r": cfg.lora.r, "grad_ckpt": plan.get("checkpointing"),
                                "micro_batch_tokens": plan.get("budget"),
                                "optimizer": "AdamW (fused)" if cuda else "AdamW (foreach)",
                                "device": started.get("device"), "run_id": result.run_id})


def _final_plan(run_id: str) -> dict[str, Any]:
    """The pass budget and checkpointing the engine settled on (kept in its last checkpoint's counters)."""
    latest = S.get_run(run_id).latest_checkpoint()
    return S.read_json(latest[1] / "state.json") if latest else {}


# --- the whole benchmark -----------------------------------------------------------------------------

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

    from humanlike_tui.engine import model as M

    M.quiet_libraries()
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        load_before = _load_average()
        per_step = per_step_samples()
        samples = max(per_step * (warmup + 1), math.ceil(samples / per_step) * per_step)
        base, engine = _both_sides(model, samples, data, warmup, lr, seed, log, engine_overrides, baseline)
        return {"device": device_name(), "threads": torch.get_num_threads(), "model": model, "data": data,
                "samples": samples, "warmup_steps": warmup, "engine_overrides": list(engine_overrides),
                "baseline": asdict(base) if base else None, "engine": asdict(engine),
                "speedup": round(engine.tokens_per_s / base.tokens_per_s, 2) if base else None,
                "eval_loss_delta": round(engine.eval_loss - base.eval_loss, 4) if base else None,
                "load_average": {"start": load_before, "end": _load_average()}, "versions": _versions()}
    finally:
        torch.set_num_threads(threads_before)


def _both_sides(model: str, samples: int, data: str, warmup: int, lr: float | None, seed: int,
                log: Callable[[str], None], overrides: tuple[str, ...] = (),
                with_baseline: bool = True) -> tuple[SideResult | None, SideResult]:
    import torch

    from humanlike_tui.engine import model as M

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


def _load_average() -> list[float] | None:
    """Other processes on the machine skew CPU timings; the load average says how much to trust them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _versions() -> dict[str, str]:
    from humanlike_tui.engine.train import _versions as v

    return v()
