"""Which dtype and device a run computes in, and whether forward passes run under autocast. No torch
import at module level: the memory planner and the UI read the same rule."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from humanlike_tui.config import Config


def uses_autocast(device: str, compute: str, wanted: bool) -> bool:
    """Whether the engine runs its forward passes under torch.autocast: on CUDA with bf16 or fp16,
    unless quant.autocast is off. Off applies to bf16 only: without autocast bitsandbytes and phi keep
    every activation in the weights' dtype, which overflows in fp16."""
    return device == "cuda" and compute != "fp32" and (wanted or compute == "fp16")


def resolve_compute(want: str, device: str, bf16: bool) -> str:
    """Mirror of models.precision.resolve_precision without importing torch."""
    if device == "cpu":
        return "fp32" if want in ("auto", "fp16") else want
    if want == "auto":
        return "bf16" if bf16 else "fp16"
    return want


@dataclass(frozen=True)
class Precision:
    device: str  # cuda | cpu
    compute: str  # bf16 | fp16 | fp32
    needs_scaler: bool  # fp16 needs loss scaling
    autocast: bool = False  # forward passes under torch.autocast (CUDA with bf16/fp16 unless turned off)

    @property
    def torch_dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.compute]

    def autocast_context(self):
        """torch.autocast for the forward passes, or a no-op (CPU, fp32, or quant.autocast = false)."""

        import torch

        return torch.autocast("cuda", dtype=self.torch_dtype) if self.autocast else contextlib.nullcontext()


def resolve_precision(cfg: Config, device: str | None = None) -> Precision:
    """`auto` = bf16 where the GPU supports it, fp16 on older GPUs (Turing), fp32 on the CPU."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    want = cfg.quant.compute_dtype
    if device == "cpu":
        compute = "fp32" if want in ("auto", "fp16") else want  # fp16 matmuls on CPU are slow and lossy
    elif want == "auto":
        compute = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        compute = want

    return Precision(device, compute, device == "cuda" and compute == "fp16",
                     uses_autocast(device, compute, cfg.quant.autocast))
