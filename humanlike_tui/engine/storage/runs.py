"""Runs and adapters on disk.

    runs/<run_id>/
      config.toml          the run's config (what --resume uses)
      meta.json            status, base model, data counts, steps, losses, duration, memory, versions
      metrics.jsonl        one line per step / eval event
      run.lock             held (an OS file lock) by the process training it, with its pid and start time;
                           nothing touches a run folder before this lock is held (a dead pid = interrupted)
      checkpoints/step-000050/   adapter + optimizer + scheduler + RNG, COMPLETE written last
      adapter/             the final adapter (peft safetensors), COMPLETE written last

Every folder is written under a temporary name and renamed into place once complete, and every
file is written beside its target and renamed: a crash leaves the old state or the new, never a
half-written adapter that looks complete. Stdlib only, so the UI can list runs without torch.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from humanlike_tui.config import Config, load_config, save_config
from humanlike_tui.fileio import atomic_write_text, replace_retrying
from humanlike_tui.errors import StoreError
from humanlike_tui.paths import runs_dir
from humanlike_tui.engine.storage.files import (read_fd_json, discard_folder, folder_bytes, is_complete, read_json,
                                                write_json)
from humanlike_tui.engine.storage.locks import LOCK_FILE, try_lock, as_pid, holder_alive, process_started


# Open flag that refuses a symbolic link as the last part of a path (POSIX); Windows has none, and the
# lstat check in Run.refuse_links covers it there.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


CHECKPOINT_RE = re.compile(r"^step-(\d{6,})$")


def check_name(name: str) -> str:
    """Run and adapter names are plain folder names: no paths, no traversal, nothing hidden."""
    name = (name or "").strip()
    if not SAFE_NAME.match(name) or ".." in name:
        raise StoreError(f"{name!r} is not a valid run name: use letters, digits, '.', '_' and '-' "
                         "(at most 100 characters, no slashes, not starting with '.')")
    return name


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "run"


def new_run_id(cfg: Config) -> str:
    model = slug(cfg.model.name.split("/")[-1].removeprefix("builtin:"))
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{slug(cfg.train.method)}"


@dataclass
class Run:
    run_dir: Path
    # (fd, path) of run.lock while this object holds the run's OS lock; see acquire().
    _lock: tuple[int, Path] | None = field(default=None, repr=False, compare=False)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def meta_path(self) -> Path:
        return self.run_dir / "meta.json"

    def meta(self) -> dict[str, Any]:
        return read_json(self.meta_path)

    def update_meta(self, **values: Any) -> dict[str, Any]:
        meta = self.meta()
        meta.update(values)
        write_json(self.meta_path, meta)
        return meta

    def config(self) -> Config:
        return load_config(self.run_dir / "config.toml")

    def append_metric(self, record: dict[str, Any]) -> None:
        # O_NOFOLLOW: a metrics.jsonl planted as a link never appends to the file it points to
        fd = os.open(self.run_dir / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o666)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """Every readable record. A line cut by a crash, bytes that are not UTF-8, or JSON that is not a
        record with an integer step (`[1, 2]`) are skipped: one bad line never blocks a resume."""
        path = self.run_dir / "metrics.jsonl"
        out = []
        try:
            raw = path.read_bytes()
        except OSError:
            return out
        for line in raw.splitlines():
            try:
                record = json.loads(line.decode("utf-8"))
            except (ValueError, RecursionError):
                continue
            step = record.get("step", 0) if isinstance(record, dict) else None
            if isinstance(step, int) and not isinstance(step, bool):
                out.append(record)
        return out

    def truncate_metrics(self, step: int) -> None:
        """On resume: forget what was logged after the checkpoint we resume from (and damaged lines)."""
        kept = [m for m in self.metrics() if m.get("step", 0) <= step]
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in kept))

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first; half-written ones are invisible."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for d in self.checkpoints_dir.iterdir():
            m = CHECKPOINT_RE.match(d.name)
            if m and d.is_dir() and is_complete(d):
                found.append((int(m.group(1)), d))
        return sorted(found)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        cps = self.checkpoints()
        return cps[-1] if cps else None

    def prune_checkpoints(self, keep: int) -> None:
        for _, path in self.checkpoints()[:-keep]:
            discard_folder(path)

    def clean_partial(self) -> None:
        """Remove leftovers of writes that a crash cut short: atomic_dir's .tmp-/.old- folders and
        atomic_write_text's .<name>.<random>.tmp files."""
        for parent in (self.run_dir, self.checkpoints_dir):
            if parent.is_dir():
                for d in sorted(parent.iterdir()):
                    old = re.match(r"^\.old-(.+)-\d+$", d.name)
                    if old and d.is_dir() and is_complete(d) and not (parent / old.group(1)).exists():
                        replace_retrying(d, parent / old.group(1))  # cut between atomic_dir's two renames: roll back
                        continue
                    if d.name.startswith((".tmp-", ".old-")) or (d.name.startswith(".") and d.name.endswith(".tmp")):
                        shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)

    @property
    def holds_lock(self) -> bool:
        return self._lock is not None

    def acquire(self, doing: str = "train it") -> None:
        """Take the run's lock, or raise StoreError naming the process that holds it. The first thing
        any writer does: a process refused here has changed no byte of the run folder.

        The lock is an OS lock (flock; a locked byte on Windows) on run.lock, so two processes that
        start together cannot both get it and a dead holder never blocks; the file also names the
        holder (pid, host, start time) for the message and for status()."""
        if self._lock is not None:
            return
        path = self.run_dir / LOCK_FILE
        self.refuse_links(doing, [self.run_dir, path])
        for _ in range(50):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o666)
            except OSError as exc:
                if exc.errno == errno.ELOOP or path.is_symlink():  # planted between the check and the open
                    self.refuse_links(doing, [path])
                raise StoreError(f"run {self.run_id}: cannot {doing}: {path} cannot be opened for writing "
                                 f"({exc.strerror or type(exc).__name__}); is the store read-only?") from None
            if not try_lock(fd):
                info = read_fd_json(fd)
                os.close(fd)
                pid = as_pid(info.get("pid"))
                who = f"process {pid}" if pid else "another process"
                raise StoreError(f"run {self.run_id} is being trained by {who}; stop it first "
                                 f"(cannot {doing} meanwhile)")
            try:  # a holder that just let go unlinked the file we locked: lock the new one instead
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise StoreError(f"run {self.run_id}: could not take its lock; try again")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                "started": process_started(os.getpid())}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        except OSError:
            os.close(fd)
            raise
        self._lock = (fd, path)
        try:  # held: no other humanlike-tui process changes the folder while we look at every entry
            self.refuse_links(doing, self._every_entry())
        except StoreError:
            self.release()
            raise

    def _every_entry(self) -> Iterator[Path]:
        for folder, dirs, files in os.walk(self.run_dir, followlinks=False):
            for name in dirs + files:
                yield Path(folder) / name

    def refuse_links(self, doing: str, paths: Iterable[Path]) -> None:
        """StoreError if any of `paths` is a symbolic link. The store writes, renames and deletes inside a run
        folder; through a link it would change a file outside the store (a run.lock linked to ~/.bashrc
        would be truncated by the next resume), so it never follows one."""
        for path in paths:
            if path.is_symlink():
                try:
                    to = f" (to {os.readlink(path)})"
                except OSError:
                    to = ""
                what = "the run folder" if path == self.run_dir else f"{path.relative_to(self.run_dir)}"
                raise StoreError(f"run {self.run_id}: cannot {doing}: {what} is a symbolic link{to}; humanlike-tui "
                                 "never follows links inside its store, so nothing was changed. Remove the link "
                                 f"({path}) and try again")

    def release(self) -> None:
        """Let go of the lock if this object holds it (never another process's)."""
        if self._lock is None:
            return
        fd, path = self._lock
        self._lock = None
        if os.name == "nt":
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)  # unlinked while still locked: a waiting process retries on the new file
        os.close(fd)

    def status(self) -> str:
        """finished | paused | stopped | failed | running | interrupted (a crash left it 'running')."""
        meta = self.meta()
        status = meta.get("status", "interrupted")
        lock = read_json(self.run_dir / LOCK_FILE)
        if lock and holder_alive(lock):  # being resumed: meta.json says 'running' only once the model has loaded
            return "running"
        if not isinstance(status, str) or status == "running":
            return "interrupted"
        if status == "finished" and not is_complete(self.adapter_dir):
            return "interrupted"
        if status == "finished" and lock and self._more_steps_asked(meta):
            return "interrupted"  # a resume for more steps died before it wrote meta.json: it is not finished
        return status

    def _more_steps_asked(self, meta: dict[str, Any]) -> bool:
        steps = meta.get("steps")
        try:
            wanted = self.config().train.max_steps
        except Exception:  # noqa: BLE001 - an unreadable config.toml: the list shows the run as meta says
            return False
        return isinstance(steps, int) and not isinstance(steps, bool) and wanted > steps

    def size_bytes(self) -> int:
        return folder_bytes(self.run_dir)


