"""Test helpers that look inside the process: how many base models are alive and what they weigh."""

from __future__ import annotations

import gc
from typing import Any

from humanlike_tui.engine.inference.generator import model_memory


def live_base_models() -> list:
    """Every transformers model alive in this process, found by the garbage collector (so a copy held
    anywhere counts), outermost only: a PhiForCausalLM holds a PhiModel, which is one model, not two."""
    import sys

    if "transformers" not in sys.modules:
        return []
    from transformers import PreTrainedModel

    gc.collect()
    found = []
    for obj in gc.get_objects():
        try:
            if isinstance(obj, PreTrainedModel):
                found.append(obj)
        except Exception:  # objects with odd __class__ (proxies) are not models
            continue
    inner = {id(sub) for m in found for sub in m.modules() if sub is not m and isinstance(sub, PreTrainedModel)}
    return [m for m in found if id(m) not in inner]


def memory_report() -> dict[str, Any]:
    """How many base models are loaded in this process and what they weigh.

    {"base_models": N, "parameters": ..., "bytes": ..., "lora_parameters": ..., "lora_bytes": ...,
     "models": [{"class": "PhiForCausalLM", "name_or_path": ..., "parameters": ..., "bytes": ...}, ...],
     "cuda_allocated": bytes or None}
    A Generator shows base_models == 1: the base answer reuses the adapter's base with the LoRA off."""
    models = live_base_models()
    per_model = []
    totals = {"parameters": 0, "bytes": 0, "lora_parameters": 0, "lora_bytes": 0}
    for m in models:
        mem = model_memory(m)
        for k in totals:
            totals[k] += mem[k]
        per_model.append({"class": type(m).__name__, "name_or_path": str(getattr(m, "name_or_path", "")), **mem})
    cuda = None
    try:
        import torch

        if torch.cuda.is_available():
            cuda = int(torch.cuda.memory_allocated())
    except ImportError:
        pass
    return {"base_models": len(models), **totals, "models": per_model, "cuda_allocated": cuda}
