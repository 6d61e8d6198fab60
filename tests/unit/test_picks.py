"""The picks store (issue 23): one JSON-lines file per collection, appends that never leave a half line
and never lose a pick when several processes add at once, damaged lines skipped and reported, the
newest fifth held out by time, the export shape, and picks as a data source (alone and in a weighted mix)."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from humanlike_tui import config as C
from humanlike_tui.engine.data import loading, sources
from humanlike_tui.engine.storage import picks as P
from humanlike_tui.errors import ConfigError, DataError, InputError, StoreError


def make(i: int, *, history=(), when: float | None = None, **kw) -> dict:
    return P.pick_row(prompt=f"prompt {i}", chosen=f"chosen {i}?", rejected=f"rejected {i}.", chosen_by="adapter",
                      rejected_by="base", history=history, adapter="warm", base_model="builtin:tiny-phi",
                      settings={"seed": 0}, when=1767268800.0 + i if when is None else when, **kw)


def test_a_pick_is_saved_as_one_line_with_every_field(home):
    row = make(1, history=[("hi", "hello there")])
    path = P.append_pick("my-picks", row)
    assert path == home / "data" / "picks" / "my-picks.jsonl"
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == row
    assert set(saved) == {"version", "id", "time", "time_iso", "history", "prompt", "chosen", "rejected",
                          "chosen_by", "rejected_by", "adapter", "base_model", "settings"}
    assert saved["history"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    assert saved["time_iso"] == "2026-01-01T12:00:01Z"
    assert P.read_picks("my-picks").rows == [row]


def test_bad_names_and_rows_are_refused_with_the_rule(home):
    for bad in ("", "../up", "a b", "-x", "é"):
        with pytest.raises(InputError, match="picks collection"):
            P.collection_path(bad)
    with pytest.raises(InputError, match="no chosen text"):
        P.append_pick("my-picks", make(1) | {"chosen": "  "})
    with pytest.raises(StoreError, match="no picks collection 'nope'"):
        P.read_picks("nope")
    assert not (home / "data" / "picks" / "my-picks.jsonl").exists()


def test_a_crash_mid_write_loses_only_that_pick_and_the_reader_says_so(home):
    path = P.append_pick("my-picks", make(1))
    whole = (json.dumps(make(2), ensure_ascii=False) + "\n").encode()
    with open(path, "ab") as f:
        f.write(whole[: len(whole) // 2])  # the process died in the middle of this line
    P.append_pick("my-picks", make(3))  # the next pick starts on a line of its own
    found = P.read_picks("my-picks")
    assert [r["prompt"] for r in found.rows] == ["prompt 1", "prompt 3"]
    assert found.damaged == [(2, "not a whole JSON line")]
    assert "skipped 1 damaged line (line 2: not a whole JSON line)" in found.damaged_note()
    assert P.list_collections()[0].damaged == 1
    dcfg = C.load_preset("demo").replace(**{"data.source": "picks:my-picks"}).data
    rows, counts = loading.load_rows(dcfg)  # training counts the cut line as a dropped row
    assert counts.dropped["damaged picks line"] == 1 and len(rows) == 1  # (of 2 picks, the newest is held out)


def _add_many(args) -> None:
    worker, n = args
    for i in range(n):
        P.append_pick("shared", make(worker * 1000 + i))


def test_several_processes_append_to_one_collection_without_losing_a_pick(home):
    workers, each = 4, 25
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(workers) as pool:  # the children inherit HUMANLIKE_TUI_HOME from the monkeypatched env
        pool.map(_add_many, [(w, each) for w in range(workers)])
    found = P.read_picks("shared")
    assert found.damaged == []
    assert sorted(r["prompt"] for r in found.rows) == sorted(
        f"prompt {w * 1000 + i}" for w in range(workers) for i in range(each))
    assert len({r["id"] for r in found.rows}) == workers * each


def test_the_newest_fifth_is_held_out_and_the_boundary_only_moves_forward():
    rows = [make(i, when=100.0 + (i * 7) % 10) for i in range(10)]  # written out of time order
    train, held = P.split_by_time(rows)
    assert len(held) == 2 and len(train) == 8
    assert min(r["time"] for r in held) >= max(r["time"] for r in train)
    assert [P.held_out_count(n) for n in (0, 1, 2, 5, 6, 30)] == [0, 0, 1, 1, 2, 6]
    assert all(n - P.held_out_count(n) <= n + 1 - P.held_out_count(n + 1) for n in range(200))


def test_export_shape_standard_and_conversational():
    single = [make(1), make(2)]
    assert P.export_rows(single) == [{"prompt": "prompt 1", "chosen": "chosen 1?", "rejected": "rejected 1."},
                                     {"prompt": "prompt 2", "chosen": "chosen 2?", "rejected": "rejected 2."}]
    mixed = P.export_rows([make(1), make(2, history=[("hi", "hey")])])
    assert mixed[0] == {"prompt": [{"role": "user", "content": "prompt 1"}],
                        "chosen": [{"role": "assistant", "content": "chosen 1?"}],
                        "rejected": [{"role": "assistant", "content": "rejected 1."}]}
    assert mixed[1]["prompt"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"},
                                  {"role": "user", "content": "prompt 2"}]


def test_picks_as_a_data_source_train_on_the_older_four_fifths(home):
    for i in range(10):
        P.append_pick("my-picks", make(i))
    dcfg = C.load_preset("demo").replace(**{"data.source": "picks:my-picks", "train.method": "dpo"}).data
    rows, counts = loading.load_rows(dcfg, need_rejected=True)
    assert [r.prompt for r in rows] == [f"prompt {i}" for i in range(8)]
    assert rows[0].chosen == "chosen 0?" and rows[0].rejected == "rejected 0."
    held = sources.heldout_picks_records("picks:my-picks", dcfg)
    assert [r["prompt"] for r in held] == ["prompt 8", "prompt 9"]
    with pytest.raises(DataError, match="no picks collection 'other'"):
        loading.load_rows(dcfg.__class__(**{**dcfg.__dict__, "source": "picks:other"}))


def test_a_weighted_mix_counts_the_picks_four_times(home):
    for i in range(5):
        P.append_pick("my-picks", make(i))
    cfg = C.load_preset("demo").replace(**{"data.mix": ["picks:my-picks*4"]})
    rows, counts = loading.load_rows(cfg.data)
    sample, _ = loading.load_rows(cfg.replace(**{"data.mix": []}).data)
    picked = [r for r in rows if r.prompt.startswith("prompt ")]
    assert len(picked) == 4 * 4 and len(rows) == len(sample) + 16  # 4 trainable picks, each 4 times
    assert counts.source == "builtin:sample + picks:my-picks*4"
    half = loading.load_rows(cfg.replace(**{"data.mix": ["picks:my-picks*1.5"]}).data)[0]
    assert len([r for r in half if r.prompt.startswith("prompt ")]) == 6


def test_config_checks_picks_names_and_mix_weights():
    cfg = C.load_preset("demo")
    assert cfg.replace(**{"data.source": "picks:my-picks", "data.mix": ["rows.jsonl", "picks:b*0.5"]})
    for values, needle in (({"data.source": "picks:"}, "needs a name"),
                           ({"data.mix": ["picks:my picks*2"]}, "letters, digits"),
                           ({"data.mix": ["picks:a*0"]}, "must be > 0"),
                           ({"data.mix": ["picks:a*lots"]}, "must be a number"),
                           ({"data.mix": ["*3"]}, "name a source")):
        with pytest.raises(ConfigError, match=needle):
            cfg.replace(**values)


def test_a_pick_with_earlier_turns_becomes_a_conversation_row(home):
    dcfg = C.load_preset("demo").data
    row = make(1, history=[("hi", "hey")], system="Be warm.")
    assert sources.as_record(row, dcfg) == {
        "prompt": "prompt 1", "chosen": "chosen 1?", "rejected": "rejected 1.",
        "messages": [{"role": "system", "content": "Be warm."}, {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "hey"}, {"role": "user", "content": "prompt 1"}]}
    assert sources.as_record(make(2), dcfg) == {"prompt": "prompt 2", "chosen": "chosen 2?", "rejected": "rejected 2."}
    for i in range(5):
        P.append_pick("talks", make(i, history=[("hi", "hey")]))
    rows, counts = loading.load_rows(C.load_preset("demo").replace(**{"data.source": "picks:talks"}).data, True)
    assert len(rows) == 4
    assert rows[0].messages == (("user", "hi"), ("assistant", "hey"), ("user", "prompt 0"))  # a conversation row
    assert rows[0].shape == "preference_messages"
