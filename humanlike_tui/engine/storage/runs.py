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
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from humanlike_tui.config import Config, atomic_write_text, load_config, replace_retrying, save_config
from humanlike_tui.errors import StoreError
from humanlike_tui.paths import runs_dir

COMPLETE = "COMPLETE"
# Test-only hook: seconds to wait inside atomic_dir after the folder is complete and before the rename,
# so the crash tests can kill a process in the middle of a checkpoint write. Unset in normal use.
TEST_WRITE_DELAY_ENV = "HUMANLIKE_TUI_TEST_WRITE_DELAY"
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


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every OS lets you open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success mark it COMPLETE and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        (tmp / COMPLETE).write_text(json.dumps({"written": time.time()}))
        fsync_dir(tmp)
        if os.environ.get(TEST_WRITE_DELAY_ENV):
            time.sleep(float(os.environ[TEST_WRITE_DELAY_ENV]))
        if target.exists():
            old = target.with_name(f".old-{target.name}-{os.getpid()}")
            replace_retrying(target, old)
            replace_retrying(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            replace_retrying(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE).is_file()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine.

    Never os.kill(pid, 0) on Windows: there signal 0 is CTRL_C_EVENT, so the 'probe' would interrupt
    (or, for other signals, terminate) the very run it asks about. psutil asks the OS without
    sending anything.
    """
    import psutil

    return pid > 0 and psutil.pid_exists(pid)


@dataclass
class Run:
    run_dir: Path

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
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        path = self.run_dir / "metrics.jsonl"
        out = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):  # a line cut by a crash is skipped
                    out.append(json.loads(line))
        return out

    def truncate_metrics(self, step: int) -> None:
        """On resume: forget what was logged after the checkpoint we resume from."""
        kept = [m for m in self.metrics() if int(m.get("step", 0)) <= step]
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
            # Rename first: a crash mid-delete leaves a hidden leftover, never a half-deleted checkpoint
            # that still has its COMPLETE marker.
            trash = path.with_name(f".tmp-prune-{path.name}")
            try:
                replace_retrying(path, trash)
            except OSError:
                continue
            shutil.rmtree(trash, ignore_errors=True)

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

    def acquire(self) -> None:
        lock = self.run_dir / "run.lock"
        info = read_json(lock)
        if info and info.get("host") == socket.gethostname() and info.get("pid") != os.getpid() \
                and pid_alive(int(info.get("pid", 0))):
            raise StoreError(f"run {self.run_id} is being trained by process {info['pid']}; stop it first")
        write_json(lock, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})

    def release(self) -> None:
        (self.run_dir / "run.lock").unlink(missing_ok=True)

    def status(self) -> str:
        """finished | paused | stopped | failed | running | interrupted (a crash left it 'running')."""
        meta = self.meta()
        status = meta.get("status", "interrupted")
        if status == "running":
            info = read_json(self.run_dir / "run.lock")
            alive = info.get("host") == socket.gethostname() and pid_alive(int(info.get("pid", 0)))
            return "running" if alive else "interrupted"
        if status == "finished" and not is_complete(self.adapter_dir):
            return "interrupted"
        return status

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.run_dir.rglob("*") if f.is_file())


def create_run(cfg: Config, name: str | None = None) -> Run:
    run_id = check_name(name) if name else new_run_id(cfg)
    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / run_id
    suffix = 1
    while run_dir.exists():  # two runs in one second: never reuse a folder
        suffix += 1
        run_dir = root / f"{run_id}-{suffix}"
    run_dir.mkdir()
    save_config(cfg, run_dir / "config.toml", header=f"config of run {run_dir.name}")
    run = Run(run_dir)
    write_json(run.meta_path, {"run_id": run.run_id, "status": "running", "created": time.time()})
    return run


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
    return sorted(runs, key=lambda r: r.meta().get("created", 0), reverse=True)


def rename_run(name: str, new_name: str) -> Run:
    run = get_run(name)
    new_name = check_name(new_name)
    if run.status() == "running":
        raise StoreError(f"run {name} is training; stop it before renaming")
    target = runs_dir() / new_name
    if target.exists():
        raise StoreError(f"a run named {new_name!r} already exists; choose another name")
    replace_retrying(run.run_dir, target)
    moved = Run(target)
    moved.update_meta(run_id=new_name)
    return moved


def delete_run(name: str) -> None:
    run = get_run(name)
    if run.status() == "running":
        raise StoreError(f"run {name} is training; stop it before deleting")
    # Rename first, so a crash mid-delete never leaves a half-deleted run that looks usable.
    trash = run.run_dir.with_name(f".tmp-deleting-{run.run_id}")
    replace_retrying(run.run_dir, trash)
    shutil.rmtree(trash, ignore_errors=True)
