"""Writing so that a crash leaves the old state or the new, never half: files beside their target then renamed,
folders under a temporary name with a COMPLETE marker (sizes and sha256 of every file) written last.
Stdlib only."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator
from humanlike_tui.fileio import atomic_write_text, current_umask, replace_retrying


COMPLETE = "COMPLETE"


# Test-only hook: seconds to wait inside atomic_dir after the folder is complete and before the rename,
# so the crash tests can kill a process in the middle of a checkpoint write. Unset in normal use.
TEST_WRITE_DELAY_ENV = "HUMANLIKE_TUI_TEST_WRITE_DELAY"


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
    # the pid in the name: a leftover of a killed process can be told from a write in progress
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-{os.getpid()}-", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700: other programs could not read it
        yield tmp
        follow_umask(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        marker: dict[str, Any] = {"written": time.time()}
        if manifest:
            marker["files"] = {name: file_record(tmp / name) for name in _relative_files(tmp)}
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


def follow_umask(folder: Path) -> None:
    """Give every file under `folder` the mode a normal write would (0666 less the umask). Some writers make
    0600 files whatever the umask (safetensors' save_file for adapter and model weights), so another user or
    program could not read an export or an adapter that the rest of the folder shares."""
    mode = 0o666 & ~current_umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                os.chmod(path, mode)


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE).is_file()


def _relative_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE)


def file_record(path: Path) -> dict[str, Any]:
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
            got = file_record(folder / name)
        except OSError as exc:
            return f"{name} is unreadable ({exc.strerror or type(exc).__name__})"
        if not isinstance(want, dict) or got["size"] != want.get("size"):
            return f"{name} has {got['size']} bytes, {want.get('size') if isinstance(want, dict) else '?'} were written"
        if got["sha256"] != want.get("sha256"):
            return f"{name} has changed since it was written (sha256 differs)"
    return None


def discard_folder(path: Path) -> None:
    """Delete a checkpoint (pruned, or found damaged). Rename first: a crash mid-delete leaves a hidden
    leftover (clean_partial removes it), never a half-deleted checkpoint that still has its COMPLETE marker."""
    trash = path.with_name(f".tmp-prune-{path.name}")
    try:
        replace_retrying(path, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def read_fd_json(fd: int) -> dict[str, Any]:
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
