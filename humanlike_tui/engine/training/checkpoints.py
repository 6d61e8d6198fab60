"""A run's checkpoints: written whole into a temporary folder and renamed into place (storage.files.atomic_dir),
read back exactly (LoRA weights, optimizer, scaler, RNG states, counters, the DPO reference of sft+dpo)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.storage import files

REFERENCE_FILE = "reference_adapter.safetensors"


@dataclass
class TrainState:
    """What a checkpoint carries besides tensors: the counters a resumed run continues from."""

    step: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    budget: int = 0
    elapsed_s: float = 0.0
    first_loss: float | None = None
    last_loss: float | None = None
    last_eval: float | None = None
    energy_wh: float = 0.0

    def to_dict(self, checkpointing: bool) -> dict[str, Any]:
        return {"step": self.step, "samples_seen": self.samples_seen, "tokens_seen": self.tokens_seen,
                "budget": self.budget, "checkpointing": checkpointing, "elapsed_s": self.elapsed_s,
                "first_loss": self.first_loss, "last_loss": self.last_loss, "last_eval": self.last_eval,
                "energy_wh": self.energy_wh,
                "rng": "torch/python RNG saved; dropout is also reseeded from (seed, step, rank) each step"}

    @classmethod
    def from_dict(cls, c: dict[str, Any], budget: int) -> "TrainState":
        return cls(step=int(c["step"]), samples_seen=int(c["samples_seen"]), tokens_seen=int(c["tokens_seen"]),
                   budget=int(c.get("budget") or budget), elapsed_s=float(c.get("elapsed_s") or 0.0),
                   first_loss=c.get("first_loss"), last_loss=c.get("last_loss"), last_eval=c.get("last_eval"),
                   energy_wh=float(c.get("energy_wh") or 0.0))


def write_checkpoint(folder: Path, model, opt, scaler, reference: dict | None, state: dict[str, Any]) -> None:
    """Everything a resume needs, into `folder` (a temporary folder the caller renames into place)."""
    import torch

    model.save_pretrained(folder, safe_serialization=True)
    torch.save({"optimizer": opt.state_dict(),
                "scaler": scaler.state_dict() if scaler else None,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "python_rng": random.getstate()}, folder / "trainer_state.pt")
    if reference is not None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in reference.items()}, str(folder / REFERENCE_FILE))
    S.write_json(folder / "state.json", state)


CHECKPOINT_FILES = ("adapter_model.safetensors", "adapter_config.json", "trainer_state.pt", "state.json")


def verify_checkpoint(folder: Path) -> str | None:
    """None if the checkpoint looks usable: complete, every file as large and with the sha256 its
    COMPLETE marker recorded, and a state.json that names its step. Else why not, in words."""
    problem = files.verify_manifest(folder)
    if problem:
        return problem
    missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    state = S.read_json(folder / "state.json")
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or f"step-{step:06d}" != folder.name:
        return f"state.json does not name step {folder.name.removeprefix('step-').lstrip('0') or '0'}"
    return None


def read_checkpoint(folder: Path, model, opt, scaler, device) -> tuple[dict[str, Any], dict | None]:
    """Load a checkpoint into the model, optimizer and scaler and restore the RNGs.
    Returns (the saved counters, the DPO reference LoRA weights or None)."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    reference = None
    if (folder / REFERENCE_FILE).exists():
        reference = load_file(str(folder / REFERENCE_FILE), device=str(device))
    state = torch.load(folder / "trainer_state.pt", map_location="cpu", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    if scaler and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
    return S.read_json(folder / "state.json"), reference


def restore_newest(trainer, checkpoints: list[tuple[int, Path]]) -> tuple[list[tuple[Path, str]], Path | None]:
    """Resume from the newest checkpoint that verifies and loads; the newer ones that do not are
    skipped, each with why (a Log warning). Returns (the skipped ones with their reasons, the one
    restored or None: none was usable, the run starts again from step 0)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    fresh = {k: v.detach().clone() for k, v in get_peft_model_state_dict(trainer.model).items()}
    skipped: list[tuple[Path, str]] = []
    for _, path in reversed(checkpoints):
        reason = verify_checkpoint(path)
        if reason is None:
            try:
                trainer.restore(path)
            except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, try an older one
                reason = f"it cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
                set_peft_model_state_dict(trainer.model, fresh)
                trainer.state = TrainState()
        if reason is None:
            if skipped:
                trainer.log(f"resuming from {path.name}: " + "; ".join(f"{p.name} is damaged: {why}"
                                                                   for p, why in skipped)
                         + " (the damaged checkpoints are removed)", "warning")
            return skipped, path
        skipped.append((path, reason))
    if skipped:
        trainer.log("no checkpoint is usable (" + "; ".join(f"{p.name}: {why}" for p, why in skipped)
                 + "); training again from step 0", "warning")
    return skipped, None
