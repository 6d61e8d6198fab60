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

from humanlike_tui.config import (Config, atomic_write_text, current_umask, load_config, replace_retrying,
                                  save_config)
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
def atomic_dir(target: Path, manifest: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success mark it COMPLETE and rename it into place.

    manifest: the COMPLETE marker also records every file's size and sha256 (checkpoints, adapters),
    so a later reader can tell a damaged folder from a good one (verify_manifest)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700: other programs could not read it
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        marker: dict[str, Any] = {"written": time.time()}
        if manifest:
            marker["files"] = {name: _file_record(tmp / name) for name in _relative_files(tmp)}
        (tmp / COMPLETE).write_text(json.dumps(marker, indent=1, sort_keys=True))
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


def _relative_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE)


def _file_record(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def verify_manifest(folder: Path) -> str | None:
    """None if the folder is complete and every file its COMPLETE marker lists has the recorded size
    and sha256; else what is wrong, in words. A marker without a manifest (written before manifests
    existed) passes when it is there."""
    try:
        marker = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "not complete (no COMPLETE marker)"
    except (OSError, ValueError) as exc:
        return f"its COMPLETE marker is unreadable ({type(exc).__name__})"
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict):
        return None
    for name, want in sorted(files.items()):
        try:
            got = _file_record(folder / name)
        except OSError as exc:
            return f"{name} is unreadable ({exc.strerror or type(exc).__name__})"
        if not isinstance(want, dict) or got["size"] != want.get("size"):
            return f"{name} has {got['size']} bytes, {want.get('size') if isinstance(want, dict) else '?'} were written"
        if got["sha256"] != want.get("sha256"):
            return f"{name} has changed since it was written (sha256 differs)"
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine.

    Never os.kill(pid, 0) on Windows: there signal 0 is CTRL_C_EVENT, so the 'probe' would interrupt
    (or, for other signals, terminate) the very run it asks about. psutil asks the OS without
    sending anything.
    """
    import psutil

    try:
        return 0 < pid < 2**31 and psutil.pid_exists(pid)
    except (OverflowError, ValueError, OSError):
        return False


def as_pid(value: Any) -> int | None:
    """A pid read from a lock file written by anyone: an int in range, else None ("abc", 10**30, null)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        pid = int(value)
    except ValueError:
        return None
    return pid if 0 < pid < 2**31 else None


def process_started(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if it is gone or cannot be asked."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OverflowError, ValueError, OSError):
        return None


def holder_alive(info: dict[str, Any]) -> bool:
    """Whether the process a lock file names still runs here. The pid alone is not enough: once the
    trainer is dead the OS may give its pid to another program, so the start time must match too."""
    pid = as_pid(info.get("pid"))
    if pid is None or info.get("host") != socket.gethostname() or not pid_alive(pid):
        return False
    started = info.get("started")
    if isinstance(started, (int, float)) and not isinstance(started, bool):
        now = process_started(pid)
        return now is not None and abs(now - started) < 1.0
    return True  # an old lock without a start time: the pid is all we know


def _try_lock(fd: int) -> bool:
    """An exclusive OS lock on an open file, without waiting. The OS drops it when the process dies,
    however it dies, so a stale lock can never block a resume."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, LOCK_BYTE, os.SEEK_SET)  # a byte past the content, so readers are not blocked
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


LOCK_BYTE = 1 << 20
LOCK_FILE = "run.lock"


def discard_folder(path: Path) -> None:
    """Delete a checkpoint (pruned, or found damaged). Rename first: a crash mid-delete leaves a hidden
    leftover (clean_partial removes it), never a half-deleted checkpoint that still has its COMPLETE marker."""
    trash = path.with_name(f".tmp-prune-{path.name}")
    try:
        replace_retrying(path, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _read_fd_json(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 65536).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder`; files that vanish while we count (a checkpoint being
    pruned) count as nothing, never as an error."""
    total = 0
    for root, _dirs, files in os.walk(folder, onerror=lambda exc: None):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
    return total


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
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
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
        for _ in range(50):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise StoreError(f"run {self.run_id}: cannot {doing}: {path} cannot be opened for writing "
                                 f"({exc.strerror or type(exc).__name__}); is the store read-only?") from None
            if not _try_lock(fd):
                info = _read_fd_json(fd)
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
        if not isinstance(status, str):
            return "interrupted"
        if status == "running":
            return "running" if holder_alive(read_json(self.run_dir / LOCK_FILE)) else "interrupted"
        if status == "finished" and not is_complete(self.adapter_dir):
            return "interrupted"
        return status

    def size_bytes(self) -> int:
        return folder_bytes(self.run_dir)


def create_run(cfg: Config, name: str | None = None) -> Run:
    run_id = check_name(name) if name else new_run_id(cfg)
    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    sweep_trash(root)
    run_dir = root / run_id
    suffix = 1
    while run_dir.exists():  # two runs in one second, or a --name taken: never reuse a folder
        suffix += 1
        tail = f"-{suffix}"  # a 100-character name stays a valid name with its suffix
        run_dir = root / f"{run_id[:MAX_NAME - len(tail)].rstrip('.-_') or 'run'}{tail}"
    run_dir.mkdir()
    save_config(cfg, run_dir / "config.toml", header=f"config of run {run_dir.name}")
    run = Run(run_dir)
    write_json(run.meta_path, {"run_id": run.run_id, "status": "running", "created": time.time()})
    return run


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
    if target.exists():
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
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"the store is read-only or not yours{where}: {exc.strerror}; check its permissions"
    return f"{exc.strerror or type(exc).__name__}{where}"
