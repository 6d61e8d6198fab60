"""LoRA on a loaded base: which layers, attaching a new adapter, loading a saved one (checked first)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from humanlike_tui.config import Config
from humanlike_tui.errors import ModelError
from humanlike_tui.engine.models.architectures import DEFAULT_TARGETS


def target_modules(cfg: Config, model) -> list[str]:
    if cfg.lora.target_modules:
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = [t for t in cfg.lora.target_modules if t not in names]
        if missing:
            raise ModelError(f"lora.target_modules: {', '.join(missing)} not found in {cfg.model.name}; "
                             f"linear layers there include: {', '.join(sorted(_linear_names(model))[:12])}")
        return list(cfg.lora.target_modules)
    arch = getattr(model.config, "model_type", "")
    if arch in DEFAULT_TARGETS:
        return list(DEFAULT_TARGETS[arch])
    return "all-linear"  # type: ignore[return-value]  # peft picks every linear layer but the head


def _linear_names(model) -> set[str]:
    import torch

    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) or "Linear" in type(m).__name__}


def attach_lora(cfg: Config, model, gradient_checkpointing: bool | None = None):
    """Wrap the frozen base in a peft LoRA model. LoRA weights stay fp32 (peft's autocast_adapter_dtype)."""
    from peft import LoraConfig, get_peft_model

    ckpt = cfg.model.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    if ckpt:
        # Non-reentrant checkpointing needs no input-grad hack and works with frozen embeddings.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=target_modules(cfg, model), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total), counting 4-bit packed weights at their real element count."""
    trainable, total = model.get_nb_trainable_parameters()
    return int(trainable), int(total)


def load_adapter(model, adapter_dir: str | os.PathLike, base_name: str):
    """Put a saved adapter on a loaded base model (safetensors only, checked against its base)."""
    from peft import PeftModel

    adir = Path(adapter_dir)
    check_adapter_dir(adir, base_name)
    try:
        return PeftModel.from_pretrained(model, str(adir), is_trainable=False)
    except Exception as exc:  # a truncated or garbled file: safetensors raises its own error type
        if "safetensor" not in f"{type(exc).__module__}.{type(exc).__name__}".lower():
            raise
        raise ModelError(f"{adir}/adapter_model.safetensors is damaged ({str(exc).splitlines()[0][:200]}); "
                         "resume or retrain the run") from None


def check_adapter_dir(adir: Path, base_name: str | None = None) -> dict:
    if not adir.is_dir():
        raise ModelError(f"{adir}: adapter folder not found")
    cfg_file = adir / "adapter_config.json"
    weights = adir / "adapter_model.safetensors"
    if not cfg_file.exists() or not weights.exists():
        pickles = list(adir.glob("adapter_model.bin"))
        if pickles:
            raise ModelError(f"{adir}: adapter weights are a pickle (adapter_model.bin), which can run code when "
                             "loaded; they are refused. Re-save the adapter with safetensors.")
        missing = [p.name for p in (cfg_file, weights) if not p.exists()]
        raise ModelError(f"{adir}: incomplete adapter, missing {', '.join(missing)}; resume or retrain the run")
    try:
        acfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{adir}/adapter_config.json: unreadable ({exc})") from None
    try:
        made_for = (adir / "base_model.txt").read_text(encoding="utf-8").strip() \
            if (adir / "base_model.txt").exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{adir}/base_model.txt is unreadable ({type(exc).__name__}); it should name the base "
                         "model in UTF-8 text; resume or retrain the run") from None
    from humanlike_tui.engine.storage.files import verify_manifest

    damaged = verify_manifest(adir)  # sizes and sha256 recorded when the adapter was written
    if damaged and (adir / "COMPLETE").is_file():
        raise ModelError(f"{adir}: the adapter is damaged ({damaged}); resume or retrain the run")
    if base_name and made_for and made_for != base_name:
        raise ModelError(f"{adir}: this adapter was trained on {made_for!r}, not {base_name!r}; "
                         f"set model.name = {made_for!r} to use it")
    return acfg


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
