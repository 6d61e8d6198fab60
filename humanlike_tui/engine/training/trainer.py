"""The training loop: set-up (data, model, LoRA, optimizer, pass plan), then steps until max_steps, a stop
or a pause, with evaluation, checkpoints and progress events. The pieces live beside it: steps.py (one
optimizer step), heldout.py (evaluation), checkpoints.py, reference.py (DPO), distributed.py.
See run.py for the entry point."""

from __future__ import annotations

import gc
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

from humanlike_tui.config import Config
from humanlike_tui.energy import EnergyMeter
from humanlike_tui.engine import data as D
from humanlike_tui.engine import models as M
from humanlike_tui.engine.hardware.procmem import device_memory, peak_memory_bytes
from humanlike_tui.engine.hardware.sampler import gpu_power_reader, read_watts
from humanlike_tui.engine.planning.passes import plan_for_device
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.training.checkpoints import (TrainState, read_checkpoint, write_checkpoint)
from humanlike_tui.engine.training.distributed import Dist, agreed_flags, barrier, sum_across
from humanlike_tui.engine.training.heldout import HeldOut
from humanlike_tui.engine.training.reference import DpoReference
from humanlike_tui.engine.training.reporting import MetricReporters, open_reporters
from humanlike_tui.engine.training.schedule import lr_at, phase_of
from humanlike_tui.engine.training.steps import StepRunner
from humanlike_tui.engine.training import warm_start
from humanlike_tui.errors import InputError, TrainingError
from humanlike_tui.events import CheckpointSaved, DataReport, Emit, Eval, Log, Step, Stopped
from humanlike_tui.engine.storage import files


class StoppedBeforeStart(Exception):
    """A stop was asked for during set-up, before the first step: there is nothing to save."""

# Per-pair sums a preference step returns (already divided by the step's pairs), summed across processes.
PAIR_STATS = ("chosen_sum", "rejected_sum", "correct", "logp_chosen_sum", "logp_rejected_sum", "nll_sum",
              "log_odds_sum")
RATE_WINDOW = 20  # steps averaged for tokens/s and the ETA
STEP_GAP_S = 600.0  # power is read once per step: bridge steps up to this long


def pair_metrics(phase: str, s: dict[str, float]) -> dict[str, float]:
    """A preference step's figures: rewards (DPO: beta x log-ratio to the reference; SimPO: beta x mean log-prob
    per answer token; ORPO: lambda x mean log-prob, as TRL logs them), their margin and accuracy; for ORPO and
    SimPO also the mean log-probs themselves, for ORPO its SFT loss and log odds ratio."""
    if phase not in ("dpo", "orpo", "simpo"):
        return {}
    out = {"reward_chosen": s["chosen_sum"], "reward_rejected": s["rejected_sum"],
           "reward_margin": s["chosen_sum"] - s["rejected_sum"], "reward_accuracy": s["correct"]}
    if phase != "dpo":
        out |= {"logp_chosen": s["logp_chosen_sum"], "logp_rejected": s["logp_rejected_sum"],
                "logp_margin": s["logp_chosen_sum"] - s["logp_rejected_sum"]}
    if phase == "orpo":
        out |= {"nll_loss": s["nll_sum"], "log_odds_ratio": s["log_odds_sum"]}
    return out


