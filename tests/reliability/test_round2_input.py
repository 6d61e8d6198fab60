"""Reliability round 2, bad input: numbers that are not numbers (NaN, infinity, huge), data files that
break the reader (nesting 200k deep, unreadable, names past the file-system limit, unequal columns).
Every case ends at validation or at the data check: exit 2, a message naming the key or the file, no
traceback and no run folder left behind."""

from __future__ import annotations

import dataclasses
import json
import math
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_helpers import FAST

from humanlike_tui import cli
from humanlike_tui import config as C
from humanlike_tui.engine import data as D
from humanlike_tui.engine.data import loading as data_loading
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import ConfigError, DataError
from humanlike_tui.engine.storage import files


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def no_runs() -> bool:
    return not S.runs_dir().exists() or not any(S.runs_dir().iterdir())


def assert_exit_2(capsys, argv, *needles: str) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    assert no_runs(), [p.name for p in S.runs_dir().iterdir()]
    return err


# --- 3. NaN, infinity and huge numbers ----------------------------------------------------------------

NUMERIC_KEYS = [(f"{section}.{f.name}", typing.get_type_hints(cls)[f.name], f.metadata)
                for section, cls in C.SECTIONS.items() for f in dataclasses.fields(cls)
                if typing.get_type_hints(cls)[f.name] in (int, float)]
NOT_NUMBERS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 10**14, 10**30, -(10**30), 2**63 - 1]


def test_every_numeric_key_has_both_limits():
    # A key without an upper limit let a huge value through to torch (train.seed=1e14 overflowed
    # torch.manual_seed after the model had loaded).
    assert len(NUMERIC_KEYS) > 25
    unbounded = [key for key, _, m in NUMERIC_KEYS if m.get("min") is None or m.get("max") is None]
    assert unbounded == []


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(NUMERIC_KEYS),
       st.one_of(st.sampled_from(NOT_NUMBERS), st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(min_value=-(2**63), max_value=2**63 - 1)))
def test_nan_inf_and_huge_numbers_fail_at_validation_naming_the_key(key, value):
    path, t, meta = key
    section, name = path.split(".")
    cfg, problems = C.validate_dict({section: {name: value}})
    own = [p for p in problems if p.startswith(f"{path}:")]
    numeric = isinstance(value, int) or math.isfinite(value)
    in_range = numeric and meta["max"] >= value and (value > meta["min"] if meta["min_exclusive"]
                                                     else value >= meta["min"])
    if t is int and isinstance(value, float):  # a float for an integer key: a type error, also at validation
        assert own and "must be an integer" in own[0]
    elif in_range:
        assert not own, own
    else:
        assert own, (path, value, problems)
        if not numeric:
            assert "must be a finite number in" in own[0] and str(value) in own[0]
    if cfg is not None:
        got = cfg.get(path)
        assert math.isfinite(got) and got <= meta["max"]


@pytest.mark.parametrize("setting, needle", [
    ("train.learning_rate=nan", "train.learning_rate: must be a finite number in (0, 1], got nan"),
    ("lora.alpha=nan", "lora.alpha: must be a finite number in (0, 100000], got nan"),
    ("lora.dropout=nan", "lora.dropout: must be a finite number in [0, 0.9], got nan"),
    ("train.learning_rate=inf", "train.learning_rate: must be a finite number in (0, 1], got inf"),
    ("train.seed=100000000000000", "train.seed: must be <= 4294967295, got 100000000000000"),
])
def test_train_refuses_nan_and_huge_values_before_anything_loads(capsys, setting, needle):
    assert_exit_2(capsys, ["train", *FAST, "--set", setting], needle)


def fake_finished_run(name: str = "done") -> S.Run:
    """A run folder with a config and an adapter marked complete: enough for chat's checks before loading."""
    run = S.create_run(C.load_preset("demo"), name)
    run.adapter_dir.mkdir()
    (run.adapter_dir / files.COMPLETE).write_text("{}")
    run.update_meta(status="finished")
    return run


@pytest.mark.parametrize("flag, value, needle", [
    ("--temperature", "nan", "generate.temperature: must be a finite number in [0, 5], got nan"),
    ("--top-p", "nan", "generate.top_p: must be a finite number in (0, 1], got nan"),
    ("--repetition-penalty", "inf", "generate.repetition_penalty: must be a finite number in [1, 3], got inf"),
    ("--seed", str(10**14), "generate.seed: must be <= 4294967295"),
])
def test_chat_refuses_nan_settings_before_the_model_loads(capsys, flag, value, needle):
    fake_finished_run()
    code, out, err = run_cli(capsys, "chat", "--adapter", "done", "--prompt", "hi", "--json", flag, value)
    assert code == 2 and needle in err, err
    assert out == "" and "NaN" not in out  # was: "top_p": NaN, which is not JSON


