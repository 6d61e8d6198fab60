"""Token ids, label masks, padding, the prompt-disjoint split and the step's data order (pure functions
of the seed and step, so a resumed run replays the same batches)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from humanlike_tui.config import DataConfig
from humanlike_tui.engine.data.formatting import encode_answer, format_prompt
from humanlike_tui.engine.data.loading import DataCounts, Row, reasons_text
from humanlike_tui.errors import DataError

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One tokenized row. `prompt_ids` is shared by the chosen and rejected continuations."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...] | None
    prompt: str

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids or ()))


def tokenize_rows(rows: list[Row], tokenizer, dcfg: DataConfig, counts: DataCounts,
                  need_rejected: bool) -> list[Example]:
    """Tokenize prompt and answers separately (so the mask boundary is exact); drop and count long rows."""
    out: list[Example] = []
    for row in rows:
        p = tuple(tokenizer(format_prompt(row.prompt, dcfg.template, tokenizer),
                            add_special_tokens=False)["input_ids"])
        c = encode_answer(tokenizer, row.chosen, dcfg.template)
        r = encode_answer(tokenizer, row.rejected, dcfg.template) if row.rejected is not None else None
        if need_rejected and r is None:
            counts.dropped[f"missing {dcfg.rejected_column}"] += 1
            continue
        ex = Example(p, c, r, row.prompt)
        if ex.length > dcfg.max_length:
            counts.dropped["over max_length"] += 1
            continue
        out.append(ex)
    if not out:
        raise DataError(f"data: every usable row is longer than data.max_length = {dcfg.max_length} tokens "
                        f"or was dropped ({reasons_text(counts)}); raise data.max_length")
    counts.rows_kept = len(out)
    lengths = [e.length for e in out]
    counts.tokens_mean = sum(lengths) / len(lengths)
    counts.tokens_max = max(lengths)
    return out


def sft_tensors(ex: Example, train_on_prompt: bool, answer: str = "chosen") -> tuple[list[int], list[int]]:
    """input_ids and labels; the prompt is masked unless train_on_prompt. EOS stays in the labels."""
    ans = ex.chosen_ids if answer == "chosen" else (ex.rejected_ids or ())
    ids = list(ex.prompt_ids) + list(ans)
    labels = (list(ex.prompt_ids) if train_on_prompt else [IGNORE] * len(ex.prompt_ids)) + list(ans)
    return ids, labels


def pad_batch(seqs: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-pad to the longest; padding is masked in labels and attention by position."""
    import torch

    n, width = len(seqs), max(len(ids) for ids, _ in seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for i, (ids, lab) in enumerate(seqs):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        attention[i, : len(ids)] = 1
    return input_ids, labels, attention


def _prompt_key(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def _unit_hash(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_prompt(examples: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic split grouped by prompt: the same prompt never lands in both halves."""
    if eval_fraction <= 0:
        return list(examples), []
    keys = {_prompt_key(e.prompt) for e in examples}
    held = {k for k in keys if _unit_hash(k, seed) < eval_fraction}
    if not held and len(keys) >= 2:
        held = {min(keys, key=lambda k: _unit_hash(k, seed))}  # tiny data: still hold one prompt out
    if held == keys:
        held.discard(max(keys, key=lambda k: _unit_hash(k, seed)))
    train = [e for e in examples if _prompt_key(e.prompt) not in held]
    evals = [e for e in examples if _prompt_key(e.prompt) in held]
    return train, evals


def epoch_order(lengths: list[int], epoch: int, seed: int, group: int) -> list[int]:
    """A shuffled order where neighbours have similar lengths (less padding), deterministic per epoch.

    Shuffle, sort inside windows of 16 steps' worth of samples, cut into step-sized blocks, and
    shuffle the blocks: each step sees similar lengths, the run still sees a random order.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = max(group * 16, group)
    blocks: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        blocks += [chunk[j:j + group] for j in range(0, len(chunk), group)]
    rng.shuffle(blocks)
    return [i for b in blocks for i in b]


def step_indices(step: int, per_step: int, lengths: list[int], seed: int, cache: dict) -> list[int]:
    """The sample indices of optimizer step `step` (0-based) in an endless stream of epochs.

    A pure function of (step, data, seed): resuming at step k needs no saved data position.
    """
    n = len(lengths)
    out = []
    for pos in range(step * per_step, (step + 1) * per_step):
        epoch, i = divmod(pos, n)
        if epoch not in cache:
            cache.clear()  # keep one epoch's order in memory
            cache[epoch] = epoch_order(lengths, epoch, seed, per_step)
        out.append(cache[epoch][i])
    return out