class Trainer:
    reporters: MetricReporters | None = None  # TensorBoard / W&B (train.report_to), opened at the first record
    reporters_opened = False

    def __init__(self, cfg: Config, emit: Emit, stop: threading.Event, pause: threading.Event,
                 run: S.Run, dist: Dist, power: Callable[[], float | None] | None):
        self.cfg, self.emit_all, self.stop, self.pause, self.run, self.dist = cfg, emit, stop, pause, run, dist
        self.power = power
        self.energy = EnergyMeter(max_gap_s=STEP_GAP_S)
        self.per_step = cfg.train.batch_size * cfg.train.grad_accum
        self.state = TrainState()
        self.last_eval_metrics: dict[str, float] = {}
        self.order_cache: dict = {}
        self.elapsed_before = 0.0
        self.t0 = time.perf_counter()

    def emit(self, event) -> None:
        if self.dist.main:
            self.emit_all(event)

    def log(self, msg: str, level: str = "info") -> None:
        self.emit(Log(msg, level))

    def _warn_same_pairs(self, rows) -> None:
        """A pair whose chosen answer is its rejected one teaches a preference method nothing (DPO's loss stays
        at ln 2 = 0.693 for it); when every pair is like that, the run trains for nothing: say so up front."""
        same = sum(1 for r in rows if r.rejected is not None and r.chosen.strip() == r.rejected.strip())
        if not same:
            return
        method = self.cfg.train.method.upper()
        if same == len(rows):
            self.log(f"every pair's chosen answer equals its rejected one ({same:,} pairs): {method} learns nothing "
                     f"from them (its loss stays at 0.693); check data.rejected_column ({self.cfg.data.rejected_column!r}) "
                     "or train with train.method = 'sft'", "warning")
        else:
            self.log(f"{same:,} of {len(rows):,} pairs have a chosen answer equal to their rejected one; {method} "
                     "learns nothing from those", "warning")

    def stop_if_asked(self) -> None:
        """Between the slow stages of set-up (data, model load, tokenizing, LoRA): a stop asked for while the
        model loads ends the run here, with nothing to save, instead of after the load and a first step.
        One process only: several agree on a stop in the loop (agreed_flags)."""
        if self.dist.world == 1 and self.stop.is_set():
            raise StoppedBeforeStart()

    def setup(self) -> None:
        import torch

        cfg = self.cfg
        dpo = cfg.train.method != "sft"
        rows, counts = D.load_rows(cfg.data, need_rejected=dpo)
        self.stop_if_asked()
        if dpo:
            self._warn_same_pairs(rows)
        if cfg.train.from_run:
            warm_start.start_adapter_dir(cfg)  # a missing or unfit start fails before the slow model load
        self.precision = M.resolve_precision(cfg, "cuda" if torch.cuda.is_available() else "cpu")
        cuda = self.precision.device == "cuda"
        self.device = torch.device("cuda", self.dist.local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
            torch.cuda.reset_peak_memory_stats()
            self.power = self.power or gpu_power_reader(self.dist.local_rank)
        model, self.tok = M.load_base_model(cfg, self.precision, self.dist.local_rank, self.log)
        self.stop_if_asked()
        examples = D.tokenize_rows(rows, self.tok, cfg.data, counts, dpo)
        self.stop_if_asked()
        self.train_set, eval_set = D.split_by_prompt(examples, cfg.data.eval_fraction, cfg.train.seed)
        if not self.train_set:
            raise InputError("data: no rows left for training after the split; add rows or lower data.eval_fraction")
        counts.train_rows, counts.eval_rows = len(self.train_set), len(eval_set)
        self.counts = counts
        self.emit(DataReport(cfg.data.source, counts.rows_read, counts.rows_kept, dict(counts.dropped),
                             counts.train_rows, counts.eval_rows, counts.tokens_mean, counts.tokens_max))
        if set(counts.shapes) - {"prompt_chosen"} or counts.shortened:
            self.log(D.shapes_text(counts))  # conversations: how many of each shape, how many shortened
        self.lengths = [e.length for e in self.train_set]
        self.passes = plan_for_device(cfg, model.config, self.precision, self.device, self.lengths, dpo, self.log)
        torch.manual_seed(cfg.train.seed)  # LoRA's A matrices are initialised from this
        self.model = M.attach_lora(cfg, model, self.passes.checkpointing)
        self.stop_if_asked()
        if cfg.train.from_run:  # train --from RUN: that run's adapter is the start (warm_start.py)
            warm_start.load_start_adapter(self.model, cfg, self.log)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay,
                                fused=cuda, foreach=None if cuda else True)
        scaler = torch.amp.GradScaler("cuda") if self.precision.needs_scaler else None
        budget = max(self.passes.budget, max(self.lengths) * (2 if dpo else 1))
        self.reference = DpoReference(self.model)
        if cfg.train.from_run and cfg.train.method == "dpo":
            self.reference.snapshot()  # DPO nudges away from the starting adapter, not from the bare base
        self.steps = StepRunner(cfg, self.model, self.tok, self.device, self.precision.autocast_context,
                                self.train_set, params, opt, scaler, self.dist, self.reference, budget, self.emit)
        uses_reference = cfg.train.method in ("dpo", "sft+dpo")  # orpo and simpo are reference-free
        self.heldout = HeldOut(cfg, self.model, self.tok, self.device, self.precision.autocast_context, eval_set,
                               self.steps.pair_logps, self.reference if uses_reference else None)
        self.trainable, self.total = M.count_parameters(self.model)

    # checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, reason: str) -> Path:
        target = self.run.checkpoints_dir / f"step-{self.state.step:06d}"
        if self.dist.main:
            existing = self.run.latest_checkpoint()
            if not (existing and existing[0] == self.state.step):
                with files.atomic_dir(target, manifest=True) as tmp:  # sizes and sha256 in COMPLETE
                    s = self.state
                    s.budget, s.elapsed_s, s.energy_wh = self.steps.budget, self.elapsed(), self.energy.wh
                    write_checkpoint(tmp, self.model, self.steps.opt, self.steps.scaler, self.reference.state,
                                     s.to_dict(self.passes.checkpointing))
                self.run.prune_checkpoints(self.cfg.train.keep_checkpoints)
            self.run.update_meta(**self.meta_progress(), last_checkpoint=self.state.step)
        barrier(self.dist)
        self.emit(CheckpointSaved(self.state.step, str(target), reason))
        return target

    def restore(self, path: Path) -> None:
        saved, reference = read_checkpoint(path, self.model, self.steps.opt, self.steps.scaler, self.device)
        self.reference.state = reference
        self.state = TrainState.from_dict(saved, self.steps.budget)
        self.steps.budget = self.state.budget
        self.elapsed_before = self.state.elapsed_s
        self.energy = EnergyMeter(self.state.energy_wh, max_gap_s=STEP_GAP_S)

    # the loop ------------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t0)

    def meta_progress(self) -> dict[str, Any]:
        s, elapsed = self.state, self.elapsed()
        return {"steps": s.step, "samples_seen": s.samples_seen, "tokens_seen": s.tokens_seen,
                "first_loss": s.first_loss, "final_loss": s.last_loss, "final_eval_loss": s.last_eval,
                "eval_metrics": self.last_eval_metrics, "duration_s": round(elapsed, 2),
                "tokens_per_s": round(s.tokens_seen / max(1e-9, elapsed), 1),
                "peak_memory_bytes": peak_memory_bytes(self.precision.device),
                "energy_wh": round(self.energy.wh, 4),
                "energy_cost": round(self.energy.cost(self.cfg.train.price_per_kwh), 4)}

    def train_one(self, step: int) -> dict[str, Any]:
        """One optimizer step; returns its loss, tokens, phase and metrics (after the one host sync)."""
        import torch

        cfg = self.cfg
        phase = phase_of(cfg, step)
        if phase == "dpo" and cfg.train.method == "sft+dpo" and self.reference.state is None:
            self.reference.snapshot()  # SFT just ended: that model is DPO's reference
        global_idx = D.step_indices(step, self.per_step, self.lengths, cfg.train.seed, self.order_cache)
        idx = global_idx[self.dist.rank::self.dist.world]
        torch.manual_seed(cfg.train.seed * 1_000_003 + step * 101 + self.dist.rank)  # dropout
        stats, tokens = self.steps.run(step, phase, idx, global_idx)
        norm = self.steps.update(lr_at(cfg, step))
        # The one host sync of the step: everything below is for logging.
        local = [float(stats.get("loss_sum", 0.0)), float(tokens)]  # a rank may get no sample this step
        extra = [float(stats.get(k, 0.0)) for k in PAIR_STATS]
        summed = sum_across(local + extra, self.dist, self.device)
        loss, tokens_all = summed[0], int(summed[1])
        metrics = {"grad_norm": float(norm)} | pair_metrics(phase, dict(zip(PAIR_STATS, summed[2:])))
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at step {step + 1}; lower train.learning_rate "
                                "(the last checkpoint is kept, resume from it with a lower rate)")
        self.state.samples_seen += len(global_idx)
        self.state.tokens_seen += tokens_all
        return {"loss": loss, "tokens": tokens_all, "phase": phase, **metrics}

    def do_eval(self) -> None:
        eval_loss, metrics, samples = self.heldout.evaluate(self.steps.budget, samples=self.dist.main)
        if math.isnan(eval_loss):
            return
        self.state.last_eval, self.last_eval_metrics = eval_loss, metrics
        if self.dist.main:
            self.record({"step": self.state.step, "kind": "eval", "eval_loss": eval_loss, **metrics})
        self.emit(Eval(self.state.step, eval_loss, metrics, samples))

    def record(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record, also to TensorBoard / W&B when train.report_to asks (main process only)."""
        self.run.append_metric(record)
        if self.cfg.train.report_to and not self.reporters_opened:  # at the first record, after any resume
            self.reporters_opened = True
            self.reporters = open_reporters(self.cfg.train.report_to, self.run.run_dir, self.run.run_id,
                                            self.cfg.to_dict(), lambda message, level: self.log(message, level))
        if self.reporters is not None:
            self.reporters.write(record)

    def report_step(self, out: dict[str, Any], dt: float, window: list[tuple[float, int]]) -> None:
        cfg, s = self.cfg, self.state
        total = cfg.train.max_steps
        tps = sum(n for _, n in window) / max(1e-9, sum(t for t, _ in window))
        eta = (total - s.step) * (sum(t for t, _ in window) / len(window))
        s.first_loss = out["loss"] if s.first_loss is None else s.first_loss
        s.last_loss = out["loss"]
        mem_a, mem_r = device_memory(self.device)
        metrics = {k: v for k, v in out.items() if k not in ("loss", "tokens", "phase")}
        metrics["energy_wh"] = self.energy.wh
        lr = lr_at(cfg, s.step - 1)
        if self.dist.main:
            self.record({"step": s.step, "kind": "train", "phase": out["phase"], "loss": out["loss"],
                         "lr": lr, "tokens": out["tokens"], **metrics})
        self.emit(Step(s.step, total, out["loss"], lr, metrics.pop("grad_norm"), tps, s.samples_seen,
                       s.tokens_seen, self.elapsed(), eta, out["phase"], mem_a, mem_r, metrics))

    def loop(self) -> str:
        """Train until max_steps, a stop or a pause. Returns finished | stopped | paused."""
        cfg = self.cfg
        total = cfg.train.max_steps
        self.model.train()
        window: list[tuple[float, int]] = []
        self.energy.add(time.perf_counter(), read_watts(self.power))
        while self.state.step < total:
            t_step = time.perf_counter()
            out = self.train_one(self.state.step)
            self.state.step += 1
            dt = time.perf_counter() - t_step
            self.energy.add(time.perf_counter(), read_watts(self.power))
            window = (window + [(dt, out["tokens"])])[-RATE_WINDOW:]
            self.report_step(out, dt, window)
            if cfg.train.eval_every and self.state.step % cfg.train.eval_every == 0 and self.state.step < total:
                self.do_eval()
            stop, pause = agreed_flags(self.stop.is_set(), self.pause.is_set(), self.dist, self.device)
            if stop or pause:
                path = self.save_checkpoint("pause" if pause else "stop")
                self.emit(Stopped(self.run.run_id, self.state.step, str(path), paused=pause))
                return "paused" if pause else "stopped"
            if cfg.train.save_every and self.state.step % cfg.train.save_every == 0 and self.state.step < total:
                self.save_checkpoint("periodic")
        self.do_eval()
        self.save_checkpoint("final")
        return "finished"

    def save_adapter(self) -> Path:
        if self.dist.main:
            with files.atomic_dir(self.run.adapter_dir, manifest=True) as tmp:
                self.model.save_pretrained(tmp, safe_serialization=True)
                self.tok.save_pretrained(tmp)
                (tmp / "base_model.txt").write_text(self.cfg.model.name + "\n", encoding="utf-8")
        barrier(self.dist)
        return self.run.adapter_dir

    def free(self) -> None:
        """Let go of the model so the GPU memory is really free (pause = play a game meanwhile)."""
        import torch

        if self.reporters is not None:
            self.reporters.close()  # flushes the last figures
            self.reporters = None
        for name in ("model", "steps", "heldout", "reference"):
            if hasattr(self, name):
                delattr(self, name)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
