"""Every answer a scorecard generated, as JSON lines: one object per answer, in prompt order, base then adapter.

    {"prompt": "...", "side": "base", "text": "...", "tokens": 57, "stopped": true, "judge_human": 0.91}

`tokens` counts the new tokens of the answer (the end token not included); `stopped` says whether the
model ended it with its end token before the limit (False: cut at max_new_tokens); `judge_human` is the
judge's probability that the answer is human-like (absent when no judge could be trained).

The file is written whole, beside the target and renamed over it: a crash leaves the old file or the
new one, never half of one. Stdlib only: the UI reads it without torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from humanlike_tui.errors import InputError
from humanlike_tui.fileio import atomic_write_text

ANSWERS_FILE = "answers.jsonl"  # in the run folder, beside scorecard.json: the answers of that card
FIELDS = ("prompt", "side", "text", "tokens", "stopped")


def answer_record(prompt: str, side: str, text: str, tokens: int, stopped: bool) -> dict[str, Any]:
    return {"prompt": prompt, "side": side, "text": text, "tokens": int(tokens), "stopped": bool(stopped)}


def write_answers(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write the records as JSON lines in one atomic step; returns how many."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    atomic_write_text(path, "".join(lines))
    return len(lines)


def read_answers(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of an answers file; [] when there is none. A line that is not an answer object (an
    edited file) is skipped rather than failing the whole view."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and all(k in record for k in FIELDS):
            out.append(record)
    return out


def check_answers_path(path: str | os.PathLike) -> Path:
    """The --answers target, checked before any model loads (InputError, exit 2, naming the fix)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(f"--answers {path}: that is a folder; give a file name, e.g. {p / 'answers.jsonl'}")
    folder = p.parent if str(p.parent) else Path(".")
    existing = next((f for f in (folder, *folder.parents) if f.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"--answers {path}: cannot write in {existing}; choose a folder you can write to")
    return p