def create_run(cfg: Config, name: str | None = None) -> Run:
    run_id = check_name(name) if name else new_run_id(cfg)
    root = runs_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only disk, a folder of another user, a file where a folder should be
        raise StoreError(f"cannot create a run: {_os_reason(exc)}{_home_hint()}") from None
    sweep_trash(root)
    run_dir = root / run_id
    suffix = 1
    while os.path.lexists(run_dir):  # two runs in one second, or a --name taken: never reuse a folder
        suffix += 1
        tail = f"-{suffix}"  # a 100-character name stays a valid name with its suffix
        run_dir = root / f"{run_id[:MAX_NAME - len(tail)].rstrip('.-_') or 'run'}{tail}"
    try:
        run_dir.mkdir()
    except OSError as exc:
        raise StoreError(f"cannot create a run in {root}: {_os_reason(exc)}{_home_hint()}") from None
    save_config(cfg, run_dir / "config.toml", header=f"config of run {run_dir.name}")
    run = Run(run_dir)
    write_json(run.meta_path, {"run_id": run.run_id, "status": "running", "created": time.time()})
    return run


def _home_hint() -> str:
    from humanlike_tui.paths import HOME_ENV

    home = os.environ.get(HOME_ENV, "").strip()
    return f" ({HOME_ENV} is {home}: give a folder you can write to)" if home else ""


