"""Merging a run's LoRA into a plain (unquantized) base model, in float32 on the CPU, two ways:

- `trained` (the default): into the base exactly as training and `chat` load it. With quant.mode
  nf4/fp4/int8 that is the 4-bit (or 8-bit) base, dequantized: every quantized linear layer's weight
  becomes the float32 values the quantized layer multiplies with (bitsandbytes' own dequantization),
  so the merged model computes what `chat` showed, up to float rounding.
- `original`: into the full-precision weights of the checkpoint. The LoRA was trained to correct the
  quantized base, so this model differs from what `chat` showed by the quantization error (small on
  a real model, large on the random tiny one), while keeping the original weights' precision.

Without quantization (quant.mode = "none") the two are the same model.

The quantized base is loaded as chat loads it on this machine (`resolve_precision`: a GPU if there
is one, in its compute dtype), because bitsandbytes quantizes the weights as they are loaded."""

from __future__ import annotations

from typing import Callable

from humanlike_tui.config import Config

MERGE_INTO = ("trained", "original")


def merged_model(cfg: Config, adapter_dir, merge_into: str = "trained", log: Callable[[str], None] = lambda m: None):
    """(float32 CPU model with the LoRA merged in, tokenizer)."""
    from humanlike_tui.engine import models as M

    if merge_into not in MERGE_INTO:
        raise ValueError(f"merge_into must be one of {MERGE_INTO}, got {merge_into!r}")
    if merge_into == "original" or cfg.quant.mode == "none":
        full = cfg.replace(**{"quant.mode": "none", "quant.double_quant": False, "quant.compute_dtype": "fp32"})
        base, tok = M.load_base_model(full, M.Precision("cpu", "fp32", False), log=log)
    else:
        base, tok = dequantized_base(cfg, log)
    log(f"merging the adapter into {cfg.model.name} ({'as trained' if merge_into == 'trained' else 'original weights'})")
    model = M.load_adapter(base, adapter_dir, cfg.model.name).merge_and_unload()
    return model, tok


def dequantized_base(cfg: Config, log: Callable[[str], None] = lambda m: None):
    """The quantized base as chat loads it, as a plain float32 CPU model (every quantized weight
    dequantized by bitsandbytes), with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from humanlike_tui.engine import models as M

    precision = M.resolve_precision(cfg)
    quantized, tok = M.load_base_model(cfg, precision, log=log)
    log(f"dequantizing the {cfg.quant.mode} base to float32")
    state = dequantized_state(quantized)
    config = quantized.config.__class__.from_dict(quantized.config.to_dict())
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.use_cache = False
    buffers = {name: b.detach().to("cpu") for name, b in quantized.named_buffers()}
    generation_config = quantized.generation_config
    del quantized
    _free_cuda()
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - older transformers
        import contextlib

        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(state, strict=False)
    tied = [k for k in missing if k.endswith("lm_head.weight") and getattr(config, "tie_word_embeddings", False)]
    if unexpected or set(missing) - set(tied):
        raise RuntimeError(f"dequantized weights do not fit {type(plain).__name__}: missing "
                           f"{sorted(set(missing) - set(tied))[:5]}, unexpected {sorted(unexpected)[:5]}")
    for name, value in buffers.items():  # non-persistent buffers (rotary frequencies) as the quantized model had
        owner, _, attr = name.rpartition(".")
        module = plain.get_submodule(owner) if owner else plain
        if attr in module._buffers and module._buffers[attr] is not None:
            module._buffers[attr] = value.to(module._buffers[attr].dtype)
    plain.tie_weights()
    plain.generation_config = generation_config
    for p in plain.parameters():
        p.requires_grad_(False)
    return plain.eval(), tok


def dequantized_state(model) -> dict:
    """A plain state dict of `model` in float32 on the CPU: bitsandbytes 4-bit and 8-bit linear weights
    dequantized (what the layer multiplies with), every other parameter copied."""
    import torch
    from peft.utils.integrations import dequantize_module_weight

    state: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        quantized = type(getattr(module, "weight", None)).__name__ in ("Params4bit", "Int8Params")
        for pname, p in module.named_parameters(recurse=False):
            if pname == "weight" and quantized:
                value = dequantize_module_weight(module)
            else:
                value = p
            state[prefix + pname] = value.detach().to("cpu", torch.float32).clone()
    return state


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
