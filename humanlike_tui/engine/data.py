"""Load, check, format, tokenize, mask and split the prompt/chosen/rejected rows.

Pure functions where possible. Bad rows are skipped and counted, never a crash; rows over
`data.max_length` are dropped and counted; the split is grouped by prompt, so no prompt is in both
train and eval; every answer ends with EOS and the EOS is learned (padding is masked by position,
never by token id: the original recipe masked pad = EOS and its model never learned to stop).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from humanlike_tui.config import Config, DataConfig
from humanlike_tui.errors import DataError

IGNORE = -100
INSTRUCT_PROMPT = "### Instruct:\n{prompt}\n\n### Output:\n"
INSTRUCT_END = "\n### End"
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MAX_FIELD_CHARS = 200_000  # a single gigantic field is dropped, not tokenized for minutes


@dataclass
class DataCounts:
    source: str
    rows_read: int = 0
    dropped: Counter = field(default_factory=Counter)
    rows_kept: int = 0
    train_rows: int = 0
    eval_rows: int = 0
    tokens_mean: float = 0.0
    tokens_max: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
                "dropped": dict(sorted(self.dropped.items())), "train_rows": self.train_rows,
                "eval_rows": self.eval_rows, "tokens_mean": round(self.tokens_mean, 1),
                "tokens_max": self.tokens_max}


@dataclass(frozen=True)
class Row:
    prompt: str
    chosen: str
    rejected: str | None


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


# --- reading ---------------------------------------------------------------------------------------

def load_records(dcfg: DataConfig, counts: DataCounts) -> Iterable[Any]:
    """Raw records from the builtin sample, a local file, or the hub. Undecodable lines are counted."""
    source = dcfg.source.strip()
    if source == "builtin:sample":
        text = resources.files("humanlike_tui.data").joinpath("sample.jsonl").read_text(encoding="utf-8")
        return list(_jsonl_records(text.splitlines(), counts))
    path = Path(source).expanduser()
    if path.suffix.lower() in LOCAL_SUFFIXES or path.exists():
        return _local_records(path, dcfg, counts)
    return _hub_records(source, dcfg)


def _jsonl_records(lines: Iterable[str], counts: DataCounts) -> Iterable[Any]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError:
            counts.rows_read += 1
            counts.dropped["malformed JSON line"] += 1


def _local_records(path: Path, dcfg: DataConfig, counts: DataCounts) -> list[Any]:
    if not path.exists():
        raise DataError(f"data.source: file {path} not found; check the path, or use builtin:sample")
    if path.is_dir():
        raise DataError(f"data.source: {path} is a folder; name a .jsonl, .json, .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(f"data.source: {path.name} has an unsupported type; use .jsonl, .json, .csv or .parquet")
    if path.stat().st_size == 0:
        raise DataError(f"data.source: {path} is empty; it needs rows with "
                        f"{dcfg.prompt_column!r} and {dcfg.chosen_column!r} fields")
    if suffix == ".jsonl":
        return list(_jsonl_records(_text_lines(path, counts), counts))
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"data.source: {path} is not UTF-8 text; save it as UTF-8") from None
        except ValueError as exc:
            raise DataError(f"data.source: {path} is not valid JSON ({exc}); for one object per line "
                            "use a .jsonl file") from None
        if isinstance(data, dict):  # {"train": [...]} or a columnar {"prompt": [...], ...}
            data = data.get(dcfg.split, data)
            if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
                keys = list(data)
                data = [dict(zip(keys, vals)) for vals in zip(*data.values())]
        if not isinstance(data, list):
            raise DataError(f"data.source: {path} must hold a list of rows")
        return data
    return _tabular_records(path, suffix)


def _text_lines(path: Path, counts: DataCounts) -> Iterable[str]:
    """Lines of a text file; a line that is not UTF-8 is skipped and counted, not fatal."""
    with open(path, "rb") as f:
        for raw in f:
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                counts.rows_read += 1
                counts.dropped["not UTF-8"] += 1


def _tabular_records(path: Path, suffix: str) -> list[Any]:
    try:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        table = pq.read_table(path) if suffix == ".parquet" else pcsv.read_csv(path)
        return table.to_pylist()  # inside the try: a CSV that is not UTF-8 fails only here
    except UnicodeDecodeError:
        raise DataError(f"data.source: {path} is not UTF-8 text; save it as UTF-8") from None
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise DataError(f"data.source: cannot read {path.name} ({type(exc).__name__}: {exc})") from None


def _hub_records(name: str, dcfg: DataConfig) -> Any:
    from humanlike_tui.engine.hub import fail_fast_if_unreachable

    fail_fast_if_unreachable(name, "dataset", lambda why: _hub_data_error(name, why))
    try:
        import datasets

        return datasets.load_dataset(name, split=dcfg.split)
    except Exception as exc:  # network, auth, missing split: all end the same way for the user
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise _hub_data_error(name, first) from None


def _hub_data_error(name: str, why: str) -> DataError:
    return DataError(
        f"data.source: could not load {name!r} from the Hugging Face Hub ({why}). Check the name and "
        "your internet connection, or use a local file (data.source = 'rows.jsonl' with prompt/chosen/"
        "rejected fields) or the offline sample (data.source = 'builtin:sample').")


def check_rows(records: Iterable[Any], dcfg: DataConfig, counts: DataCounts, need_rejected: bool) -> list[Row]:
    """Keep rows whose fields are non-empty strings; count every skipped row by its reason."""
    rows: list[Row] = []
    columns = [dcfg.prompt_column, dcfg.chosen_column] + ([dcfg.rejected_column] if need_rejected else [])
    seen_any_column = False
    for rec in records:
        counts.rows_read += 1
        if not isinstance(rec, dict):
            counts.dropped["not an object"] += 1
            continue
        seen_any_column |= any(c in rec for c in columns)
        reason = _row_problem(rec, columns)
        if reason:
            counts.dropped[reason] += 1
            continue
        rejected = rec.get(dcfg.rejected_column) if dcfg.rejected_column else None
        rows.append(Row(rec[dcfg.prompt_column], rec[dcfg.chosen_column],
                        rejected if isinstance(rejected, str) and rejected.strip() and _encodable(rejected) else None))
        if dcfg.max_rows and len(rows) >= dcfg.max_rows:
            break
    unreadable = sum(counts.dropped[r] for r in READ_PROBLEMS)
    if counts.rows_read == 0 or (not rows and not seen_any_column and unreadable < counts.rows_read):
        raise DataError(f"data.source: no rows with the columns {', '.join(map(repr, columns))} in "
                        f"{counts.source}; set data.prompt_column / chosen_column / rejected_column to the "
                        "names your data uses")
    if not rows:
        fixes = [FIXES[r] for r, _ in counts.dropped.most_common() if r in FIXES]
        fix = "; ".join(dict.fromkeys(fixes + [f"every row needs non-empty text fields {', '.join(columns)}"]))
        raise DataError(f"data.source: none of the {counts.rows_read} rows in {counts.source} is usable "
                        f"({_reasons(counts)}); {fix}")
    return rows


# Problems found before a row's fields can be read, and the fix for each kind of dropped row.
READ_PROBLEMS = ("not UTF-8", "malformed JSON line", "not an object")
FIXES = {"not UTF-8": "save the file as UTF-8 text",
         "malformed JSON line": "each line of a .jsonl file must be one JSON object, e.g. "
                                '{"prompt": "...", "chosen": "...", "rejected": "..."}',
         "not an object": "each row must be a JSON object with named fields",
         "over max_length": f"rows longer than {MAX_FIELD_CHARS:,} characters are dropped; shorten or split them"}


def _row_problem(rec: dict, columns: list[str]) -> str | None:
    for c in columns:
        v = rec.get(c)
        if v is None:
            return f"missing {c}"
        if not isinstance(v, str):
            return f"{c} not a string"
        if not v.strip():
            return f"empty {c}"
        if len(v) > MAX_FIELD_CHARS:
            return "over max_length"
        if not _encodable(v):
            return f"{c} not valid Unicode"
    return None


def _encodable(text: str) -> bool:
    """False for text the tokenizer cannot take: a JSON escape like "\\ud800" decodes to a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reasons(counts: DataCounts) -> str:
    return ", ".join(f"{n} {why}" for why, n in counts.dropped.most_common()) or "no reason recorded"


