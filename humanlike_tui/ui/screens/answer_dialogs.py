"""Every answer of a run's last scorecard, opened from the Adapters screen (a): each held-out prompt with the
base's answer and the adapter's, how many tokens each took, whether it ended on its own or ran into the
token limit, and what the judge made of it. The records are the scorecard's answers file
(engine/evaluation/answers.py), read by the Adapters screen's worker and handed in whole."""

from __future__ import annotations

from typing import Any, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

SIDE_ORDER = ("base", "adapter")


def by_prompt(records: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """[(prompt, {side: record})] in the order the prompts were first answered."""
    grouped: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(str(r.get("prompt", "")), {})[str(r.get("side", ""))] = r
    return list(grouped.items())


def answer_note(record: dict[str, Any]) -> str:
    """'57 tokens · ended on its own · judge: human-like (0.91)'."""
    parts = [f"{record.get('tokens', '?')} tokens",
             "ended on its own" if record.get("stopped") else "cut at the token limit"]
    p = record.get("judge_human")
    if p is not None:
        parts.append(f"judge: {'human-like' if p >= 0.5 else 'not human-like'} ({p:.2f})")
    return " · ".join(parts)


def answers_summary(records: Sequence[dict[str, Any]]) -> str:
    """'40 prompts · ended on their own: base 32, adapter 30 · judged human-like: base 3, adapter 28'."""
    groups = by_prompt(records)
    sides = [s for s in SIDE_ORDER if any(r.get("side") == s for r in records)]

    def count(side: str, flag) -> int:
        return sum(1 for r in records if r.get("side") == side and flag(r))

    text = f"{len(groups)} prompts · ended on their own: " + ", ".join(
        f"{s} {count(s, lambda r: r.get('stopped'))}" for s in sides)
    if any(r.get("judge_human") is not None for r in records):
        text += " · judged human-like: " + ", ".join(
            f"{s} {count(s, lambda r: (r.get('judge_human') or 0) >= 0.5)}" for s in sides)
    return text


def answers_text(records: Sequence[dict[str, Any]]) -> Text:
    """Every prompt, then each side's answer under a dim line saying how it ended."""
    out = Text()
    groups = by_prompt(records)
    for i, (prompt, sides) in enumerate(groups, 1):
        out.append(f"{i}/{len(groups)} ", style="dim")
        out.append(f"> {prompt}\n", style="bold")
        for side in SIDE_ORDER:
            record = sides.get(side)
            if record is None:
                continue
            out.append(f"  {side}", style="bold" if side == "adapter" else "")
            out.append(f" · {answer_note(record)}\n", style="dim")
            body = str(record.get("text", "")).strip() or "(an empty answer: the model ended at once)"
            out.append("    " + body.replace("\n", "\n    ") + "\n")
        out.append("\n")
    return out


class AnswersScreen(ModalScreen[None]):
    """The answers, scrollable; escape, q or a closes it."""

    DEFAULT_CSS = """
    AnswersScreen { align: center middle; }
    AnswersScreen > Vertical {
        width: 100%; height: 100%; max-width: 140;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    AnswersScreen .dialog-title { text-style: bold; }
    AnswersScreen #answers-summary { color: $text-muted; height: auto; }
    AnswersScreen #answers-scroll { height: 1fr; margin-top: 1; }
    AnswersScreen .dialog-buttons { height: auto; align-horizontal: right; }
    """
    BINDINGS = [Binding("escape,q,a", "close", "Close")]

    def __init__(self, name: str, records: Sequence[dict[str, Any]], caption: str = "") -> None:
        super().__init__()
        self._run, self._records, self._caption = name, list(records), caption

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Answers of {self._run}'s last scorecard", classes="dialog-title")
            summary = answers_summary(self._records)
            yield Static(f"{summary}\n{self._caption}" if self._caption else summary, id="answers-summary")
            with VerticalScroll(id="answers-scroll"):
                yield Static(answers_text(self._records), id="answers-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (Esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#answers-scroll").focus()  # arrows and page keys scroll at once

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
