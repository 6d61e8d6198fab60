"""A quick look at the configured data as the model will see it (the Config screen's preview)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from humanlike_tui.config import Config
from humanlike_tui.engine.data.formatting import format_example
from humanlike_tui.engine.data.loading import load_rows


@dataclass(frozen=True)
class DataPreview:
    rows: int
    lengths: list[int]
    max_length: int
    dropped_share: float
    examples: list[str]
    counts: dict[str, Any]


def preview(cfg: Config, n_examples: int = 3, limit: int = 2000) -> DataPreview:
    """Rows, token lengths against data.max_length, and examples exactly as the model will see them."""
    from humanlike_tui.engine.models.loading import load_tokenizer, resolve_model_path

    dcfg = cfg.data
    need_rejected = cfg.train.method != "sft"
    rows, counts = load_rows(dcfg, need_rejected)
    tokenizer = load_tokenizer(cfg, resolve_model_path(cfg))
    sample = rows[:limit]
    lengths = []
    for row in sample:
        text = format_example(row, dcfg.template, tokenizer, tokenizer.eos_token)
        lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    over = sum(1 for n in lengths if n > dcfg.max_length)
    examples = [format_example(r, dcfg.template, tokenizer, tokenizer.eos_token) for r in sample[:n_examples]]
    return DataPreview(len(rows), lengths, dcfg.max_length, over / max(1, len(lengths)), examples, counts.to_dict())