def load_rows(dcfg: DataConfig, need_rejected: bool = False) -> tuple[list[Row], DataCounts]:
    counts = DataCounts(source=dcfg.source)
    rows = check_rows(load_records(dcfg, counts), dcfg, counts, need_rejected)
    return rows, counts


# --- formatting and tokenizing ------------------------------------------------------------------

def format_prompt(prompt: str, template: str, tokenizer=None) -> str:
    """The text the model sees before its answer, exactly as in training and in chat."""
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise DataError("data.template: 'chat' needs a model with a chat template; this one has none, "
                            "use data.template = 'instruct'")
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt.strip()}], tokenize=False,
                                             add_generation_prompt=True)
    return INSTRUCT_PROMPT.format(prompt=prompt.strip())


def answer_suffix(template: str) -> str:
    return INSTRUCT_END if template == "instruct" else ""


def format_example(row: Row, template: str, tokenizer=None, eos: str = "<|endoftext|>") -> str:
    """The whole training text for a row, for previews."""
    return format_prompt(row.prompt, template, tokenizer) + row.chosen.strip() + answer_suffix(template) + eos


def encode_answer(tokenizer, text: str, template: str) -> tuple[int, ...]:
    ids = tokenizer(text.strip() + answer_suffix(template), add_special_tokens=False)["input_ids"]
    return tuple(ids) + (tokenizer.eos_token_id,)


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
                        f"or was dropped ({_reasons(counts)}); raise data.max_length")
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


# --- split and order ---------------------------------------------------------------------------

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


# --- preview for the Config screen ------------------------------------------------------------

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
    from humanlike_tui.engine.model import load_tokenizer, resolve_model_path

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