MAX_NAME = 100  # SAFE_NAME's limit


TRASH_PREFIXES = (".tmp-deleting-", ".tmp-discard-")


def sweep_trash(root: Path) -> None:
    """Finish deletes a crash cut short: runs renamed to a hidden trash name but not yet removed."""
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            if entry.name.startswith(TRASH_PREFIXES) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


def _created(run: "Run") -> float:
    value = run.meta().get("created")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def get_run(name: str) -> Run:
    run_dir = runs_dir() / check_name(name)
    if not (run_dir / "config.toml").is_file():
        known = ", ".join(r.run_id for r in list_runs()[:5])
        raise StoreError(f"no run named {name!r} in {runs_dir()}" + (f"; recent runs: {known}" if known else ""))
    return Run(run_dir)


def list_runs() -> list[Run]:
    root = runs_dir()
    if not root.is_dir():
        return []
    runs = [Run(d) for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
            and (d / "config.toml").is_file()]
    return sorted(runs, key=_created, reverse=True)  # a meta.json with "created": null sorts last


def rename_run(name: str, new_name: str) -> Run:
    run = get_run(name)
    new_name = check_name(new_name)
    target = runs_dir() / new_name
    if os.path.lexists(target):  # a dangling link too
        raise StoreError(f"a run named {new_name!r} already exists; choose another name")
    try:
        run.acquire("rename it")  # refused while it trains
        try:
            if os.name == "nt":  # Windows cannot rename a folder with an open file inside
                run.release()
            replace_retrying(run.run_dir, target)
            moved = Run(target)
            moved.update_meta(run_id=new_name)
        finally:
            run.release()
    except OSError as exc:
        raise StoreError(f"cannot rename run {name}: {_os_reason(exc)}") from None
    return moved


def delete_run(name: str) -> None:
    run = get_run(name)
    root = run.run_dir.parent
    try:
        run.acquire("delete it")  # refused while it trains
        try:
            if os.name == "nt":
                run.release()
            # Rename first, so a crash mid-delete never leaves a half-deleted run that looks usable; the
            # trash name is unique, so a leftover of a killed delete never blocks the next one.
            trash = root / f"{TRASH_PREFIXES[0]}{run.run_id}-{os.getpid()}-{time.time_ns() % 10**9}"
            replace_retrying(run.run_dir, trash)
        finally:
            run.release()
    except OSError as exc:
        raise StoreError(f"cannot delete run {name}: {_os_reason(exc)}") from None
    sweep_trash(root)


def _os_reason(exc: OSError) -> str:

    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"the store is read-only or not yours{where}: {exc.strerror}; check its permissions"
    return f"{exc.strerror or type(exc).__name__}{where}"