# --- 4. data and names that broke the reader ----------------------------------------------------------

GOOD = [{"prompt": f"question {i}?", "chosen": f"answer {i}!", "rejected": f"Answer {i}."} for i in range(6)]


def write_jsonl(path, rows, extra_lines=()):
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_line_nested_200k_deep_is_skipped_and_counted(tmp_path, capsys):
    deep = "[" * 200_000 + "]" * 200_000
    path = write_jsonl(tmp_path / "deep.jsonl", GOOD, [deep, '{"prompt": ' * 100_000])
    rows, counts = D.load_rows(C.DataConfig(source=str(path)))
    assert len(rows) == 6 and counts.rows_read == 8
    assert counts.dropped["JSON nested too deep"] == 2, counts.dropped  # was: RecursionError killed the run
    # A .json file nested that deep is refused with a message, exit 2 (no run folder left).
    nested = tmp_path / "deep.json"
    nested.write_text(deep, encoding="utf-8")
    assert_exit_2(capsys, ["train", *FAST, "--set", f"data.source={nested}"], "nested too deeply")


def deny_reading(monkeypatch, path) -> None:
    """Make `path` unreadable. Root reads a chmod-000 file anyway, so there the open itself is refused."""
    import builtins
    import errno
    import io
    import os

    path.chmod(0)
    if os.geteuid() != 0:
        return
    real = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_an_unreadable_data_file_is_exit_2_naming_it(tmp_path, capsys, monkeypatch, suffix):
    path = write_jsonl(tmp_path / f"locked{suffix}", GOOD)
    if suffix == ".json":
        path.write_text(json.dumps(GOOD), encoding="utf-8")
    deny_reading(monkeypatch, path)
    assert_exit_2(capsys, ["train", *FAST, "--set", f"data.source={path}"],
                  f"data.source: cannot read {path} (Permission denied)")


LONG = "x" * 300


@pytest.mark.parametrize("argv, needle", [
    (["train", *FAST, "--set", f"model.name={LONG}"], "model.name: too long (300 bytes"),
    (["train", *FAST, "--set", f"model.name=/tmp/{LONG}"], "model.name: too long"),
    (["train", *FAST, "--set", f"data.source=/tmp/{LONG}.jsonl"], "data.source: too long"),
    (["hw", "--no-bnb-check", "--preset", "demo", "--set", f"model.name=/tmp/{LONG}"], "model.name: too long"),
    (["hw", "--no-bnb-check", "--preset", "demo", "--set", f"data.source={LONG}.jsonl"], "data.source: too long"),
])
def test_names_past_the_file_system_limit_are_exit_2(capsys, argv, needle):
    assert_exit_2(capsys, argv, needle, "at most 255 bytes")


def test_eval_data_problems_are_exit_2_before_the_model_loads(tmp_path, capsys, monkeypatch):
    fake_finished_run()  # no adapter weights: had eval loaded the model, it would fail differently
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    locked = write_jsonl(tmp_path / "locked.jsonl", GOOD)
    deny_reading(monkeypatch, locked)
    for data, needle in ((f"/tmp/{LONG}.jsonl", "data.source: too long"), (str(deep), "nested too deeply"),
                         (str(locked), "(Permission denied)")):
        code, out, err = run_cli(capsys, "eval", "--adapter", "done", "--data", data, "--quiet")
        assert code == 2 and needle in err, err
        assert "Traceback" not in err


def test_columnar_json_with_unequal_columns_counts_the_rows_it_drops(tmp_path):
    path = tmp_path / "columns.json"
    path.write_text(json.dumps({"prompt": ["a?", "b?", "c?", "d?"], "chosen": ["A!", "B!"]}), encoding="utf-8")
    rows, counts = D.load_rows(C.DataConfig(source=str(path)))
    assert [r.prompt for r in rows] == ["a?", "b?"]
    assert counts.rows_read == 4 and counts.dropped == {"missing chosen": 2}  # was: cut to 2 rows silently
    assert counts.to_dict()["dropped"] == {"missing chosen": 2}  # what DataReport and meta.json show


def test_reader_errors_never_escape_as_os_errors(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "x.jsonl", GOOD)
    monkeypatch.setattr(data_loading, "_text_lines", lambda p, c: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(DataError, match=r"cannot read .*x.jsonl \(I/O error\)"):
        D.load_rows(C.DataConfig(source=str(path)))
    with pytest.raises(ConfigError, match="too long"):
        C.load_preset("demo").replace(**{"data.source": "y" * 256})
