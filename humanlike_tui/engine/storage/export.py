"""Export: a run's adapter merged into its base, saved as a plain transformers model folder."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path
from typing import Callable
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.storage.merge import MERGE_INTO, merged_model
from humanlike_tui.errors import HumanlikeError, InputError, StoreError
from humanlike_tui.engine.storage import files


EXPORT_MARKER = "humanlike_export.json"  # written into every export: its provenance, and our licence to overwrite


EXPORT_DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_export_target(out: Path, overwrite: bool) -> None:
    """Never replace a folder we did not write: atomic_dir swaps the whole target folder. Checked before the
    model loads, so a wrong folder costs no minutes of loading: not inside the run store, a path that can be
    made, a folder we may write in; with overwrite, only an earlier export's own files."""
    _check_path(out)
    _refuse_the_store(out)
    if os.path.lexists(out) and not out.is_dir():
        raise InputError(f"{out} is a file; give a folder to create for the merged model")
    clean_leftovers(out)
    if out.is_dir() and any(out.iterdir()):
        ours = (out / EXPORT_MARKER).is_file()
        if not ours:
            raise InputError(f"{out} exists and is not empty; give a new folder (it is created), so nothing of yours "
                             "is overwritten")
        if not overwrite:
            raise InputError(f"{out} holds an earlier export; pass overwrite (--force) to replace it, or choose "
                             "another folder")
        foreign = files_not_exported(out)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise InputError(f"{out} holds an earlier export and also what it did not write ({shown}); --force "
                             "replaces only an export's own files, so nothing was changed: move those out of the "
                             "folder, or choose another folder")
    _check_writable(out)


def _check_path(out: Path) -> None:
    for part in out.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise InputError(f"{out}: the name {part[:40]!r}... has {len(os.fsencode(part))} bytes; a file or folder "
                             f"name can have at most {NAME_MAX}; choose a shorter folder name")


NAME_MAX = 255


def _refuse_the_store(out: Path) -> None:
    """An export inside a run folder is deleted by that run's next resume (clean_partial, atomic_dir); one that
    holds the store would swap the store away. The store is humanlike-tui's own: export beside it."""
    from humanlike_tui.paths import runs_dir

    store = runs_dir().expanduser().resolve()
    if out == store or store in out.parents or out in store.parents:
        raise InputError(f"{out} is {'inside ' if store in out.parents else ''}the run store ({store}); the store "
                         "rewrites and deletes what is in its folders, so an export there would be lost. Give a "
                         "folder outside it (e.g. ~/models/NAME)")


def _check_writable(out: Path) -> None:
    """The nearest existing folder on the way to `out` takes a new folder (a read-only disk, a folder of
    another user, a file in the path): tried with a hidden probe folder, removed at once."""
    import tempfile

    ancestor = out
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot create {out}: {ancestor} is a file, not a folder; give a folder path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tmp-probe-", dir=ancestor))
    except OSError as exc:
        raise InputError(f"cannot write the export to {out}: {ancestor} does not take new files "
                         f"({exc.strerror or type(exc).__name__}); choose a folder you can write to") from None


def check_room(out: Path, need_bytes: int | None, what: str) -> None:
    """Refuse before the model loads when the disk that takes `out` has less free space than the export's
    lower bound (its parameters at the bytes each is written with)."""
    import shutil

    if not need_bytes:
        return
    ancestor = out
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        free = shutil.disk_usage(ancestor).free
    except OSError:
        return
    if free < need_bytes:
        from humanlike_tui.formatting import size_text

        raise InputError(f"not enough free space for the export in {ancestor}: {what} needs at least "
                         f"{size_text(need_bytes)}, {size_text(free)} is free; free some space or choose a folder "
                         "on another disk (nothing was written)")


def export_size(model_path: str, bytes_per_param: float) -> int | None:
    """A lower bound of an export's bytes: the base's parameters (from its config.json) at `bytes_per_param`."""
    from humanlike_tui.engine.models.config_check import config_size, read_config_file
    from humanlike_tui.errors import ModelError

    folder = Path(model_path)
    if not folder.is_dir():
        return None
    try:
        size = config_size(read_config_file(folder), str(folder / "config.json"))
    except ModelError:
        return None  # the load says what is wrong with the model
    return int(size.params * bytes_per_param) if size else None


