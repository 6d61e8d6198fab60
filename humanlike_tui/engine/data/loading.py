"""Reading rows: local .jsonl/.json/.csv/.parquet files, the builtin sample, or a hub data set;
every row checked, bad ones dropped and counted with the reason."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from humanlike_tui.config import DataConfig
from humanlike_tui.engine.data import conversation as C
from humanlike_tui.engine.data import sources
from humanlike_tui.errors import DataError

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# The shipped samples (config.BUILTIN_DATA): prompt/chosen/rejected pairs, and multi-turn conversations.
BUILTIN_FILES = {"builtin:sample": "sample.jsonl", "builtin:chat-sample": "chat_sample.jsonl"}


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
    shapes: Counter = field(default_factory=Counter)  # usable rows per shape (prompt_chosen, messages, ...)
    shortened: int = 0  # conversations longer than data.max_length that kept their most recent turns

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
                "dropped": dict(sorted(self.dropped.items())), "train_rows": self.train_rows,
                "eval_rows": self.eval_rows, "tokens_mean": round(self.tokens_mean, 1),
                "tokens_max": self.tokens_max, "shapes": dict(sorted(self.shapes.items())),
                "shortened": self.shortened}


@dataclass(frozen=True)
class Row:
    prompt: str  # the (last) user message
    chosen: str
    rejected: str | None
    # A conversation's turns before the final answer, (role, text) from the system message or the first user
    # turn to the last user turn; empty for a prompt/chosen row (see conversation.py).
    messages: tuple[tuple[str, str], ...] = ()
    shape: str = "prompt_chosen"


def load_records(dcfg: DataConfig, counts: DataCounts) -> Iterable[Any]:
    """Raw records from the builtin sample, a local file, or the hub. Undecodable lines are counted."""
    source = dcfg.source.strip()
    if sources.is_picks(source):  # the Chat screen's picks: the older four fifths (sources.py)
        return sources.picks_records(source, dcfg, counts)
    if source in BUILTIN_FILES:
        text = resources.files("humanlike_tui.data").joinpath(BUILTIN_FILES[source]).read_text(encoding="utf-8")
        return list(_jsonl_records(text.splitlines(), counts))
    path = Path(source).expanduser()
    if path.suffix.lower() in LOCAL_SUFFIXES or _exists(path):
        return _local_records(path, dcfg, counts)
    return _hub_records(source, dcfg)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system is no local file
        return False


def _jsonl_records(lines: Iterable[str], counts: DataCounts) -> Iterable[Any]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError:
            counts.rows_read += 1
            counts.dropped["malformed JSON line"] += 1
        except RecursionError:  # '[[[[...' thousands deep: the decoder gives up, the line is skipped
            counts.rows_read += 1
            counts.dropped["JSON nested too deep"] += 1


def _local_records(path: Path, dcfg: DataConfig, counts: DataCounts) -> list[Any]:
    try:
        return _read_local(path, dcfg, counts)
    except OSError as exc:  # permissions, a name too long for the file system, a vanished disk ...
        raise DataError(f"data.source: cannot read {_short(path)} ({exc.strerror or type(exc).__name__}); "
                        "check that the file exists and is readable by you") from None


def _only_whitespace(path: Path, size: int) -> bool:
    """A file of spaces and newlines (a small one: a real data file is never blank and large)."""
    try:
        return size <= 1 << 20 and not path.read_bytes().strip()
    except OSError:
        return False  # the reader below says what is wrong


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]}"


def _read_local(path: Path, dcfg: DataConfig, counts: DataCounts) -> list[Any]:
    if not path.exists():
        raise DataError(f"data.source: file {path} not found; check the path, or use builtin:sample")
    if path.is_dir():
        raise DataError(f"data.source: {path} is a folder; name a .jsonl, .json, .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(f"data.source: {path.name} has an unsupported type; use .jsonl, .json, .csv or .parquet")
    size = path.stat().st_size
    if size == 0 or _only_whitespace(path, size):
        raise DataError(f"data.source: {path} is empty{' (only blank space)' if size else ''}; "
                        f"it needs rows with {dcfg.prompt_column!r} and {dcfg.chosen_column!r} fields")
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
        except RecursionError:
            raise DataError(f"data.source: {path} is nested too deeply to read as JSON; "
                            "rows must be objects with text fields") from None
        if isinstance(data, dict):  # {"train": [...]} or a columnar {"prompt": [...], ...}
            data = data.get(dcfg.split, data)
            if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
                # Columns of unequal length: the rows past a short column lack that field and are
                # dropped and counted ('missing chosen'), never silently cut to the shortest column.
                keys = list(data)
                data = [dict(zip(keys, vals)) for vals in itertools.zip_longest(*data.values())]
                for row in data:
                    for key in [k for k, v in row.items() if v is None]:
                        del row[key]
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
        shape = C.shape_of(rec, dcfg.format, dcfg.prompt_column, dcfg.chosen_column)
        if shape != "prompt_chosen":
            seen_any_column |= any(k in rec for k in CONVERSATION_FIELDS + (dcfg.prompt_column,))
            row, reason = conversation_row(rec, shape, dcfg, need_rejected)
        else:
            seen_any_column |= any(c in rec for c in columns)
            reason = _row_problem(rec, columns)
            rejected = rec.get(dcfg.rejected_column) if dcfg.rejected_column else None
            row = None if reason else Row(
                rec[dcfg.prompt_column], rec[dcfg.chosen_column],
                rejected if isinstance(rejected, str) and rejected.strip() and C.encodable(rejected) else None)
        if row is None:
            counts.dropped[reason] += 1
            continue
        counts.shapes[shape] += 1
        rows.append(row)
        if dcfg.max_rows and len(rows) >= dcfg.max_rows:
            break
    unreadable = sum(counts.dropped[r] for r in READ_PROBLEMS)
    if counts.rows_read == 0 or (not rows and not seen_any_column and unreadable < counts.rows_read):
        raise DataError(f"data.source: no rows with the columns {', '.join(map(repr, columns))} in "
                        f"{counts.source}; set data.prompt_column / chosen_column / rejected_column to the "
                        "names your data uses, or give conversations as 'messages' (role/content) or "
                        "'conversations' (from/value) lists")
    if not rows:
        fixes = [FIXES[r] for r, _ in counts.dropped.most_common() if r in FIXES]
        fix = "; ".join(dict.fromkeys(fixes + [f"every row needs non-empty text fields {', '.join(columns)}"]))
        raise DataError(f"data.source: none of the {counts.rows_read} rows in {counts.source} is usable "
                        f"({reasons_text(counts)}); {fix}")
    return rows


# Problems found before a row's fields can be read, and the fix for each kind of dropped row.
READ_PROBLEMS = ("not UTF-8", "malformed JSON line", "JSON nested too deep", "not an object")


FIXES = {"not UTF-8": "save the file as UTF-8 text",
         "malformed JSON line": "each line of a .jsonl file must be one JSON object, e.g. "
                                '{"prompt": "...", "chosen": "...", "rejected": "..."}',
         "JSON nested too deep": "rows must be flat JSON objects with text fields",
         "not an object": "each row must be a JSON object with named fields",
         "over max_length": f"rows longer than {MAX_FIELD_CHARS:,} characters are dropped; shorten or split them",
         "unknown role": "roles are system, user or assistant (ShareGPT: system, human or gpt)",
         "two user turns in a row": "user and assistant take turns in a conversation",
         "two assistant turns in a row": "user and assistant take turns in a conversation",
         "conversation ends on the user": "a training conversation ends on an assistant answer",
         "empty turn": "every turn needs text"}

# The fields that hold a conversation, in any shape.
CONVERSATION_FIELDS = ("messages", "conversations")


def conversation_row(rec: dict, shape: str, dcfg: DataConfig, need_rejected: bool) -> tuple[Row | None, str]:
    """A row from a conversation record (see conversation.py for the shapes), or None and the reason."""
    if shape == "sharegpt":
        key, role_key, content_key = "conversations", "from", "value"
    else:
        key, role_key, content_key = "messages", "role", "content"
    if shape == "preference_messages" and key not in rec and isinstance(rec.get(dcfg.prompt_column), list):
        key = dcfg.prompt_column  # TRL's conversational preference rows: prompt/chosen/rejected as messages
    if key not in rec:
        return None, f"missing {key}"
    turns, problem = C.read_turns(rec[key], role_key, content_key, MAX_FIELD_CHARS)
    if problem:
        return None, problem
    if shape == "preference_messages":
        problem = C.order_problem(turns, C.USER)
        chosen, why = C.final_answer(rec.get(dcfg.chosen_column), MAX_FIELD_CHARS)
        if problem or chosen is None:
            return None, problem or (f"missing {dcfg.chosen_column}" if dcfg.chosen_column not in rec else why)
        rejected = None
        if dcfg.rejected_column and dcfg.rejected_column in rec:
            rejected, why = C.final_answer(rec[dcfg.rejected_column], MAX_FIELD_CHARS)
            if rejected is None:
                return None, why
        history = turns
    else:
        problem = C.order_problem(turns, C.ASSISTANT)
        if problem:
            return None, problem
        history, chosen, rejected = turns[:-1], turns[-1][1], None
    if need_rejected and rejected is None:
        return None, f"missing {dcfg.rejected_column}"
    return Row(history[-1][1], chosen, rejected, tuple(history), shape), ""


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
        if not C.encodable(v):
            return f"{c} not valid Unicode"
    return None


def shapes_text(counts: DataCounts) -> str:
    """'rows by shape: messages 40, sharegpt 2; 3 conversations shortened to fit data.max_length ...'."""
    text = "rows by shape: " + (", ".join(f"{shape} {n:,}" for shape, n in sorted(counts.shapes.items())) or "none")
    if counts.shortened:
        text += (f"; {counts.shortened:,} conversation{'s' if counts.shortened != 1 else ''} shortened to fit "
                 "data.max_length (their oldest turns left out, the system prompt kept)")
    return text


def reasons_text(counts: DataCounts) -> str:
    return ", ".join(f"{n} {why}" for why, n in counts.dropped.most_common()) or "no reason recorded"


def load_rows(dcfg: DataConfig, need_rejected: bool = False) -> tuple[list[Row], DataCounts]:
    if dcfg.mix:
        return mixed_rows(dcfg, need_rejected)
    counts = DataCounts(source=dcfg.source)
    rows = check_rows(load_records(dcfg, counts), dcfg, counts, need_rejected)
    return rows, counts


def mixed_rows(dcfg: DataConfig, need_rejected: bool = False) -> tuple[list[Row], DataCounts]:
    """data.source plus each data.mix source, each checked on its own and counted its weight times."""
    counts = DataCounts(source=sources.mix_name(dcfg))
    rows: list[Row] = []
    for i, (source, weight) in enumerate([(dcfg.source, 1.0)] + sources.mix_entries(dcfg)):
        part, part_counts = load_rows(dataclasses.replace(dcfg, source=source, mix=()), need_rejected)
        counts.rows_read += part_counts.rows_read
        counts.dropped.update(part_counts.dropped)
        rows += sources.weighted(part, weight, seed=i)
    return rows, counts
