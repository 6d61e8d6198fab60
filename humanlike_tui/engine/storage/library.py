"""The adapter library: a summary of every run in the store (the Adapters screen, `adapters list`).
Listing, renaming and deleting are runs.py's; this adds the summary. Stdlib only, so the UI can list
runs without importing torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import ConfigError
from humanlike_tui.records import AdapterInfo


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
