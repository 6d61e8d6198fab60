"""Token ids, label masks, padding, the prompt-disjoint split and the step's data order (pure functions
of the seed and step, so a resumed run replays the same batches)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from humanlike_tui.config import DataConfig
from humanlike_tui.engine.data import conversation as C
from humanlike_tui.engine.data.formatting import encode_answer, format_prompt, resolve_template
from humanlike_tui.engine.data.loading import DataCounts, Row, reasons_text
from humanlike_tui.errors import DataError

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One tokenized row. `prompt_ids` is shared by the chosen and rejected continuations.

    For a conversation, `prompt_ids` is everything before the final answer and `prompt_labels` (when not
    None) the labels of those tokens: the earlier assistant turns with data.loss_on = "all_assistant"."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...] | None
    prompt: str
    prompt_labels: tuple[int, ...] | None = None
    group: str = ""  # what the split keeps together (the conversation's user turns); empty = the prompt

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids or ()))

    @property
    def history_targets(self) -> int:
        """Tokens of the earlier assistant turns that carry loss."""
        return sum(1 for t in self.prompt_labels or () if t != IGNORE)


def tokenize_rows(rows: list[Row], tokenizer, dcfg: DataConfig, counts: DataCounts,
                  need_rejected: bool) -> list[Example]:
    """Tokenize prompt and answers separately (so the mask boundary is exact); drop and count long rows."""
    out: list[Example] = []
    for row in rows:
        if row.messages or dcfg.system_prompt.strip():
            ex = conversation_example(row, tokenizer, dcfg, counts, need_rejected)
            if ex is not None:
                out.append(ex)
            continue
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
    """input_ids and labels; the prompt is masked unless train_on_prompt (a conversation's earlier
    assistant turns keep their labels). EOS stays in the labels."""
    ans = ex.chosen_ids if answer == "chosen" else (ex.rejected_ids or ())
    ids = list(ex.prompt_ids) + list(ans)
    if train_on_prompt:
        head = list(ex.prompt_ids)
    else:
        head = list(ex.prompt_labels) if ex.prompt_labels is not None else [IGNORE] * len(ex.prompt_ids)
    return ids, head + list(ans)


def conversation_example(row: Row, tokenizer, dcfg: DataConfig, counts: DataCounts,
                         need_rejected: bool) -> Example | None:
    """A conversation (or a row with a persona) as an Example; too long: the oldest exchanges go (the system
    prompt stays) until it fits, counted as shortened; still too long or unrenderable: dropped and counted."""
    if need_rejected and row.rejected is None:
        counts.dropped[f"missing {dcfg.rejected_column}"] += 1
        return None
    template = resolve_template(dcfg.template, tokenizer)
    if template == "chat" and not getattr(tokenizer, "chat_template", None):
        format_prompt(row.prompt, template, tokenizer)  # raises the clear 'needs a chat template' error
    history = C.with_system(row.messages or ((C.USER, row.prompt),), dcfg.system_prompt)
    make = _preference_example if need_rejected else _sft_example
    try:
        ex = make(history, row, tokenizer, template, dcfg)
        dropped_turns = 0
        while ex.length > dcfg.max_length and _exchanges(history) > 1:
            history = _drop_oldest_exchange(history)
            dropped_turns += 1
            ex = make(history, row, tokenizer, template, dcfg)
    except DataError:
        counts.dropped["template could not render it"] += 1
        return None
    if ex.length > dcfg.max_length:
        counts.dropped["over max_length"] += 1
        return None
    counts.shortened += dropped_turns > 0
    return ex


def _exchanges(history: list[C.Turn]) -> int:
    return sum(1 for role, _ in history if role == C.USER)


def _drop_oldest_exchange(history: list[C.Turn]) -> list[C.Turn]:
    """The turns without the oldest user turn and the answer to it (a system message stays first)."""
    head = history[:1] if history and history[0][0] == C.SYSTEM else []
    body = history[len(head):]
    return head + body[2:]


def _group(history: list[C.Turn]) -> str:
    return "\n".join(text for role, text in history if role == C.USER)


def _sft_example(history: list[C.Turn], row: Row, tokenizer, template: str, dcfg: DataConfig) -> Example:
    """The whole conversation tokenized as one text (as transformers' apply_chat_template does); the final
    answer is `chosen_ids`, earlier assistant turns carry labels in `prompt_labels` with loss_on all_assistant."""
    rendered = C.render(history + [(C.ASSISTANT, row.chosen)], template, tokenizer)
    enc = C.encode(rendered, tokenizer, template)
    last = max(enc.turn_of)
    if last < 0:
        raise DataError("no assistant tokens")
    start, end = enc.span(last)
    labels = tuple(i if k >= 0 and dcfg.loss_on == "all_assistant" else IGNORE
                   for i, k in zip(enc.ids[:start], enc.turn_of[:start]))
    return Example(enc.ids[:start], enc.ids[start:end], None, row.prompt,
                   labels if any(t != IGNORE for t in labels) else None, _group(history))


def _preference_example(history: list[C.Turn], row: Row, tokenizer, template: str, dcfg: DataConfig) -> Example:
    """As TRL's DPO: the history up to the answer prompt, then each final answer, tokenized apart (only the
    final answers are compared)."""
    prompt = C.render(history, template, tokenizer, generation_prompt=True).text
    p = tuple(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    c = encode_answer(tokenizer, row.chosen, template)
    r = encode_answer(tokenizer, row.rejected, template) if row.rejected is not None else None
    return Example(p, c, r, row.prompt, None, _group(history))


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
    keys = {_prompt_key(e.group or e.prompt) for e in examples}
    held = {k for k in keys if _unit_hash(k, seed) < eval_fraction}
    if not held and len(keys) >= 2:
        held = {min(keys, key=lambda k: _unit_hash(k, seed))}  # tiny data: still hold one prompt out
    if held == keys:
        held.discard(max(keys, key=lambda k: _unit_hash(k, seed)))
    train = [e for e in examples if _prompt_key(e.group or e.prompt) not in held]
    evals = [e for e in examples if _prompt_key(e.group or e.prompt) in held]
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
