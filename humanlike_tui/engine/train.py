"""run_training(config, emit, stop) -> TrainResult: SFT, DPO and SFT-then-DPO behind one loop.

Why our own loop instead of HF Trainer: exact stop/pause/resume (data order, learning rate and
dropout seeds are pure functions of the step, so resuming at step k replays the same run), token-
budget micro-batches whose split never changes the maths (the loss is normalised by the whole
step's answer tokens, so halving the budget after an out-of-memory error changes speed, not the
result), logits computed only where a label exists, and one sync with the host per optimizer step.

The engine never imports textual: it talks through `emit(event)` and stops when `stop` is set.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from humanlike_tui import __version__
from humanlike_tui.config import Config
from humanlike_tui.engine import data as D
from humanlike_tui.engine import store as S
from humanlike_tui.errors import ConfigError, HumanlikeError, InputError, TrainingError
from humanlike_tui.events import (BatchReduced, CheckpointSaved, DataReport, Emit, Eval, Failed, Finished, Log,
                                  RunStarted, Step, Stopped, ignore)

MAX_BUDGET_HALVINGS = 6
VRAM_PLAN_CAP = int(7.5 * 2**30)  # never plan past this, so the defaults suit an 8 GB card
CPU_RAM_SHARE = 0.5  # on the CPU plan within half the available RAM: the rest is for the OS and other programs
LOGP_CHUNK = 2048  # tokens per lm_head chunk: bounds the fp32 logits tensor to chunk x vocab
# Below this many bytes of fp32 logits for the whole pass (a small vocabulary or few answer tokens),
# keep them for backward: recomputing the head would cost more time than the memory is worth.
LOGITS_KEEP_BYTES = 64 * 2**20
# Fields that define what a checkpoint means; a resume may change the others (e.g. max_steps).
# (sft+dpo's switch step is checked by its effective value: sft_steps = 0 means half of max_steps.)
RESUME_FIXED = ("model", "quant", "lora", "data", "train.method", "train.batch_size", "train.grad_accum",
                "train.seed")


@dataclass
class TrainResult:
    run_id: str
    run_dir: str
    status: str  # finished | stopped | paused
    adapter_dir: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dist:
    """Data-parallel position. One process: rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Under `accelerate launch` / torchrun the env names our rank; accelerate starts the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    from accelerate import PartialState

    # Without CUDA (CPU-only CI, `accelerate launch --multi_gpu` on a machine with no GPU) accelerate
    # would see no backend and leave every process alone as rank 0 of 1: ask for gloo on the CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    return Dist(state.process_index, state.num_processes, state.local_process_index)


# --- pure helpers (unit-tested) -------------------------------------------------------------------

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


def dpo_loss(pc, pr, rc, rr, beta: float):
    """Sigmoid DPO (Rafailov et al. 2023) on summed answer log-probs; returns per-pair loss and rewards."""
    import torch.nn.functional as F

    chosen_reward = beta * (pc - rc)
    rejected_reward = beta * (pr - rr)
    loss = -F.logsigmoid(chosen_reward - rejected_reward)
    return loss, chosen_reward.detach(), rejected_reward.detach()


def _chunk_logp(h, targets, weight, bias):
    import torch.nn.functional as F

    logits = F.linear(h, weight, bias).float()
    return -F.cross_entropy(logits, targets, reduction="none")


def token_logprobs(hidden, head, targets):
    """log p(target) per selected token, the head applied in chunks under checkpointing so that at
    most one chunk's fp32 logits (chunk x vocab) exist at once, in forward and in backward. Logits
    under LOGITS_KEEP_BYTES are computed at once and kept: no recompute."""
    import torch
    from torch.utils.checkpoint import checkpoint

    if hidden.shape[0] * head.weight.shape[0] * 4 <= LOGITS_KEEP_BYTES:
        return _chunk_logp(hidden, targets, head.weight, head.bias)
    outs = []
    for i in range(0, hidden.shape[0], LOGP_CHUNK):
        h, t = hidden[i:i + LOGP_CHUNK], targets[i:i + LOGP_CHUNK]
        if torch.is_grad_enabled() and h.requires_grad:
            outs.append(checkpoint(_chunk_logp, h, t, head.weight, head.bias, use_reentrant=False))
        else:
            outs.append(_chunk_logp(h, t, head.weight, head.bias))
    return torch.cat(outs) if outs else hidden.new_zeros(0, dtype=torch.float32)


def answer_logprobs(model, input_ids, labels, attention, device):
    """Per-token log-probs of the labelled tokens and their row, with no logits for masked positions.

    The selection indices are computed on the CPU from the labels, so nothing waits on the device.
    """
    import torch

    tgt = labels[:, 1:]
    sel = (tgt != D.IGNORE).reshape(-1).nonzero().squeeze(1)
    rows = torch.div(sel, tgt.shape[1], rounding_mode="floor")
    targets = tgt.reshape(-1)[sel]
    base = model.get_base_model()
    out = base.get_decoder()(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False)
    hidden = out.last_hidden_state[:, :-1].reshape(-1, out.last_hidden_state.shape[-1])
    hidden = hidden.index_select(0, sel.to(device))
    logp = token_logprobs(hidden, base.get_output_embeddings(), targets.to(device))
    return logp, rows.to(device)


