"""The Chat screen's messages from its workers (bubble = False: they end at the screen, not the app) and its
small text helpers, apart from the screen itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.message import Message

from humanlike_tui import events
from humanlike_tui.formatting import size_text
from humanlike_tui.protocols import Generator, ServerHandle
from humanlike_tui.records import AdapterInfo
from humanlike_tui.ui.chat_transcript import ChatTurn
from humanlike_tui.ui.messages import NewestOnly


@dataclass
class ChatStream(Message):
    """One engine chat event (AnswerStarted / AnswerText / AnswerDone). Never merged."""

    bubble = False
    event: events.Event


@dataclass
class AdaptersListed(Message):
    bubble = False
    infos: list[AdapterInfo]
    error: str = ""


@dataclass
class GeneratorLog(NewestOnly):
    """Loading progress; only the newest line matters."""

    bubble = False
    text: str


@dataclass
class ServerChanged(Message):
    """The local OpenAI-compatible server started (handle) or could not start (error)."""

    bubble = False
    handle: ServerHandle | None = None
    error: str = ""
    note: str = ""  # said with the address: port 8000 was busy, so another was taken


@dataclass
class GeneratorOpened(Message):
    bubble = False
    name: str
    generator: Generator | None = None
    error: str = ""
    ask_remote_code: str = ""  # the model whose own code the person must allow first (then open again)
    describe: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExchangeEnded(Message):
    bubble = False
    turn: ChatTurn
    error: str = ""


def loaded_text(name: str, describe: dict, memory: dict) -> str:
    parts = [f"{name} on {describe.get('base_model', '?')}"]
    if describe.get("quant"):
        parts.append(str(describe["quant"]))
    if describe.get("device"):
        parts.append(str(describe["device"]))
    if memory.get("bytes"):
        parts.append(f"one base model in memory: {size_text(memory['bytes'], 'MB')} + LoRA "
                     f"{size_text(memory.get('lora_bytes', 0), 'MB')}")
    return " · ".join(parts)


def transcript_path_problem(text: str) -> str:
    if not text:
        return "give a file name"
    path = Path(text).expanduser()
    if path.is_dir():
        return f"{path} is a folder; add a file name (e.g. chat.md)"
    if path.exists():
        return f"{path} exists; choose another name (transcripts are never overwritten)"
    return ""


@dataclass
class PickSaved(Message):
    """A pick was saved to `collection` (which now holds `count` picks), or could not be (error)."""

    bubble = False
    collection: str
    chosen_by: str
    rejected_by: str
    count: int = 0
    error: str = ""
