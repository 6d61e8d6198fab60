"""Export: a run's adapter merged into its base, saved as a plain transformers model folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.storage.merge import MERGE_INTO, merged_model
from humanlike_tui.errors import InputError, StoreError
from humanlike_tui.engine.storage import files


EXPORT_MARKER = "humanlike_export.json"  # written into every export: its provenance, and our licence to overwrite


EXPORT_DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_export_target(out: Path, overwrite: bool) -> None:
    """Never replace a folder we did not write: atomic_dir swaps the whole target folder."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; give a folder to create for the merged model")
    if out.is_dir() and any(out.iterdir()):
        ours = (out / EXPORT_MARKER).is_file()
        if not ours:
            raise InputError(f"{out} exists and is not empty; give a new folder (it is created), so nothing of yours "
                             "is overwritten")
        if not overwrite:
            raise InputError(f"{out} holds an earlier export; pass overwrite (--force) to replace it, or choose "
                             "another folder")


def _saved_dtype(model_path: str) -> str:
    """The dtype the base checkpoint is published in (config.json), else float32."""
    try:
        cfg = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "float32"
    value = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    return value if value in EXPORT_DTYPES else "float32"


def export_merged(run: S.Run | str, out_dir: str | Path, *, dtype: str = "auto", overwrite: bool = False,
                  merge_into: str = "trained", log: Callable[[str], None] = lambda message: None) -> Path:
    """Write the base model with the run's LoRA merged in (peft merge_and_unload), as safetensors with
    the tokenizer: a standalone model any transformers program can load.

    The merge happens on the CPU in float32. `merge_into`: 'trained' (default) = the base as training
    and chat used it (a 4-bit base dequantized), so the export computes what chat showed; 'original' =
    the checkpoint's full-precision weights (see engine/storage/merge.py). Then the weights are cast to
    `dtype`: 'auto' = the dtype the base checkpoint is published in. The folder appears complete or not
    at all."""
    if dtype not in EXPORT_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    if merge_into not in MERGE_INTO:
        raise InputError(f"merge_into must be one of {', '.join(MERGE_INTO)}, got {merge_into!r}")
    run = S.get_run(run) if isinstance(run, str) else run
    if not S.is_complete(run.adapter_dir):
        raise StoreError(f"run {run.run_id} has no finished adapter to export (it is {run.status()}); resume it "
                         f"(humanlike-tui train --resume {run.run_id}) or export a finished run")
    out = Path(out_dir).expanduser().resolve()
    check_export_target(out, overwrite)
    cfg = run.config()
    from humanlike_tui.engine import models as M

    M.check_adapter_dir(run.adapter_dir, cfg.model.name)
    full = cfg.replace(**{"quant.mode": "none", "quant.double_quant": False, "quant.compute_dtype": "fp32"})
    target_dtype = _saved_dtype(M.resolve_model_path(full, log)) if dtype == "auto" else dtype
    model, tok = merged_model(cfg, run.adapter_dir, merge_into, log)
    return _save_export(model, tok, out, run, cfg, target_dtype, log, merge_into)


def _save_export(model, tok, out: Path, run: S.Run, cfg, dtype: str, log: Callable[[str], None],
                 merge_into: str = "trained") -> Path:
    import torch

    from humanlike_tui.engine import models as M

    model = model.to(getattr(torch, dtype))
    model.config.use_cache = True  # training turned the KV cache off; a user of the export wants it on
    log(f"writing the merged model ({dtype}) to {out}")
    _write_trained_template(tok, cfg)
    with files.atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        S.write_json(tmp / EXPORT_MARKER, {
            "run": run.run_id, "base_model": cfg.model.name, "dtype": dtype, "exported": time.time(),
            "merge_into": merge_into, "quant": cfg.quant.mode,
            "adapter_sha256": M.file_digest(run.adapter_dir / "adapter_model.safetensors"),
            "note": "base model with the LoRA adapter merged in (peft merge_and_unload)"})
    return out


def _write_trained_template(tok, cfg) -> None:
    """The export's tokenizer formats a conversation as training did (apply_chat_template gives the
    trained prompt), not with the base model's own chat template when the run used ours."""
    from humanlike_tui.engine import data as D
    from humanlike_tui.engine.storage.chat_template import export_chat_template

    template = export_chat_template(D.resolve_template(cfg.data.template, tok), tok, cfg.data.system_prompt)
    if template:
        tok.chat_template = template