def per_row_sum(values, rows, n_rows: int):
    import torch

    return torch.zeros(n_rows, device=values.device, dtype=values.dtype).index_add_(0, rows, values)


def peak_memory_bytes(device: str) -> int:
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_reserved())
    from humanlike_tui.engine.procmem import peak_rss_bytes

    return peak_rss_bytes()  # CPU: the process's peak resident memory


def vram_plan_limit(available_bytes: int, limit_gib: float) -> int:
    """Bytes a step may be planned for: the user's train.vram_limit_gib, else VRAM_PLAN_CAP; never more
    than the card has available (free plus what torch holds already)."""
    cap = int(limit_gib * 2**30) if limit_gib > 0 else VRAM_PLAN_CAP
    return max(0, min(available_bytes, cap))


def auto_token_budget(model_config, device: str, free_bytes: int, ckpt: bool, cap: int) -> int:
    """Fallback when engine.memory cannot model the architecture: a rough per-token activation model.

    With checkpointing each layer keeps only its input (hidden x 2 bytes per token) plus one layer's
    full activations during the recompute; without it every layer keeps them all.
    """
    if device != "cuda":
        return cap  # the CPU has the memory; one pass per step is fastest
    h = getattr(model_config, "hidden_size", 2048)
    inter = getattr(model_config, "intermediate_size", 4 * h)
    layers = getattr(model_config, "num_hidden_layers", 24)
    one_layer = (h * 16 + inter * 4) * 2
    per_token = layers * h * 2 + one_layer * 2 if ckpt else layers * one_layer
    budget = int(max(0, free_bytes) / max(1, per_token))
    return max(256, min(cap, budget))


@dataclass(frozen=True)
class PassPlan:
    """How each step runs: with or without activation checkpointing, in passes of <= budget tokens."""

    checkpointing: bool
    budget: int


def largest_tokens(fits: Callable[[int], bool], cap: int) -> int:
    """The largest t in 1..cap with fits(t) (fits is monotone: more tokens, more memory); 0 if none."""
    lo, hi = 0, cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def plan_passes(shapes, settings, limit_bytes: int, step_tokens: int, cap: int, allow_ckpt: bool,
                dynamic_only: bool = False, fixed_budget: int = 0) -> PassPlan:
    """Checkpointing and the pass budget from engine.memory's model of a step's peak (the same model
    `humanlike-tui hw` shows), with memory.FIT_MARGIN of headroom.

    Checkpointing recomputes every layer's forward in backward (about a third more work per pass), so
    it is used only when the step would need more passes without it. `dynamic_only`: compare only
    what grows with the tokens (on the CPU the weights are already counted out of the free RAM).
    """
    import dataclasses as dc

    from humanlike_tui.engine import memory as MEM

    fixed_keys = ("cuda_context", "runtime")
    dynamic_keys = ("activations", "recompute", "backward", "logits", "final", "slack")

    def fits(ckpt: bool, tokens: int) -> bool:
        items = MEM.estimate_items(shapes, dc.replace(settings, tokens=tokens, checkpointing=ckpt))
        peak = sum(it.bytes for it in items
                   if (it.key in dynamic_keys if dynamic_only else it.key not in fixed_keys))
        return peak * (1 + MEM.FIT_MARGIN) <= limit_bytes

    if fixed_budget:  # train.micro_batch_tokens: the user chose the pass size, we only choose checkpointing
        return PassPlan(allow_ckpt and not fits(False, min(fixed_budget, step_tokens)), fixed_budget)
    without = largest_tokens(lambda t: fits(False, t), cap)
    if not allow_ckpt:
        return PassPlan(False, without)
    with_ckpt = largest_tokens(lambda t: fits(True, t), cap)
    if without >= min(step_tokens, with_ckpt):
        return PassPlan(False, without)
    return PassPlan(True, with_ckpt)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"humanlike_tui": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


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


# --- the trainer ----------------------------------------------------------------------------------

