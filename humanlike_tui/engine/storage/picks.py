"""Picks: the person's preferences from the Chat screen, one JSON-lines file per named collection in the
user data directory (data_dir()/picks/NAME.jsonl; the default collection is "my-picks").

Each line is one preference row (see `pick_row`): the conversation so far, the chosen and the rejected answer,
which side wrote which (base / adapter / edited), the adapter, the generation settings and a time stamp.

Why appends are safe:
- a pick is one `os.write` of the whole encoded line on a file opened with O_APPEND, under an OS lock on the
  file, then fsync: several workbench windows (processes) adding to one collection never interleave or lose
  a line, and a saved pick is on the disk when `append_pick` returns;
- a crash mid-write can leave at most one partial line at the end. The next append sees that the file does
  not end in a newline and starts its line on a fresh one, so only the cut pick is lost; readers skip a line
  that is not a whole pick and count it (`PicksFile.damaged`).

The held-out rule lives here too: the newest fifth of a collection (by time stamp) is never trained on
(`split_by_time`), so the scorecard can measure the adapter on picks it has not seen. Stdlib only.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from humanlike_tui import paths
from humanlike_tui.config import picks_name_problem
from humanlike_tui.errors import InputError, StoreError

SUFFIX = ".jsonl"
ROW_VERSION = 1
HELD_OUT_SHARE = 0.2  # the newest fifth
SIDE_NAMES = ("base", "adapter", "edited")
NEEDED = ("prompt", "chosen", "rejected")


def picks_dir() -> Path:
    return paths.data_dir() / "picks"


def check_collection(name: str) -> str:
    """The collection name, stripped; InputError (exit 2) naming the rule when it cannot be a file name."""
    name = (name or "").strip()
    problem = picks_name_problem(name)
    if problem:
        raise InputError(f"picks collection {name!r}: {problem}")
    return name


def collection_path(name: str) -> Path:
    return picks_dir() / f"{check_collection(name)}{SUFFIX}"


# ---- one pick ---------------------------------------------------------------------------------------------

def messages_of(history: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Earlier (prompt, answer) turns as OpenAI-style messages (user, assistant, user, ...)."""
    out: list[dict[str, str]] = []
    for prompt, answer in history:
        out.append({"role": "user", "content": prompt})
        if answer:
            out.append({"role": "assistant", "content": answer})
    return out


def pick_row(*, prompt: str, chosen: str, rejected: str, chosen_by: str, rejected_by: str,
             history: Iterable[tuple[str, str]] = (), adapter: str = "", base_model: str = "",
             settings: dict[str, Any] | None = None, when: float | None = None, system: str = "") -> dict[str, Any]:
    """One preference row as it is saved. `history` is the conversation before `prompt` as (prompt, answer)
    turns, the answers being those the side that wrote (or was edited into) the chosen answer saw."""
    for key, side in (("chosen_by", chosen_by), ("rejected_by", rejected_by)):
        if side not in SIDE_NAMES:
            raise ValueError(f"{key} must be one of {SIDE_NAMES}, got {side!r}")
    when = time.time() if when is None else when
    row: dict[str, Any] = {"version": ROW_VERSION, "id": uuid.uuid4().hex, "time": round(when, 6),
                           "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))}
    if system:
        row["system"] = system
    row |= {"history": messages_of(history), "prompt": prompt, "chosen": chosen, "rejected": rejected,
            "chosen_by": chosen_by, "rejected_by": rejected_by, "adapter": adapter, "base_model": base_model,
            "settings": dict(settings or {})}
    return row


def row_problem(row: Any) -> str:
    """Why a decoded line is not a usable pick ('' when it is)."""
    if not isinstance(row, dict):
        return "not an object"
    for key in NEEDED:
        if not isinstance(row.get(key), str) or not row[key].strip():
            return f"no {key} text"
    history = row.get("history", [])
    if not isinstance(history, list) or not all(
            isinstance(m, dict) and m.get("role") in ("user", "assistant", "system")
            and isinstance(m.get("content"), str) for m in history):
        return "history is not a list of messages"
    if not isinstance(row.get("time"), (int, float)) or isinstance(row.get("time"), bool):
        return "no time stamp"
    return ""


# ---- the file ---------------------------------------------------------------------------------------------

def append_pick(name: str, row: dict[str, Any]) -> Path:
    """Add one pick to collection `name` (created on first use); returns the file. Safe against other
    processes appending at the same time and against a crash mid-write (see the module doc)."""
    problem = row_problem(row)
    if problem:
        raise InputError(f"not a pick ({problem}); nothing was saved")
    path = collection_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise StoreError(f"cannot save the pick to {path} ({exc.strerror or exc}); check that the folder is "
                         "writable and the disk is not full") from None
    try:
        unlock = _lock(fd)
        try:
            if not _ends_with_newline(path):
                line = b"\n" + line  # the last line was cut by a crash: keep it apart, the reader skips it
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            unlock()
    except OSError as exc:
        raise StoreError(f"cannot save the pick to {path} ({exc.strerror or exc}); check that the disk is "
                         "not full") from None
    finally:
        os.close(fd)
    return path


def _write_all(fd: int, data: bytes) -> None:
    """One write of the whole line; a short write (a full disk) is completed, never left as a half line
    that the next pick would join."""
    written = os.write(fd, data)
    while written < len(data):
        written += os.write(fd, data[written:])


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _lock(fd: int) -> Callable[[], None]:
    """Wait for the exclusive OS lock on the collection (flock; byte 0 locked on Windows); returns the unlock."""
    try:
        import fcntl
    except ImportError:  # Windows: a byte lock, taken and given back at offset 0 (appends move the offset)
        import msvcrt

        def at_start(mode: int) -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, mode, 1)

        while True:
            try:
                at_start(msvcrt.LK_LOCK)  # retries for ~10 s itself
                return lambda: at_start(msvcrt.LK_UNLCK)
            except OSError:
                continue
    fcntl.flock(fd, fcntl.LOCK_EX)
    return lambda: fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass
class PicksFile:
    """A collection as read: its usable picks in file order and the lines that were not."""

    name: str
    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)

    @property
    def count(self) -> int:
        return len(self.rows)

    def damaged_note(self) -> str:
        """'skipped 1 damaged line (line 7: not JSON)' or ''."""
        if not self.damaged:
            return ""
        shown = ", ".join(f"line {n}: {why}" for n, why in self.damaged[:3])
        more = f", and {len(self.damaged) - 3} more" if len(self.damaged) > 3 else ""
        s = "s" if len(self.damaged) > 1 else ""
        return f"{self.path.name}: skipped {len(self.damaged)} damaged line{s} ({shown}{more})"


def read_picks(name: str, *, missing_ok: bool = False) -> PicksFile:
    """Every usable pick of collection `name`; damaged lines are skipped and listed. StoreError (exit 2)
    when the collection does not exist (unless missing_ok)."""
    path = collection_path(name)
    out = PicksFile(check_collection(name), path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return out
        raise StoreError(f"no picks collection {out.name!r} in {picks_dir()}; "
                         f"{_known_text()}pick answers on the Chat screen to make one") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path} ({exc.strerror or exc})") from None
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            out.damaged.append((number, "not a whole JSON line"))
            continue
        problem = row_problem(row)
        if problem:
            out.damaged.append((number, problem))
        else:
            out.rows.append(row)
    return out


def _known_text() -> str:
    names = [c.name for c in list_collections()]
    return f"collections here: {', '.join(names)}; " if names else ""


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    count: int
    damaged: int
    newest: float | None  # time stamp of the newest pick
    path: str
    multi_turn: int = 0  # picks with earlier turns


def list_collections() -> list[CollectionInfo]:
    """Every collection with its count, newest first by its last pick."""
    folder = picks_dir()
    out = []
    for path in sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []:
        name = path.name.removesuffix(SUFFIX)
        if picks_name_problem(name):
            continue
        f = read_picks(name, missing_ok=True)
        times = [r["time"] for r in f.rows]
        out.append(CollectionInfo(name, f.count, len(f.damaged), max(times) if times else None, str(path),
                                  sum(1 for r in f.rows if r.get("history"))))
    return sorted(out, key=lambda c: (-(c.newest or 0), c.name))


def delete_collection(name: str) -> Path:
    path = collection_path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        raise StoreError(f"no picks collection {check_collection(name)!r}; {_known_text()}nothing deleted") from None
    return path


# ---- held out by time, and the export shape ----------------------------------------------------------------

def held_out_count(n: int) -> int:
    """How many of n picks are held out: the newest fifth, rounded up, and at least one once there are two."""
    return 0 if n < 2 else max(1, math.ceil(n * HELD_OUT_SHARE))


def split_by_time(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(trainable, held out): the newest fifth by time stamp (ties keep file order) is held out. As a
    collection grows the boundary only moves forward, so a pick once trained on is never held out later."""
    ordered = sorted(rows, key=lambda r: r["time"])  # stable: file order among equal stamps
    held = held_out_count(len(ordered))
    return ordered[:len(ordered) - held], ordered[len(ordered) - held:]


def conversation(row: dict[str, Any]) -> list[dict[str, str]]:
    """The messages before the chosen/rejected turn: system (if any), history, the user's prompt."""
    system = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    return system + list(row.get("history") or []) + [{"role": "user", "content": row["prompt"]}]


def is_multi_turn(row: dict[str, Any]) -> bool:
    return bool(row.get("history")) or bool(row.get("system"))


def export_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in TRL's preference shape. All single-turn: standard prompt/chosen/rejected strings. Any
    multi-turn: every row conversational (prompt = the messages so far, chosen/rejected = one assistant
    message each), since one file must have one shape for `datasets` to load it."""
    if not any(is_multi_turn(r) for r in rows):
        return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
    return [{"prompt": conversation(r), "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
