"""Sources beyond one file or hub set: a picks collection (`picks:NAME`, the person's preferences from the
Chat screen) and a weighted mix of sources (`data.mix = ["picks:my-picks*4"]`).

The loader (loading.py) asks `is_picks` / `picks_records` for a picks source and `mix_entries` /
`weighted` for a mix; everything about picks as training data is decided here:
- training sees only the older four fifths of a collection (storage.picks.split_by_time); the newest fifth
  is the held-out set the scorecard measures on (`heldout_picks_records`), never trained on;
- a pick becomes a row in the columns the data config names, so the usual row checks apply. A pick with
  earlier turns also carries them as `messages` (system/user/assistant, ending with the user's prompt), the
  conversational preference shape of the data loader, for loaders that read conversations;
- a weight repeats rows (4 = each row four times); a fraction takes a seeded share of the rows once more.
"""

from __future__ import annotations

import math
import random
from typing import Any

from humanlike_tui.config import PICKS_PREFIX, DataConfig, parse_mix_entry
from humanlike_tui.engine.storage import picks as P
from humanlike_tui.errors import DataError, StoreError


def is_picks(source: str) -> bool:
    return source.strip().startswith(PICKS_PREFIX)


def collection_of(source: str) -> str:
    return source.strip()[len(PICKS_PREFIX):]


def _read(source: str, counts: Any) -> list[dict[str, Any]]:
    """Every usable pick; damaged lines are counted in `counts` (the loader's DataCounts) as dropped rows."""
    name = collection_of(source)
    try:
        found = P.read_picks(name)
    except StoreError as exc:  # a missing collection: a data problem here (exit 2)
        raise DataError(f"data.source: {exc}") from None
    if found.damaged and counts is not None:
        counts.rows_read += len(found.damaged)
        counts.dropped["damaged picks line"] += len(found.damaged)
    if not found.rows:
        raise DataError(f"data.source: picks collection {name!r} has no usable picks yet; pick answers on the "
                        "Chat screen first")
    return found.rows


def picks_records(source: str, dcfg: DataConfig, counts: Any = None) -> list[dict[str, Any]]:
    """The trainable picks of `picks:NAME` (the older four fifths) as data rows."""
    trainable, held = P.split_by_time(_read(source, counts))
    if not trainable:
        raise DataError(f"data.source: picks collection {collection_of(source)!r} has {len(held)} pick(s), all "
                        "held out for the scorecard (the newest fifth); pick a few more answers first")
    return [as_record(r, dcfg) for r in trainable]


def heldout_picks_records(source: str, dcfg: DataConfig, counts: Any = None) -> list[dict[str, Any]]:
    """The newest fifth of `picks:NAME` (never trained on) as data rows, for the scorecard."""
    _, held = P.split_by_time(_read(source, counts))
    if not held:
        raise DataError(f"picks collection {collection_of(source)!r} has too few picks to hold any out (at least "
                        "2 are needed: the newest fifth is scored)")
    return [as_record(r, dcfg) for r in held]


def as_record(row: dict[str, Any], dcfg: DataConfig) -> dict[str, Any]:
    """One pick as a data row in the configured columns (and `messages` when it has earlier turns)."""
    record: dict[str, Any] = {dcfg.prompt_column: row["prompt"], dcfg.chosen_column: row["chosen"]}
    if dcfg.rejected_column:
        record[dcfg.rejected_column] = row["rejected"]
    if P.is_multi_turn(row):
        record["messages"] = P.conversation(row)
    return record


def mix_entries(dcfg: DataConfig) -> list[tuple[str, float]]:
    """data.mix as (source, weight) pairs (already validated by the config)."""
    return [parse_mix_entry(entry) for entry in dcfg.mix]


def weighted(rows: list, weight: float, seed: int) -> list:
    """`rows` counted `weight` times: whole copies, then a seeded share of the rows for the fraction."""
    whole = math.floor(weight)
    out = list(rows) * whole
    extra = round(len(rows) * (weight - whole))
    if extra:
        out += random.Random(seed).sample(list(rows), extra)
    return out


def mix_name(dcfg: DataConfig) -> str:
    """'HumanLLMs/Human-Like-DPO-Dataset + picks:my-picks*4': what the data report calls the mix."""
    return " + ".join([dcfg.source.strip()] + [e.strip() for e in dcfg.mix])
