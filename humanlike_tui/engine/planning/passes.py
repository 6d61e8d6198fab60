"""How each training step runs on this device: activation checkpointing on or off, and the token
budget of each pass, from the estimate against the memory a step may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


VRAM_PLAN_CAP = int(7.5 * 2**30)  # never plan past this, so the defaults suit an 8 GB card


CPU_RAM_SHARE = 0.5  # on the CPU plan within half the available RAM: the rest is for the OS and other programs


def vram_plan_limit(available_bytes: int, limit_gib: float) -> int:
    """Bytes a step may be planned for: the user's train.vram_limit_gib, else VRAM_PLAN_CAP; never more
    than the card has available (free plus what torch holds already)."""
    cap = int(limit_gib * 2**30) if limit_gib > 0 else VRAM_PLAN_CAP
    return max(0, min(available_bytes, cap))


def auto_token_budget(model_config, device: str, free_bytes: int, ckpt: bool, cap: int) -> int:
    """Fallback when planning.estimate cannot model the architecture: a rough per-token activation model.

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
    """Checkpointing and the pass budget from planning.estimate's model of a step's peak (the same model
    `humanlike-tui hw` shows), with memory.FIT_MARGIN of headroom.

    Checkpointing recomputes every layer's forward in backward (about a third more work per pass), so
    it is used only when the step would need more passes without it. `dynamic_only`: compare only
    what grows with the tokens (on the CPU the weights are already counted out of the free RAM).
    """
    import dataclasses as dc

    from humanlike_tui.engine import planning as MEM

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


CPU_CHECKPOINT_ABOVE = 512 * 2**20  # activations of one pass above which the CPU checkpoints (see plan_for_device)


def cpu_activations_large(shapes, settings, tokens: int) -> bool:
    """Whether one pass of `tokens` would keep more than CPU_CHECKPOINT_ABOVE of activations without checkpointing."""
    import dataclasses as dc

    from humanlike_tui.engine.planning.estimate import estimate_items

    items = estimate_items(shapes, dc.replace(settings, tokens=tokens, checkpointing=False))
    return sum(it.bytes for it in items if it.key == "activations") > CPU_CHECKPOINT_ABOVE


def fits_on_cpu(shapes, settings, tokens: int, limit_bytes: int) -> bool:
    """Whether a checkpointed pass of `tokens` fits in `limit_bytes` (what grows with the tokens only)."""
    import dataclasses as dc

    from humanlike_tui.engine.planning.estimate import FIT_MARGIN, estimate_items

    items = estimate_items(shapes, dc.replace(settings, tokens=tokens, checkpointing=True))
    dynamic = ("activations", "recompute", "backward", "logits", "final", "slack")
    return sum(it.bytes for it in items if it.key in dynamic) * (1 + FIT_MARGIN) <= limit_bytes


def device_limit(cfg, precision, device, log: Callable[[str], None]) -> int:
    """Bytes a training step may use on this device now: on a GPU what is free plus what torch holds (the
    weights), capped by train.vram_limit_gib; on the CPU a share of the available RAM."""
    if precision.device == "cuda":
        import torch

        free_now, _ = torch.cuda.mem_get_info(device)
        limit = vram_plan_limit(free_now + torch.cuda.memory_reserved(device), cfg.train.vram_limit_gib)
        log(f"planning each step for up to {limit / 2**30:.2f} GiB of GPU memory"
            + ("" if cfg.train.vram_limit_gib else " (train.vram_limit_gib = 0: what is free, at most "
               f"{VRAM_PLAN_CAP / 2**30:g} GiB)"))
        return limit
    from humanlike_tui.engine.hardware.probe import ram_bytes

    return int((ram_bytes()[1] or 0) * CPU_RAM_SHARE)


def plan_for_device(cfg, model_config, precision, device, lengths: list[int], dpo: bool,
                    log: Callable[[str, str], None]) -> PassPlan:
    """Checkpointing on or off, and tokens per pass, for the memory this device has free now."""
    import dataclasses as dc

    from humanlike_tui.engine.planning.estimate import settings_for
    from humanlike_tui.engine.planning.shapes import shapes_from_hf_config

    factor = 2 if dpo else 1  # DPO runs chosen and rejected together
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    longest = max(lengths) * factor
    cap = per_step * cfg.data.max_length * factor
    step_tokens = per_step * longest  # the longest possible step, padded
    allow = cfg.model.gradient_checkpointing
    cuda = precision.device == "cuda"
    limit = device_limit(cfg, precision, device, lambda m: log(m, "info"))
    try:
        shapes = shapes_from_hf_config(model_config, cfg.model.name, "loaded model")
        settings = dc.replace(settings_for(cfg, shapes, precision.device, precision.compute == "bf16"),
                              seq_len=longest)
        plan = plan_passes(shapes, settings, limit, step_tokens, cap, allow, dynamic_only=not cuda,
                           fixed_budget=cfg.train.micro_batch_tokens)
        if not cuda and allow and not plan.checkpointing and cpu_activations_large(shapes, settings, plan.budget):
            # On a CPU, recomputing a layer is cheaper than writing and reading back GBs of fresh activations:
            # measured on SmolLM2-135M (2 cores, ~1.9 GB of activations per pass), checkpointed passes ran
            # 1.45-2.5x faster at a third of the memory. Small activations (the tiny model) stay faster
            # without it (+29-44% in docs/benchmarks.md), so only large ones switch.
            plan = PassPlan(True, cfg.train.micro_batch_tokens or largest_tokens(
                lambda t: fits_on_cpu(shapes, settings, t, limit), cap))
    except Exception as exc:  # noqa: BLE001 - an architecture the memory model cannot build
        log(f"no memory plan for this model ({type(exc).__name__}); using a rough token budget", "warning")
        held = 0
        if cuda:
            import torch

            held = torch.cuda.memory_reserved(device)
        plan = PassPlan(allow, cfg.train.micro_batch_tokens
                        or auto_token_budget(model_config, precision.device, limit - held - 768 * 2**20, allow, cap))
    if plan.budget < longest and allow and not plan.checkpointing:
        plan = PassPlan(True, plan.budget)  # not even the longest row fits: checkpointing is the best hope
    log(f"passes of up to {max(plan.budget, longest):,} tokens, activation checkpointing "
        f"{'on' if plan.checkpointing else 'off (the step fits without it)'}", "info")
    return plan
