"""The adapter library: a summary of every run in the store, and export of a merged model.

Listing, renaming and deleting are `store`'s (list_runs, rename_run, delete_run); this module adds
the summary the Adapters screen and `humanlike-tui adapters list` show, and `export_merged`.
Everything but the export is stdlib only, so the UI can list runs without importing torch.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from humanlike_tui.engine import store as S
from humanlike_tui.errors import ConfigError, InputError, StoreError

EXPORT_MARKER = "humanlike_export.json"  # written into every export: its provenance, and our licence to overwrite
EXPORT_DTYPES = ("auto", "float32", "bfloat16", "float16")
RESUMABLE = ("paused", "stopped", "interrupted", "failed")


@dataclass(frozen=True)
class AdapterInfo:
    """One run of the store as the library shows it. `complete` = it has a finished adapter."""

    name: str
    status: str  # finished | paused | stopped | failed | running | interrupted (see store.Run.status)
    complete: bool
    base_model: str
    data_source: str
    method: str
    steps: int | None
    max_steps: int | None
    final_loss: float | None
    final_eval_loss: float | None
    created: float | None  # unix time
    finished: float | None
    size_bytes: int  # the whole run folder: adapter, checkpoints, logs
    adapter_bytes: int
    last_checkpoint: int | None  # the step of the newest complete checkpoint
    run_dir: str
    adapter_dir: str
    error: str = ""  # why it failed, when it did

    @property
    def can_chat(self) -> bool:
        return self.complete

    @property
    def can_resume(self) -> bool:
        # A run killed before its first checkpoint restarts from step 0 on resume.
        return self.status in RESUMABLE

    @property
    def state(self) -> str:
        """A short, honest label: 'finished', or what is missing and what can be done."""
        if self.complete:
            return "finished"
        where = f" at {self.steps}/{self.max_steps}" if self.steps is not None and self.max_steps else ""
        fix = "resume or delete" if self.can_resume else "delete"
        if self.status == "running":
            return f"training{where}"
        return f"{self.status}{where} (incomplete: {fix})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data |= {"created_iso": _iso(self.created), "finished_iso": _iso(self.finished), "can_chat": self.can_chat,
                 "can_resume": self.can_resume, "state": self.state}
        return data


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t)) if t else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _config_fields(run: S.Run) -> dict[str, Any]:
    """Base model, data and method from config.toml, for runs that died before meta.json said them."""
    try:
        cfg = run.config()
    except (ConfigError, OSError):
        return {}
    return {"base_model": cfg.model.name, "data_source": cfg.data.source, "method": cfg.train.method,
            "max_steps": cfg.train.max_steps}


def adapter_info(run: S.Run) -> AdapterInfo:
    meta = run.meta()
    fallback = _config_fields(run) if not all(k in meta for k in ("base_model", "data_source", "method")) else {}
    latest = run.latest_checkpoint()
    return AdapterInfo(
        name=run.run_id, status=run.status(), complete=S.is_complete(run.adapter_dir),
        base_model=str(meta.get("base_model") or fallback.get("base_model") or "?"),
        data_source=str(meta.get("data_source") or fallback.get("data_source") or "?"),
        method=str(meta.get("method") or fallback.get("method") or "?"),
        steps=_int(meta.get("steps")), max_steps=_int(meta.get("max_steps", fallback.get("max_steps"))),
        final_loss=_num(meta.get("final_loss")), final_eval_loss=_num(meta.get("final_eval_loss")),
        created=_num(meta.get("created")), finished=_num(meta.get("finished")),
        size_bytes=run.size_bytes(), adapter_bytes=_folder_bytes(run.adapter_dir),
        last_checkpoint=latest[0] if latest else None, run_dir=str(run.run_dir),
        adapter_dir=str(run.adapter_dir), error=str(meta.get("error") or ""))


def list_adapters() -> list[AdapterInfo]:
    """Every run, newest first, finished or not (an interrupted run is shown, never hidden)."""
    return [adapter_info(run) for run in S.list_runs()]


def get_adapter(name: str) -> AdapterInfo:
    return adapter_info(S.get_run(name))


def run_details(name: str) -> dict[str, Any]:
    """Everything the details pane shows: the summary, the run's config, checkpoints and metadata."""
    run = S.get_run(name)
    info = adapter_info(run)
    try:
        config: dict[str, Any] | None = run.config().to_dict()
    except (ConfigError, OSError):
        config = None
    meta = run.meta()
    return {"info": info.to_dict(), "config": config, "checkpoints": [step for step, _ in run.checkpoints()],
            "data": meta.get("data") or {}, "eval_metrics": meta.get("eval_metrics") or {},
            "duration_s": meta.get("duration_s"), "tokens_per_s": meta.get("tokens_per_s"),
            "energy_wh": meta.get("energy_wh"), "device": meta.get("device"),
            "trainable_params": meta.get("trainable_params"), "versions": meta.get("versions") or {}}


# --- export -------------------------------------------------------------------------------------------

def _check_export_target(out: Path, overwrite: bool) -> None:
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
                  log: Callable[[str], None] = lambda message: None) -> Path:
    """Write the base model in full precision with the run's LoRA merged in (peft merge_and_unload),
    as safetensors with the tokenizer: a standalone model any transformers program can load.

    The merge happens on the CPU in float32 (the base is loaded unquantized, whatever quantization the
    run trained with, so no 4-bit rounding is baked in), then the weights are cast to `dtype`: 'auto' =
    the dtype the base checkpoint is published in. The folder appears complete or not at all."""
    if dtype not in EXPORT_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    run = S.get_run(run) if isinstance(run, str) else run
    if not S.is_complete(run.adapter_dir):
        raise StoreError(f"run {run.run_id} has no finished adapter to export (it is {run.status()}); resume it "
                         f"(humanlike-tui train --resume {run.run_id}) or export a finished run")
    out = Path(out_dir).expanduser().resolve()
    _check_export_target(out, overwrite)
    cfg = run.config()
    from humanlike_tui.engine import model as M

    M.check_adapter_dir(run.adapter_dir, cfg.model.name)
    full = cfg.replace(**{"quant.mode": "none", "quant.double_quant": False, "quant.compute_dtype": "fp32"})
    target_dtype = _saved_dtype(M.resolve_model_path(full, log)) if dtype == "auto" else dtype
    model, tok = _merged_model(full, run, log)
    return _save_export(model, tok, out, run, cfg, target_dtype, log)


def _merged_model(full, run: S.Run, log: Callable[[str], None]):
    from humanlike_tui.engine import model as M

    base, tok = M.load_base_model(full, M.Precision("cpu", "fp32", False), log=log)
    log(f"merging adapter {run.run_id} into {full.model.name}")
    return M.load_adapter(base, run.adapter_dir, full.model.name).merge_and_unload(), tok


def _save_export(model, tok, out: Path, run: S.Run, cfg, dtype: str, log: Callable[[str], None]) -> Path:
    import torch

    from humanlike_tui.engine import model as M

    model = model.to(getattr(torch, dtype))
    model.config.use_cache = True  # training turned the KV cache off; a user of the export wants it on
    log(f"writing the merged model ({dtype}) to {out}")
    with S.atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        S.write_json(tmp / EXPORT_MARKER, {
            "run": run.run_id, "base_model": cfg.model.name, "dtype": dtype, "exported": time.time(),
            "adapter_sha256": M.file_digest(run.adapter_dir / "adapter_model.safetensors"),
            "note": "base model with the LoRA adapter merged in (peft merge_and_unload)"})
    return out