def write_failure(out: Path, exc: OSError) -> HumanlikeError:
    """An export that failed while writing (the disk filled up, the folder went away): nothing is left in
    `out` (atomic_dir removed its temporary folder), say so in words."""
    import shutil

    free = ""
    with contextlib.suppress(OSError):
        from humanlike_tui.formatting import size_text

        free = f"; {size_text(shutil.disk_usage(out.parent).free)} free there"
    reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or type(exc).__name__)
    return HumanlikeError(f"cannot write the export to {out}: {reason}{free}; nothing was left in {out.parent} "
                          "(the half-written folder was removed); free some space or choose another folder")


def files_not_exported(out: Path) -> list[str]:
    """What in an earlier export's folder that export did not write, or what was changed since: every file
    must be in its COMPLETE manifest with the recorded size (and sha256, for files under 16 MiB). An export
    written before manifests existed is judged by the names exports write."""
    try:
        marker = json.loads((out / files.COMPLETE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = {}
    listed = marker.get("files") if isinstance(marker, dict) else None
    found = []
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if name in (files.COMPLETE, EXPORT_MARKER) and not path.is_symlink():
            continue
        if path.is_symlink():
            found.append(name)
        elif isinstance(listed, dict):
            if not _as_written(path, listed.get(name)):
                found.append(name)
        elif not path.match(OLD_EXPORT_NAMES) and not any(path.match(g) for g in OLD_EXPORT_GLOBS):
            found.append(name)
    return found


OLD_EXPORT_NAMES = "config.json"
OLD_EXPORT_GLOBS = ("*.safetensors", "*.safetensors.index.json", "generation_config.json", "tokenizer*.json",
                    "special_tokens_map.json", "chat_template.jinja", "*.gguf", "Modelfile", "vocab.json", "merges.txt")


def _as_written(path: Path, record) -> bool:
    if not isinstance(record, dict):
        return False
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if size != record.get("size"):
        return False
    if size >= 16 * 2**20:  # a big weights file: its size says enough, hashing gigabytes would not
        return True
    return files.file_record(path)["sha256"] == record.get("sha256")


def clean_leftovers(out: Path) -> None:
    """Hidden folders that a killed export left beside `out`: atomic_dir's `.tmp-NAME-PID-...` of a process
    that is gone, and `.old-NAME-PID` (an earlier export, kept only until the new one was in place)."""
    import re
    import shutil

    from humanlike_tui.engine.storage.locks import pid_alive

    parent = out.parent
    if not parent.is_dir():
        return
    pattern = re.compile(rf"^\.(tmp|old)-{re.escape(out.name)}-(\d+)(-[a-z0-9_]{{8}})?$")  # mkdtemp: 8 characters
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            m = pattern.match(entry.name)
            if not m or not entry.is_dir() or entry.is_symlink() or pid_alive(int(m.group(2))):
                continue
            if m.group(1) == "old" and not os.path.lexists(out) and files.is_complete(entry):
                os.replace(entry, out)  # killed between the two renames: the earlier export goes back
            else:
                shutil.rmtree(entry, ignore_errors=True)


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
    model_path = M.resolve_model_path(full, log)
    target_dtype = _saved_dtype(model_path) if dtype == "auto" else dtype
    check_room(out, export_size(model_path, DTYPE_BYTES.get(target_dtype, 4)), f"the merged model ({target_dtype})")
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
    try:
        with files.atomic_dir(out, manifest=True) as tmp:  # the manifest: what a later --force may replace
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            S.write_json(tmp / EXPORT_MARKER, {
                "run": run.run_id, "base_model": cfg.model.name, "dtype": dtype, "exported": time.time(),
                "merge_into": merge_into, "quant": cfg.quant.mode,
                "adapter_sha256": M.file_digest(run.adapter_dir / "adapter_model.safetensors"),
                "note": "base model with the LoRA adapter merged in (peft merge_and_unload)"})
    except OSError as exc:
        raise write_failure(out, exc) from None
    return out


DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _write_trained_template(tok, cfg) -> None:
    """The export's tokenizer formats a conversation as training did (apply_chat_template gives the
    trained prompt), not with the base model's own chat template when the run used ours."""
    from humanlike_tui.engine import data as D
    from humanlike_tui.engine.storage.chat_template import export_chat_template

    template = export_chat_template(D.resolve_template(cfg.data.template, tok), tok, cfg.data.system_prompt)
    if template:
        tok.chat_template = template