class _Trainer:
    def __init__(self, cfg: Config, emit: Emit, stop: threading.Event, pause: threading.Event,
                 run: S.Run, dist: Dist, power: Callable[[], float | None] | None):
        self.cfg, self.emit_all, self.stop, self.pause, self.run, self.dist = cfg, emit, stop, pause, run, dist
        self.power = power
        self.energy_wh = 0.0
        self.per_step = cfg.train.batch_size * cfg.train.grad_accum
        self.step = 0
        self.samples_seen = 0
        self.tokens_seen = 0
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.last_eval: float | None = None
        self.last_eval_metrics: dict[str, float] = {}
        self.order_cache: dict = {}
        self.ref_cache: dict[int, tuple[float, float]] = {}
        self.ref_state: dict[str, Any] | None = None
        self.elapsed_before = 0.0
        self.halvings = 0

    def emit(self, event) -> None:
        if self.dist.main:
            self.emit_all(event)

    def log(self, msg: str, level: str = "info") -> None:
        self.emit(Log(msg, level))

    # setup ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        from humanlike_tui.engine import model as M

        cfg = self.cfg
        self.need_rejected = cfg.train.method != "sft"
        rows, counts = D.load_rows(cfg.data, need_rejected=self.need_rejected)
        self.precision = M.resolve_precision(cfg, "cuda" if torch.cuda.is_available() else "cpu")
        self.device = (torch.device("cuda", self.dist.local_rank) if self.precision.device == "cuda"
                       else torch.device("cpu"))
        if self.precision.device == "cuda":
            torch.cuda.set_device(self.device)
            torch.cuda.reset_peak_memory_stats()
        if self.precision.device == "cuda" and self.power is None:
            self.power = _gpu_power_reader(self.dist.local_rank)
        self.model, self.tok = M.load_base_model(cfg, self.precision, self.dist.local_rank, self.log)
        examples = D.tokenize_rows(rows, self.tok, cfg.data, counts, self.need_rejected)
        self.train_set, self.eval_set = D.split_by_prompt(examples, cfg.data.eval_fraction, cfg.train.seed)
        if not self.train_set:
            raise InputError("data: no rows left for training after the split; add rows or lower data.eval_fraction")
        counts.train_rows, counts.eval_rows = len(self.train_set), len(self.eval_set)
        self.counts = counts
        self.emit(DataReport(cfg.data.source, counts.rows_read, counts.rows_kept, dict(counts.dropped),
                             counts.train_rows, counts.eval_rows, counts.tokens_mean, counts.tokens_max))
        self.lengths = [e.length for e in self.train_set]
        self.passes = self.plan_passes()
        torch.manual_seed(cfg.train.seed)  # LoRA's A matrices are initialised from this
        self.model = M.attach_lora(cfg, self.model, self.passes.checkpointing)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        fused = self.precision.device == "cuda"
        self.opt = torch.optim.AdamW(self.params, lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay,
                                     fused=fused, foreach=None if fused else True)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.needs_scaler else None
        self.budget = self.passes.budget
        self.budget = max(self.budget, max(self.lengths) * (2 if self.need_rejected else 1))
        self.trainable, self.total = M.count_parameters(self.model)

    def plan_passes(self) -> PassPlan:
        """Checkpointing on or off, and tokens per pass, for the memory this device has free now."""
        import dataclasses as dc

        import torch

        cfg = self.cfg
        factor = 2 if self.need_rejected else 1  # DPO runs chosen and rejected together
        longest = max(self.lengths) * factor
        cap = self.per_step * cfg.data.max_length * factor
        step_tokens = self.per_step * longest  # the longest possible step, padded
        allow = cfg.model.gradient_checkpointing
        cuda = self.precision.device == "cuda"
        if cuda:
            free_now, _ = torch.cuda.mem_get_info(self.device)
            # What torch may hold at the peak: what is free plus what it holds now (the weights).
            limit = vram_plan_limit(free_now + torch.cuda.memory_reserved(self.device), cfg.train.vram_limit_gib)
            self.log(f"planning each step for up to {limit / 2**30:.2f} GiB of GPU memory"
                     + ("" if cfg.train.vram_limit_gib else " (train.vram_limit_gib = 0: what is free, at most "
                        f"{VRAM_PLAN_CAP / 2**30:g} GiB)"))
        else:
            from humanlike_tui.engine.hardware import _ram

            limit = int((_ram()[1] or 0) * CPU_RAM_SHARE)
        try:
            from humanlike_tui.engine import memory as MEM

            shapes = MEM.shapes_from_hf_config(self.model.config, cfg.model.name, "loaded model")
            settings = dc.replace(MEM.settings_for(cfg, shapes, self.precision.device,
                                                   self.precision.compute == "bf16"), seq_len=longest)
            plan = plan_passes(shapes, settings, limit, step_tokens, cap, allow, dynamic_only=not cuda,
                               fixed_budget=cfg.train.micro_batch_tokens)
        except Exception as exc:  # noqa: BLE001 - an architecture the memory model cannot build
            self.log(f"no memory plan for this model ({type(exc).__name__}); using a rough token budget", "warning")
            free = limit - (torch.cuda.memory_reserved(self.device) if cuda else 0) - 768 * 2**20
            plan = PassPlan(allow, cfg.train.micro_batch_tokens
                            or auto_token_budget(self.model.config, self.precision.device, free, allow, cap))
        if plan.budget < longest and allow and not plan.checkpointing:
            plan = PassPlan(True, plan.budget)  # not even the longest row fits: checkpointing is the best hope
        self.log(f"passes of up to {max(plan.budget, longest):,} tokens, activation checkpointing "
                 f"{'on' if plan.checkpointing else 'off (the step fits without it)'}")
        return plan

    def autocast(self):
        return self.precision.autocast_context()

    # checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, reason: str) -> Path:
        import torch

        target = self.run.checkpoints_dir / f"step-{self.step:06d}"
        if self.dist.main:
            existing = self.run.latest_checkpoint()
            if not (existing and existing[0] == self.step):
                with S.atomic_dir(target) as tmp:
                    self.model.save_pretrained(tmp, safe_serialization=True)
                    state = {"optimizer": self.opt.state_dict(),
                             "scaler": self.scaler.state_dict() if self.scaler else None,
                             "torch_rng": torch.get_rng_state(),
                             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                             "python_rng": random.getstate()}
                    torch.save(state, tmp / "trainer_state.pt")
                    if self.ref_state is not None:
                        from safetensors.torch import save_file

                        save_file({k: v.contiguous() for k, v in self.ref_state.items()},
                                  str(tmp / "reference_adapter.safetensors"))
                    S.write_json(tmp / "state.json", self.counters())
                self.run.prune_checkpoints(self.cfg.train.keep_checkpoints)
            self.run.update_meta(**self.meta_progress(), last_checkpoint=self.step)
        self.barrier()
        self.emit(CheckpointSaved(self.step, str(target), reason))
        return target

    def counters(self) -> dict[str, Any]:
        return {"step": self.step, "samples_seen": self.samples_seen, "tokens_seen": self.tokens_seen,
                "budget": self.budget, "checkpointing": self.passes.checkpointing,
                "elapsed_s": self.elapsed(), "first_loss": self.first_loss,
                "last_loss": self.last_loss, "last_eval": self.last_eval, "energy_wh": self.energy_wh,
                "rng": "torch/python RNG saved; dropout is also reseeded from (seed, step, rank) each step"}

    def restore(self, path: Path) -> None:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(path / "adapter_model.safetensors")))
        if (path / "reference_adapter.safetensors").exists():
            self.ref_state = load_file(str(path / "reference_adapter.safetensors"), device=str(self.device))
        state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
        self.opt.load_state_dict(state["optimizer"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        random.setstate(state["python_rng"])
        c = S.read_json(path / "state.json")
        self.step = int(c["step"])
        self.samples_seen, self.tokens_seen = int(c["samples_seen"]), int(c["tokens_seen"])
        self.budget = int(c.get("budget") or self.budget)
        self.elapsed_before = float(c.get("elapsed_s") or 0.0)
        self.first_loss, self.last_loss, self.last_eval = c.get("first_loss"), c.get("last_loss"), c.get("last_eval")
        self.energy_wh = float(c.get("energy_wh") or 0.0)

    # one optimizer step ----------------------------------------------------------------------------
    def step_batches(self, idx: list[int], phase: str) -> list[list[int]]:
        factor = 2 if phase == "dpo" else 1  # chosen and rejected go through together
        return pack_micro_batches([self.train_set[i].length * factor for i in idx], self.budget)

    def sft_micro(self, exs: list[D.Example], norm: float):
        import torch

        seqs = [D.sft_tensors(e, self.cfg.data.train_on_prompt) for e in exs]
        ids, labels, att = D.pad_batch(seqs, self.tok.pad_token_id)
        with self.autocast():
            logp, _ = answer_logprobs(self.model, ids, labels, att, self.device)
            loss_sum = -logp.sum()
        self.backward(loss_sum / norm)
        return {"loss_sum": loss_sum.detach()}, int(att.sum())

    def reference_logps(self, keys: list[int], exs: list[D.Example]) -> tuple[list[float], list[float]]:
        """log p_ref(chosen), log p_ref(rejected): the base with the adapter disabled, no second copy.

        Cached per example: the reference never changes, so each pair's costs one forward per run."""
        import torch

        todo = [(k, e) for k, e in zip(keys, exs) if k not in self.ref_cache]
        if todo:
            was_training = self.model.training
            self.model.eval()  # no dropout in the reference
            with torch.no_grad(), self.reference_model(), self.autocast():
                pc, pr, _ = self.pair_logps([e for _, e in todo])
            self.model.train(was_training)
            for (k, _), a, b in zip(todo, pc.tolist(), pr.tolist()):
                self.ref_cache[k] = (a, b)
        return [self.ref_cache[k][0] for k in keys], [self.ref_cache[k][1] for k in keys]

    def reference_model(self):
        """The DPO reference on the same base: the base alone (adapter disabled) for plain DPO, or,
        in sft+dpo, the adapter as it was when SFT ended (DPO's reference should be the SFT model),
        swapped in from a saved copy of the LoRA weights: one extra LoRA, never a second base."""
        import contextlib

        if self.ref_state is None:
            return self.model.disable_adapter()

        @contextlib.contextmanager
        def swapped():
            from peft import get_peft_model_state_dict, set_peft_model_state_dict

            current = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}
            set_peft_model_state_dict(self.model, self.ref_state)
            try:
                yield
            finally:
                set_peft_model_state_dict(self.model, current)
        return swapped()

    def snapshot_reference(self) -> None:
        from peft import get_peft_model_state_dict

        self.ref_state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}
        self.ref_cache.clear()

    def pair_logps(self, exs: list[D.Example]):
        """Summed answer log-probs for chosen and rejected, one padded batch of 2n rows."""
        seqs = [D.sft_tensors(e, False, "chosen") for e in exs] + [D.sft_tensors(e, False, "rejected") for e in exs]
        ids, labels, att = D.pad_batch(seqs, self.tok.pad_token_id)
        logp, rows = answer_logprobs(self.model, ids, labels, att, self.device)
        sums = per_row_sum(logp, rows, len(seqs))
        return sums[: len(exs)], sums[len(exs):], int(att.sum())

    def dpo_micro(self, keys: list[int], exs: list[D.Example], norm: float):
        import torch

        rc, rr = self.reference_logps(keys, exs)
        with self.autocast():
            pc, pr, tokens = self.pair_logps(exs)
        ref_c = torch.tensor(rc, device=pc.device)
        ref_r = torch.tensor(rr, device=pc.device)
        loss, cr, rj = dpo_loss(pc.float(), pr.float(), ref_c, ref_r, self.cfg.train.dpo_beta)
        self.backward(loss.sum() / norm)
        return {"loss_sum": loss.detach().sum(), "chosen_sum": cr.sum(), "rejected_sum": rj.sum(),
                "correct": (cr > rj).float().sum()}, tokens

    def backward(self, loss) -> None:
        # DDP-style averaging happens once per step in all_reduce_grads, so each backward here is local.
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def run_step(self, phase: str, idx: list[int], global_idx: list[int]) -> tuple[dict, int]:
        """Forward/backward every micro-batch of the step; returns summed stats and tokens seen."""
        if phase == "dpo":
            norm = float(len(global_idx))
        else:
            norm = float(sum(len(self.train_set[i].chosen_ids)
                             + (len(self.train_set[i].prompt_ids) if self.cfg.data.train_on_prompt else 0)
                             for i in global_idx))
        totals: dict[str, Any] = {}
        tokens = 0
        for mb in self.step_batches(idx, phase):
            keys = [idx[j] for j in mb]
            exs = [self.train_set[k] for k in keys]
            stats, n = self.dpo_micro(keys, exs, norm) if phase == "dpo" else self.sft_micro(exs, norm)
            tokens += n
            for k, v in stats.items():
                totals[k] = totals[k] + v if k in totals else v
        return {k: v / norm for k, v in totals.items()} | {"_norm": norm}, tokens

    def all_reduce_grads(self) -> None:
        """Average LoRA gradients over processes: one flat all-reduce per step. (DDP would sync at
        every micro-batch's backward; our micro-batch count varies per process and per step.)"""
        if self.dist.world == 1:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(self.params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p)
            offset += n

    def sum_across(self, values: list[float]) -> list[float]:
        if self.dist.world == 1:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def flags(self) -> tuple[bool, bool]:
        """Stop/pause as seen by every process (Ctrl+C reaches only some of them)."""
        stop, pause = self.stop.is_set(), self.pause.is_set()
        if self.dist.world == 1:
            return stop, pause
        s, p = self.sum_across([float(stop), float(pause)])
        return s > 0, p > 0

    def optimizer_step(self, lr: float):
        import torch

        for g in self.opt.param_groups:
            g["lr"] = lr
        self.all_reduce_grads()
        if self.scaler:
            self.scaler.unscale_(self.opt)
        max_norm = self.cfg.train.max_grad_norm or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return norm

    def train_one(self, step: int) -> dict[str, float]:
        import torch

        phase = phase_of(self.cfg, step)
        if phase == "dpo" and self.cfg.train.method == "sft+dpo" and self.ref_state is None:
            self.snapshot_reference()  # SFT just ended: that model is DPO's reference
        global_idx = D.step_indices(step, self.per_step, self.lengths, self.cfg.train.seed, self.order_cache)
        idx = global_idx[self.dist.rank::self.dist.world]
        torch.manual_seed(self.cfg.train.seed * 1_000_003 + step * 101 + self.dist.rank)  # dropout
        while True:
            try:
                stats, tokens = self.run_step(phase, idx, global_idx)
                break
            except torch.OutOfMemoryError:
                self.recover_oom(step, idx, phase)
        norm = self.optimizer_step(lr_at(self.cfg, step))
        # The one host sync of the step: everything below is for logging.
        local = [float(stats.get("loss_sum", 0.0)), float(tokens)]  # a rank may get no sample this step
        extra = [float(stats.get(k, 0.0)) for k in ("chosen_sum", "rejected_sum", "correct")]
        summed = self.sum_across(local + extra)
        loss, tokens_all = summed[0], int(summed[1])
        metrics = {"grad_norm": float(norm)}
        if phase == "dpo":
            metrics |= {"reward_chosen": summed[2], "reward_rejected": summed[3],
                        "reward_margin": summed[2] - summed[3], "pref_accuracy": summed[4]}
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at step {step + 1}; lower train.learning_rate "
                                "(the last checkpoint is kept, resume from it with a lower rate)")
        self.samples_seen += len(global_idx)
        self.tokens_seen += tokens_all
        return {"loss": loss, "tokens": tokens_all, "phase": phase, **metrics}

    def recover_oom(self, step: int, idx: list[int], phase: str) -> None:
        """Out of memory: drop this step's partial gradients, halve the token budget, try again."""
        import torch

        self.opt.zero_grad(set_to_none=True)
        gc.collect()
        if self.precision.device == "cuda":
            torch.cuda.empty_cache()
        factor = 2 if phase == "dpo" else 1
        longest = max(self.train_set[i].length * factor for i in idx)
        new = self.budget // 2
        if self.halvings >= MAX_BUDGET_HALVINGS or new < longest:
            raise TrainingError(
                f"out of GPU memory at step {step + 1} even with {self.budget} tokens per pass; lower "
                "data.max_length, turn on model.gradient_checkpointing, or close other programs using the GPU "
                "(the last checkpoint is kept)")
        self.halvings += 1
        old, self.budget = self.budget, new
        self.emit(BatchReduced(step + 1, old, new, f"out of memory: micro-batch budget {old} -> {new} tokens, "
                                                   "more accumulation keeps the same effective batch"))

    # evaluation --------------------------------------------------------------------------------------
    def evaluate(self) -> tuple[float, dict[str, float], tuple[tuple[str, str], ...]]:
        import torch

        exs = self.eval_set[: self.cfg.train.eval_max_rows]
        if not exs:
            return float("nan"), {}, ()
        was_training = self.model.training
        self.model.eval()
        metrics: dict[str, float] = {}
        with torch.no_grad(), self.autocast():
            total, count = 0.0, 0
            for mb in pack_micro_batches([e.length for e in exs], self.budget):
                batch = [exs[j] for j in mb]
                ids, labels, att = D.pad_batch([D.sft_tensors(e, False) for e in batch], self.tok.pad_token_id)
                logp, _ = answer_logprobs(self.model, ids, labels, att, self.device)
                total += float(-logp.sum())
                count += int(logp.numel())
            eval_loss = total / max(1, count)
            pairs = [e for e in exs if e.rejected_ids is not None]
            if pairs:
                metrics = self.preference_metrics(pairs)
        samples = self.sample_answers() if self.dist.main else ()
        self.model.train(was_training)
        return eval_loss, metrics, samples

    def preference_metrics(self, pairs: list[D.Example]) -> dict[str, float]:
        """Share of held-out pairs where the model gives chosen the higher mean log-prob per token."""
        wins, margin = 0, 0.0
        for mb in pack_micro_batches([2 * e.length for e in pairs], self.budget):
            batch = [pairs[j] for j in mb]
            pc, pr, _ = self.pair_logps(batch)
            for e, a, b in zip(batch, pc.tolist(), pr.tolist()):
                d = a / len(e.chosen_ids) - b / len(e.rejected_ids or (1,))
                wins += d > 0
                margin += d
        return {"eval_pref_accuracy": wins / len(pairs), "eval_pref_margin": margin / len(pairs)}

    def sample_answers(self) -> tuple[tuple[str, str], ...]:
        """Greedy answers to a few fixed held-out prompts, to watch the style change while training."""
        import torch

        n = self.cfg.train.sample_prompts
        prompts = list(dict.fromkeys(e.prompt for e in self.eval_set))[:n]
        out = []
        max_new = min(self.cfg.generate.max_new_tokens, 96)
        for prompt in prompts:
            text = D.format_prompt(prompt, self.cfg.data.template, self.tok)
            enc = self.tok(text, return_tensors="pt", add_special_tokens=False).to(self.device)
            with torch.no_grad(), self.autocast():
                ids = self.model.generate(**enc, max_new_tokens=max_new, do_sample=False, use_cache=True,
                                          pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
            answer = self.tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.append((prompt, answer.split(D.INSTRUCT_END)[0].strip()))
        return tuple(out)

    # the loop ------------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t0)

    def meta_progress(self) -> dict[str, Any]:
        return {"steps": self.step, "samples_seen": self.samples_seen, "tokens_seen": self.tokens_seen,
                "first_loss": self.first_loss, "final_loss": self.last_loss, "final_eval_loss": self.last_eval,
                "eval_metrics": self.last_eval_metrics, "duration_s": round(self.elapsed(), 2),
                "tokens_per_s": round(self.tokens_seen / max(1e-9, self.elapsed()), 1),
                "peak_memory_bytes": peak_memory_bytes(self.precision.device), "energy_wh": round(self.energy_wh, 4),
                "energy_cost": round(self.energy_wh / 1000 * self.cfg.train.price_per_kwh, 4)}

    def measure_power(self, dt: float) -> None:
        if self.power is None:
            return
        try:
            watts = self.power()
        except Exception:  # a failing sensor must never stop training
            watts = None
        if watts:
            self.energy_wh += watts * dt / 3600

    def do_eval(self) -> None:
        eval_loss, metrics, samples = self.evaluate()
        if math.isnan(eval_loss):
            return
        self.last_eval, self.last_eval_metrics = eval_loss, metrics
        if self.dist.main:
            self.run.append_metric({"step": self.step, "kind": "eval", "eval_loss": eval_loss, **metrics})
        self.emit(Eval(self.step, eval_loss, metrics, samples))

    def loop(self) -> str:
        """Train until max_steps, a stop or a pause. Returns finished | stopped | paused."""
        cfg = self.cfg
        total = cfg.train.max_steps
        self.model.train()
        window: list[tuple[float, int]] = []
        while self.step < total:
            t_step = time.perf_counter()
            out = self.train_one(self.step)
            self.step += 1
            dt = time.perf_counter() - t_step
            self.measure_power(dt)
            window = (window + [(dt, out["tokens"])])[-20:]
            tps = sum(n for _, n in window) / max(1e-9, sum(t for t, _ in window))
            eta = (total - self.step) * (sum(t for t, _ in window) / len(window))
            self.first_loss = out["loss"] if self.first_loss is None else self.first_loss
            self.last_loss = out["loss"]
            mem_a, mem_r = self.device_memory()
            metrics = {k: v for k, v in out.items() if k not in ("loss", "tokens", "phase")}
            metrics["energy_wh"] = self.energy_wh
            if self.dist.main:
                self.run.append_metric({"step": self.step, "kind": "train", "phase": out["phase"],
                                        "loss": out["loss"], "lr": lr_at(cfg, self.step - 1), "tokens": out["tokens"],
                                        **metrics})
            self.emit(Step(self.step, total, out["loss"], lr_at(cfg, self.step - 1), metrics.pop("grad_norm"),
                           tps, self.samples_seen, self.tokens_seen, self.elapsed(), eta, out["phase"],
                           mem_a, mem_r, metrics))
            if cfg.train.eval_every and self.step % cfg.train.eval_every == 0 and self.step < total:
                self.do_eval()
            stop, pause = self.flags()
            if stop or pause:
                path = self.save_checkpoint("pause" if pause else "stop")
                self.emit(Stopped(self.run.run_id, self.step, str(path), paused=pause))
                return "paused" if pause else "stopped"
            if cfg.train.save_every and self.step % cfg.train.save_every == 0 and self.step < total:
                self.save_checkpoint("periodic")
        self.do_eval()
        self.save_checkpoint("final")
        return "finished"

    def device_memory(self) -> tuple[int, int]:
        import torch

        if self.precision.device == "cuda":
            return int(torch.cuda.memory_allocated(self.device)), int(torch.cuda.memory_reserved(self.device))
        return 0, 0

    def save_adapter(self) -> Path:
        if self.dist.main:
            with S.atomic_dir(self.run.adapter_dir) as tmp:
                self.model.save_pretrained(tmp, safe_serialization=True)
                self.tok.save_pretrained(tmp)
                (tmp / "base_model.txt").write_text(self.cfg.model.name + "\n", encoding="utf-8")
        self.barrier()
        return self.run.adapter_dir

    def free(self) -> None:
        """Let go of the model so the GPU memory is really free (pause = play a game meanwhile)."""
        import torch

        for name in ("model", "opt", "params", "scaler"):
            if hasattr(self, name):
                delattr(self, name)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_training(cfg: Config | None, emit: Emit = ignore, stop: threading.Event | None = None, *,
                 resume: str | None = None, pause: threading.Event | None = None, run_name: str | None = None,
                 power: Callable[[], float | None] | None = None) -> TrainResult:
    """Train per `cfg` (or resume run `resume`, optionally with a changed cfg such as more steps).

    Emits RunStarted, DataReport, Step, Eval, CheckpointSaved, then Finished or Stopped; on an error
    emits Failed and raises (InputError for the user's input, TrainingError otherwise).
    """
    stop = stop or threading.Event()
    pause = pause or threading.Event()
    dist = init_distributed()
    run = None
    trainer = None
    try:
        run, cfg, checkpoint = _open_run(cfg, resume, run_name, dist)
        trainer = _Trainer(cfg, emit, stop, pause, run, dist, power)
        if dist.main:
            run.acquire()
            run.update_meta(status="running", base_model=cfg.model.name, method=cfg.train.method,
                            data_source=cfg.data.source, versions=_versions(), max_steps=cfg.train.max_steps)
        trainer.setup()
        if checkpoint is not None:
            trainer.restore(checkpoint[1])
            if dist.main:
                run.truncate_metrics(trainer.step)
            trainer.log(f"resumed {run.run_id} at step {trainer.step}")
        elif resume:
            if dist.main:
                run.truncate_metrics(0)
            trainer.log(f"{run.run_id} has no complete checkpoint yet: training it again from step 0")
        trainer.t0 = time.perf_counter()
        if dist.main:
            run.update_meta(data=trainer.counts.to_dict(), trainable_params=trainer.trainable,
                            total_params=trainer.total, device=_device_name(trainer.precision),
                            compute_dtype=trainer.precision.compute)
        trainer.emit(RunStarted(run.run_id, str(run.run_dir), cfg.train.method, cfg.to_dict(), trainer.trainable,
                                trainer.total, cfg.train.max_steps, trainer.step, _device_name(trainer.precision),
                                trainer.counts.to_dict()))
        status = trainer.loop()
        adapter = ""
        if status == "finished":
            adapter = str(trainer.save_adapter())
        summary = trainer.meta_progress() | {"status": status, "run_id": run.run_id, "adapter_dir": adapter}
        if dist.main:
            run.update_meta(**summary, finished=time.time())
        if status == "finished":
            trainer.emit(Finished(run.run_id, adapter, summary))
        return TrainResult(run.run_id, str(run.run_dir), status, adapter, summary)
    except HumanlikeError as exc:
        if isinstance(exc, InputError) and run is not None and not resume and not (trainer and trainer.step):
            # Bad config, data or model on a new run: it never trained, so leave no run folder behind.
            if _discard_new_run(run, dist):
                run = None
        _fail(emit if dist.main else ignore, run, str(exc), "input" if isinstance(exc, InputError) else "error")
        raise
    except Exception as exc:
        import torch

        kind = "oom" if isinstance(exc, torch.OutOfMemoryError) else "error"
        reason = _failure_message(exc)
        _fail(emit if dist.main else ignore, run, reason, kind)
        raise TrainingError(reason) from exc
    finally:
        if trainer is not None:
            trainer.free()
        if run is not None and dist.main:
            run.release()


def _gpu_power_reader(index: int) -> Callable[[], float | None] | None:
    """Watts drawn by our GPU, from NVML, for the energy figure kept in the run's metadata."""
    from humanlike_tui.engine.hardware import GpuSampler

    sampler = GpuSampler(indices=[index])
    if not sampler.available:
        return None

    def read() -> float | None:
        samples = sampler.sample()
        return samples[0].power_w if samples else None
    return read


def _discard_new_run(run: S.Run, dist: Dist) -> bool:
    """Remove a run folder made by this call (the other ranks only forget it). False: kept."""
    if not dist.main:
        return True
    if run.checkpoints():
        return False
    import shutil

    trash = run.run_dir.with_name(f".tmp-discard-{run.run_id}")
    try:
        os.replace(run.run_dir, trash)  # out of the list at once, even if the delete is cut short
    except OSError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _failure_message(exc: Exception) -> str:
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        return ("the disk is full; free some space and resume the run (the last complete checkpoint is kept, "
                "the one being written was discarded)")
    return f"training failed: {type(exc).__name__}: {exc}"


def _open_run(cfg: Config | None, resume: str | None, run_name: str | None, dist: Dist):
    if resume:
        run = S.get_run(resume)
        saved = run.config()
        cfg = cfg or saved
        check_resume_compatible(saved, cfg)
        run.clean_partial() if dist.main else None
        checkpoint = run.latest_checkpoint()  # None: killed before its first checkpoint, starts again
        if dist.main and cfg != saved:
            from humanlike_tui.config import save_config

            save_config(cfg, run.run_dir / "config.toml", header=f"config of run {run.run_id} (changed on resume)")
        return run, cfg, checkpoint
    if cfg is None:
        raise ConfigError("config: give a config or a run to resume")
    if dist.world > 1:
        run = _shared_run(cfg, run_name, dist)
    else:
        run = S.create_run(cfg, run_name)
    return run, cfg, None


def _shared_run(cfg: Config, run_name: str | None, dist: Dist) -> S.Run:
    """Data-parallel: the main process creates the run folder, the others learn its name."""
    import torch.distributed as dist_mod

    box = [S.create_run(cfg, run_name).run_id if dist.main else None]
    dist_mod.broadcast_object_list(box, src=0)
    return S.Run(S.runs_dir() / box[0])


def _fail(emit: Emit, run: S.Run | None, reason: str, kind: str) -> None:
    if run is not None:
        try:
            run.update_meta(status="failed", error=reason, failed=time.time())
        except OSError:
            pass  # the disk may be the problem; the event still tells the user
    emit(Failed(reason, run.run_id if run else "", kind))


def _device_name(precision) -> str:
    import torch

    if precision.device == "cuda":
        return f"{torch.cuda.get_device_name()} ({precision.compute})"
    return f"CPU ({precision.compute})"
