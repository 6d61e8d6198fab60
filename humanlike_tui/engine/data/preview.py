"""A quick look at the configured data as the model will see it (the Config screen's data look and
`humanlike-tui data inspect`): rows per shape, token lengths against data.max_length, and a few rows as
turns (role, text, whether the turn carries loss) and as the exact text the model reads.

Data needs only a tokenizer: the caller loads it (engine.models), so this room never imports models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from humanlike_tui.config import Config
from humanlike_tui.engine.data import conversation as C
from humanlike_tui.engine.data.formatting import format_example, resolve_template
from humanlike_tui.engine.data.loading import Row, load_rows
from humanlike_tui.errors import DataError


@dataclass(frozen=True)
class PreviewTurn:
    role: str  # system | user | assistant | rejected
    text: str
    loss: bool  # the turn's tokens carry labels in SFT


@dataclass(frozen=True)
class DataPreview:
    rows: int
    lengths: list[int]
    max_length: int
    dropped_share: float  # rows of one prompt and answer longer than max_length: dropped
    examples: list[str]  # the exact text of the first rows
    counts: dict[str, Any]
    turns: list[list[PreviewTurn]] = field(default_factory=list)  # the same rows as turns
    shapes: dict[str, int] = field(default_factory=dict)  # usable rows per shape
    shortened_share: float = 0.0  # conversations longer than max_length: their oldest turns will go


def row_turns(row: Row, cfg: Config) -> list[PreviewTurn]:
    """A row as the turns training sees: the persona, the history, the final answer (and, for preference
    methods, the rejected one); which carry loss follows data.loss_on (preference methods: none in history)."""
    dcfg, sft = cfg.data, cfg.train.method == "sft"
    history = C.with_system(row.messages or ((C.USER, row.prompt),), dcfg.system_prompt)
    out = [PreviewTurn(role, text, role == C.ASSISTANT and sft and dcfg.loss_on == "all_assistant")
           for role, text in history]
    out.append(PreviewTurn(C.ASSISTANT, row.chosen, True))
    if not sft and row.rejected is not None:
        out.append(PreviewTurn("rejected", row.rejected, False))
    return out


def row_text(row: Row, cfg: Config, tokenizer) -> str:
    """The exact text the model reads for a row (its chosen answer)."""
    dcfg = cfg.data
    if not row.messages and not dcfg.system_prompt.strip():
        return format_example(row, dcfg.template, tokenizer, tokenizer.eos_token)
    turns = C.with_system(row.messages or ((C.USER, row.prompt),), dcfg.system_prompt)
    return C.render(turns + [(C.ASSISTANT, row.chosen)], resolve_template(dcfg.template, tokenizer), tokenizer).text


def _text_or_why(row: Row, cfg: Config, tokenizer) -> str:
    try:
        return row_text(row, cfg, tokenizer)
    except DataError as exc:  # a conversation the chat template refuses: training drops it and says why
        return f"(not usable with this template: {exc})"


def preview(cfg: Config, tokenizer, n_examples: int = 3, limit: int = 2000) -> DataPreview:
    """Rows, token lengths against data.max_length, and examples exactly as the model will see them."""
    dcfg = cfg.data
    need_rejected = cfg.train.method != "sft"
    rows, counts = load_rows(dcfg, need_rejected)
    sample = rows[:limit]
    texts = [_text_or_why(r, cfg, tokenizer) for r in sample]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    over = [n > dcfg.max_length for n in lengths]
    n = max(1, len(lengths))
    dropped = sum(1 for o, r in zip(over, sample) if o and not r.messages) / n
    shortened = sum(1 for o, r in zip(over, sample) if o and r.messages) / n
    return DataPreview(len(rows), lengths, dcfg.max_length, dropped, texts[:n_examples], counts.to_dict(),
                       [row_turns(r, cfg) for r in sample[:n_examples]], dict(counts.shapes), shortened)
