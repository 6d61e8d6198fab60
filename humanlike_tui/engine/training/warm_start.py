"""`train.from_run` (`train --from RUN`): a new run whose LoRA starts as a finished run's adapter, so a few
dozen picks can nudge a tuned adapter instead of training one from nothing. The earlier run is only read.

The LoRA is attached as usual (the config's rank, alpha and layers) and the saved weights are loaded into
it, so the shapes must agree: a different rank or other layers fail before any step, naming the keys to
change. With train.method = "dpo" the starting adapter is also DPO's reference (what the picks nudge away
from), as the SFT model is in sft+dpo; the plain base would undo the earlier run's style first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from humanlike_tui.config import Config
from humanlike_tui.engine import models as M
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import InputError

WEIGHTS = "adapter_model.safetensors"


def start_adapter_dir(cfg: Config) -> Path:
    """The finished adapter of run `train.from_run`; InputError (exit 2) when there is none."""
    name = cfg.train.from_run.strip()
    try:
        run = S.get_run(name)
    except Exception as exc:  # StoreError: unknown run, with the recent ones
        raise InputError(f"train.from_run: {exc}") from None
    if not S.is_complete(run.adapter_dir):
        raise InputError(f"train.from_run: run {run.run_id} has no finished adapter (it is {run.status()}); "
                         "finish it first (train --resume) or start from another run")
    M.check_adapter_dir(run.adapter_dir, cfg.model.name)
    _check_shape(cfg, run.adapter_dir, run.run_id)
    return run.adapter_dir


def _check_shape(cfg: Config, adapter_dir: Path, run_id: str) -> None:
    saved = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if saved.get("r") != cfg.lora.r:
        raise InputError(f"train.from_run: run {run_id}'s adapter has rank {saved.get('r')}, this config "
                         f"lora.r = {cfg.lora.r}; set lora.r = {saved.get('r')} (train --from keeps the run's "
                         "LoRA settings unless --set changes them)")


def load_start_adapter(model, cfg: Config, log: Callable[[str], None]) -> None:
    """Copy the starting adapter's weights into the freshly attached LoRA of `model` (a peft model)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_dir = start_adapter_dir(cfg)
    state = load_file(str(adapter_dir / WEIGHTS))
    try:
        result = set_peft_model_state_dict(model, state)
    except RuntimeError as exc:  # size mismatches
        raise InputError(f"train.from_run: the adapter of {cfg.train.from_run} does not fit this LoRA "
                         f"({str(exc).splitlines()[0][:200]}); keep the run's lora.* settings") from None
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise InputError(f"train.from_run: {len(missing)} weights of {cfg.train.from_run}'s adapter have no "
                         f"place in this LoRA (e.g. {missing[0]}); keep the run's lora.target_modules")
    log(f"starting from the adapter of {cfg.train.from_run} ({len(state)} tensors); that run is left as it is")
