"""The plan people see: the estimate against the memory that is free, a verdict, notes, and what to
change when it does not fit (each suggestion checked against the same estimate)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable
from humanlike_tui.config import Config
from humanlike_tui.engine.planning.estimate import (CHECKPOINTING_SLOWDOWN, CUDA_CONTEXT_BYTES, FIT_MARGIN, PlanItem,
                                                    Settings, estimate_items, lora_params, lora_targets, peak_of,
                                                    settings_for)
from humanlike_tui.engine.planning.shapes import GiB, ModelShapes, load_model_shapes
from humanlike_tui.formatting import gib


@dataclass(frozen=True)
class Suggestion:
    """A concrete change (config key paths -> values) and the peak it would give."""

    changes: dict[str, Any]
    text: str
    peak_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    shapes_source: str
    device: str
    compute_dtype: str
    quant: str
    gradient_checkpointing: bool
    tokens: int  # per forward pass
    seq_len: int
    total_params: int
    quantized_params: int
    trainable_params: int
    items: tuple[PlanItem, ...]  # sum(items) == peak_bytes
    peak_torch_bytes: int  # comparable with torch.cuda.max_memory_reserved() (no CUDA context)
    peak_bytes: int  # what the process needs from the device (with the CUDA context), or RAM on the CPU
    available_bytes: int | None
    available_source: str
    verdict: str  # fits | tight | does not fit | unknown
    suggestions: tuple[Suggestion, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def headroom_bytes(self) -> int | None:
        return None if self.available_bytes is None else self.available_bytes - self.peak_bytes

    def item(self, key: str) -> int:
        return next((it.bytes for it in self.items if it.key == key), 0)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["items"] = [it.to_dict() for it in self.items]
        d["suggestions"] = [sg.to_dict() for sg in self.suggestions]
        d["notes"] = list(self.notes)
        d["headroom_bytes"] = self.headroom_bytes
        return d


def verdict_for(peak: int, available: int | None) -> str:
    if available is None:
        return "unknown"
    if peak * (1 + FIT_MARGIN) <= available:
        return "fits"
    if peak <= available:
        return "tight"
    return "does not fit"


def plan_memory(cfg: Config, *, device: str = "cuda", available_bytes: int | None = None, bf16: bool = True,
                available_source: str = "", shapes: ModelShapes | None = None) -> MemoryPlan:
    """The memory plan for `cfg` on `device` (cuda or cpu).

    available_bytes: free device memory (the driver's view, before our process starts), or free RAM on
    the CPU; None gives verdict "unknown" and no suggestions. bf16: whether the GPU supports it (decides
    quant.compute_dtype = auto). shapes: pass to avoid re-reading the model's config.
    """
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    shapes = shapes or load_model_shapes(cfg)
    s = settings_for(cfg, shapes, device, bf16)
    items = estimate_items(shapes, s)
    peak = sum(it.bytes for it in items)
    verdict = verdict_for(peak, available_bytes)
    _, missing = lora_targets(cfg, shapes)
    notes = _notes(cfg, shapes, s, missing)
    suggestions = (tuple(_suggestions(cfg, shapes, s, peak, available_bytes, verdict))
                   if available_bytes is not None else ())
    context = next((it.bytes for it in items if it.key in ("cuda_context", "runtime")), 0)
    return MemoryPlan(
        model=cfg.model.name, shapes_source=shapes.source, device=device, compute_dtype=s.compute,
        quant=s.quant, gradient_checkpointing=s.checkpointing, tokens=s.tokens, seq_len=s.seq_len,
        total_params=shapes.total_params, quantized_params=shapes.quantized_params if s.quant != "none" else 0,
        trainable_params=lora_params(shapes, s.lora_targets, s.lora_r),
        items=tuple(items), peak_torch_bytes=peak - context, peak_bytes=peak,
        available_bytes=available_bytes, available_source=available_source, verdict=verdict,
        suggestions=suggestions, notes=notes)


def plan_for_hardware(cfg: Config, report: Any, gpu_index: int = 0, vram_bytes: int | None = None,
                      shapes: ModelShapes | None = None) -> MemoryPlan:
    """Plan against what the hardware report found: GPU `gpu_index`'s free memory when torch can use
    CUDA, else the CPU and its available RAM. `vram_bytes` plans for a GPU of that size instead (e.g.
    "would this fit on my 8 GB card?" from a machine without one); bf16 is then assumed."""
    if vram_bytes is not None:
        return plan_memory(cfg, device="cuda", available_bytes=vram_bytes, bf16=True, shapes=shapes,
                           available_source=f"a GPU with {vram_bytes / GiB:.1f} GiB free (--vram)")
    if report.cuda_available:
        free = report.free_memory(gpu_index)
        name = next((g.name for g in report.gpus if g.index == gpu_index), f"GPU {gpu_index}")
        source = f"GPU {gpu_index} ({name}) free memory, driver's view"
        if free is None:  # NVML could not tell (no NVML in some containers): ask CUDA itself
            free, source = _cuda_free(gpu_index), f"GPU {gpu_index} free memory, CUDA's view"
        return plan_memory(cfg, device="cuda", available_bytes=free, bf16=report.bf16, shapes=shapes,
                           available_source=source)
    return plan_memory(cfg, device="cpu", available_bytes=report.system.ram_available, shapes=shapes,
                       available_source="no usable GPU: training runs on the CPU")


def _cuda_free(index: int) -> int | None:
    """Free bytes from the CUDA runtime. This creates our CUDA context, so its ~400 MB are already
    taken from what it reports; acceptable here because training would create it anyway."""
    try:
        import torch

        free, _total = torch.cuda.mem_get_info(index)
        return int(free) + CUDA_CONTEXT_BYTES
    except Exception:  # noqa: BLE001 - an index that does not exist, a driver error
        return None


def _notes(cfg: Config, shapes: ModelShapes, s: Settings, missing: tuple[str, ...]) -> tuple[str, ...]:
    if cfg.train.micro_batch_tokens:
        source = "train.micro_batch_tokens"
    elif s.device == "cpu":
        source = "train.batch_size x train.grad_accum x data.max_length: the CPU takes a whole step at once"
    else:
        source = "train.batch_size x data.max_length"
    notes = [f"Shapes from {shapes.source}; one forward pass = {s.tokens:,} tokens ({source}"
             f"{', x2 for chosen + rejected' if cfg.train.method != 'sft' else ''}), rows up to {s.seq_len} tokens."]
    if cfg.train.micro_batch_tokens == 0 and s.device == "cuda":
        limit = (f"train.vram_limit_gib = {cfg.train.vram_limit_gib:g} GiB" if cfg.train.vram_limit_gib
                 else "at most 7.5 GiB; raise train.vram_limit_gib on a bigger card")
        notes.append("train.micro_batch_tokens = 0: the engine sizes the forward pass to the free VRAM when it "
                     f"starts ({limit}); this plan assumes the whole batch in one pass (the worst case).")
    if missing:
        notes.append(f"lora.target_modules: {', '.join(missing)} not found in this model; not counted "
                     "(training would stop with an error).")
    if shapes.model_type != "phi":
        notes.append(f"Activation terms are checked for phi models; for {shapes.model_type or 'this model'} "
                     "they are an approximation.")
    if s.quant == "int8":
        notes.append("int8 (LLM.int8) saves the input of every quantized linear and is slower than nf4.")
    if s.device == "cpu":
        notes.append("CPU: compared with available RAM; the engine computes in fp32 on the CPU.")
    return tuple(notes)


def _fits(peak: int, available: int) -> bool:
    return peak * (1 + FIT_MARGIN) <= available


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """Largest x in [lo, hi] with ok(x), for ok monotone (true up to a point); None if ok(lo) fails."""
    if not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _suggestions(cfg: Config, shapes: ModelShapes, s: Settings, peak: int, available: int,
                 verdict: str) -> list[Suggestion]:
    """Fixes in the order people should try them: checkpointing, nf4, then fewer tokens per pass,
    then shorter rows. Each later fix builds on the earlier ones that were not enough on their own."""
    out: list[Suggestion] = []
    if verdict == "fits":
        if s.checkpointing and s.device == "cuda":
            alt = peak_of(shapes, dataclasses.replace(s, checkpointing=False))
            if _fits(alt, available):
                out.append(Suggestion({"model.gradient_checkpointing": False},
                                      f"Room to spare: model.gradient_checkpointing = false would also fit "
                                      f"({gib(alt)}) and train faster.", alt))
        return out
    base, base_changes = s, {}
    if not s.checkpointing:
        base = dataclasses.replace(s, checkpointing=True)
        base_changes = {"model.gradient_checkpointing": True}
        alt = peak_of(shapes, base)
        out.append(Suggestion(dict(base_changes), f"Turn on model.gradient_checkpointing: peak {gib(peak)} -> "
                                                  f"{gib(alt)} ({CHECKPOINTING_SLOWDOWN}).", alt))
        if _fits(alt, available):
            # Enough alone; fewer tokens per pass is the alternative that keeps the speed.
            out += _token_suggestions(cfg, shapes, s, available, {}, allow_shorter_rows=False)
            return out
    if s.quant in ("int8", "none"):
        changes = {**base_changes, "quant.mode": "nf4", "quant.double_quant": True}
        base = dataclasses.replace(base, quant="nf4", double_quant=True)
        alt = peak_of(shapes, base)
        also = " with checkpointing on" if base_changes else ""
        out.append(Suggestion(changes, f"Use quant.mode = 'nf4' instead of {s.quant!r}{also}: peak {gib(peak)} -> "
                                       f"{gib(alt)}.", alt))
        base_changes = changes
        if _fits(alt, available):
            return out
    out += _token_suggestions(cfg, shapes, base, available, base_changes, allow_shorter_rows=True)
    return out


def _token_suggestions(cfg: Config, shapes: ModelShapes, s: Settings, available: int, changes: dict[str, Any],
                       allow_shorter_rows: bool) -> list[Suggestion]:
    """Fewer tokens per forward pass (same maths: the engine accumulates), or else shorter rows;
    `changes` are earlier fixes these build on."""
    rows_factor = 1 if cfg.train.method == "sft" else 2
    one_row = s.seq_len * rows_factor
    first = "Together with the change above, " if changes else ""
    out: list[Suggestion] = []

    def fits_tokens(tokens: int) -> bool:
        return _fits(peak_of(shapes, dataclasses.replace(s, tokens=tokens)), available)

    best = _largest(one_row, max(one_row, s.tokens - 1), fits_tokens)
    if best is not None:
        rows = best // one_row
        if cfg.train.micro_batch_tokens == 0 and rows < cfg.train.batch_size:
            samples = cfg.train.batch_size * cfg.train.grad_accum
            accum = math.ceil(samples / rows)
            alt = peak_of(shapes, dataclasses.replace(s, tokens=rows * one_row))
            out.append(Suggestion({**changes, "train.batch_size": rows, "train.grad_accum": accum},
                                  f"{first}{'l' if first else 'L'}ower train.batch_size to {rows} and raise "
                                  f"train.grad_accum to {accum} (about the same samples per step): "
                                  f"peak -> {gib(alt)}.", alt))
        best = max(one_row, best // 64 * 64)  # a round number; still fits (peak grows with tokens)
        alt = peak_of(shapes, dataclasses.replace(s, tokens=best))
        out.append(Suggestion({**changes, "train.micro_batch_tokens": best},
                              f"{first}{'s' if first else 'S'}et train.micro_batch_tokens = {best} (each step is split "
                              f"into passes of at most that many tokens; the maths stays the same): "
                              f"peak -> {gib(alt)}.", alt))
        return out
    if not allow_shorter_rows:
        return out

    # Not even one row of data.max_length fits: shorten the rows.
    def fits_length(length: int) -> bool:
        return _fits(peak_of(shapes, dataclasses.replace(s, seq_len=length, tokens=length * rows_factor)), available)

    length = _largest(16, s.seq_len - 1, fits_length) if s.seq_len > 16 else None
    if length is not None:
        alt = peak_of(shapes, dataclasses.replace(s, seq_len=length, tokens=length * rows_factor))
        out.append(Suggestion({**changes, "data.max_length": length, "train.micro_batch_tokens": length * rows_factor},
                              f"{first}{'l' if first else 'L'}ower data.max_length to {length} (longer rows are "
                              f"dropped), one row per pass: peak -> {gib(alt)}.", alt))
    else:
        smallest = peak_of(shapes, dataclasses.replace(s, seq_len=16, tokens=16 * rows_factor))
        out.append(Suggestion({}, f"Even 16-token rows need {gib(smallest)}: this model does not fit here; "
                                  "choose a smaller model or a GPU with more memory.", smallest))
    return out
