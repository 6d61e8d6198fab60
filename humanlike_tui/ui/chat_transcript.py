"""The Chat screen's session as data, and its Markdown transcript. Pure: stdlib and core only.

Transcripts never carry Hugging Face tokens: anything shaped like one (hf_..., api_org_...) and the
value of any HF token variable in the environment is replaced before the text is written, because
a prompt can hold a pasted token and transcripts get shared.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from humanlike_tui.fileio import atomic_write_text
from humanlike_tui.formatting import date_text, file_stamp

SIDE_TITLES = {"base": "Base model (adapter off)", "adapter": "Adapter"}
TOKEN_PATTERN = re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{20,}\b")
TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACEHUB_API_TOKEN", "HF_API_TOKEN")
REDACTED = "[redacted token]"
FINISH_NOTES = {"end": "", "length": "max new tokens reached", "stopped": "stopped", "failed": "failed"}


@dataclass
class SideAnswer:
    text: str = ""
    tokens: int = 0
    finish: str = ""  # end | length | stopped | failed; empty while it is being written
    seconds: float = 0.0


@dataclass
class ChatTurn:
    """One prompt of the session and both answers (filled in as they arrive)."""

    prompt: str
    adapter: str  # the adapter that answered (the session may switch adapters)
    base_model: str
    settings: dict[str, Any]
    answers: dict[str, SideAnswer] = field(default_factory=lambda: {"base": SideAnswer(), "adapter": SideAnswer()})
    error: str = ""

    def history_tuple(self) -> tuple[str, str, str]:
        """(prompt, base answer, adapter answer): what the next prompt's history holds of this turn."""
        return self.prompt, self.answers["base"].text, self.answers["adapter"].text


def redact_secrets(text: str, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for name in TOKEN_ENV_VARS:
        value = (env.get(name) or "").strip()
        if len(value) >= 8:  # a short value would blank ordinary words
            text = text.replace(value, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)


def _quoted(text: str) -> str:
    """An answer as a Markdown quote, so a model's '# heading' or '---' cannot restructure the file."""
    lines = text.strip().splitlines() or [""]
    return "\n".join(f"> {line}".rstrip() for line in lines) if text.strip() else "> *(no answer)*"


def _answer_heading(side: str, turn: ChatTurn, answer: SideAnswer) -> str:
    title = SIDE_TITLES[side] + (f" {turn.adapter}" if side == "adapter" else "")
    notes = [f"{answer.tokens} tokens"] if answer.tokens else []
    if FINISH_NOTES.get(answer.finish):
        notes.append(FINISH_NOTES[answer.finish])
    return f"**{title}**" + (f" · {' · '.join(notes)}" if notes else "")


def transcript_markdown(turns: list[ChatTurn], saved_at: float, environ: dict[str, str] | None = None,
                        personas: list[str] | None = None) -> str:
    """The conversation as Markdown; `personas` (one per turn: the system prompt it was asked with) is
    written where it starts and wherever it changes."""
    out = ["# humanlike-tui chat transcript", "", f"- saved: {date_text(saved_at, with_time=True)}"]
    models = sorted({t.base_model for t in turns})
    if models:
        out.append(f"- base model: {', '.join(models)}")
    shown = ""
    for i, turn in enumerate(turns, 1):
        persona = personas[i - 1] if personas and i - 1 < len(personas) else ""
        if persona != shown:
            out += ["", f"*persona: {persona}*" if persona else "*no persona*"]
            shown = persona
        settings = ", ".join(f"{k} {v}" for k, v in turn.settings.items())
        out += ["", f"## {i}. You", "", turn.prompt.strip(), "", f"<sub>adapter {turn.adapter} · {settings}</sub>"]
        for side in ("base", "adapter"):
            answer = turn.answers[side]
            out += ["", _answer_heading(side, turn, answer), "", _quoted(answer.text)]
        if turn.error:
            out += ["", f"*failed: {turn.error}*"]
    return redact_secrets("\n".join(out) + "\n", environ)


def default_transcript_path(folder: Path, saved_at: float) -> Path:
    return folder / f"chat-{file_stamp(saved_at)}.md"


def write_transcript(path: str, turns: list[ChatTurn], saved_at: float,
                     personas: list[str] | None = None) -> tuple[Path, str]:
    """Write the transcript to `path` whole or not at all: (the file, "") or (the file, why it could not)."""
    target = Path(path).expanduser()
    try:
        atomic_write_text(target, transcript_markdown(turns, saved_at, personas=personas))
    except OSError as exc:
        return target, f"cannot write {target}: {exc.strerror or exc}"
    return target, ""
