"""Bad input, one case at a time, through the headless commands: each ends in a message naming the
problem and the fix, exit code 2 (input) or 1 (a failure while training), and nothing written or lost:
a new run that fails on its input leaves no run folder behind. Then a property-based test: random
config values and random rows reach nothing but our own error types."""

from __future__ import annotations

import errno
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import FAST

from humanlike_tui import cli
from humanlike_tui import config as C
from humanlike_tui.engine import data as D
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import HumanlikeError


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def no_runs() -> bool:
    return not S.runs_dir().exists() or not any(S.runs_dir().iterdir())


def assert_input_error(capsys, argv, *needles: str) -> str:
    code, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert "\nerror: " in "\n" + err and "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    assert no_runs(), [p.name for p in S.runs_dir().iterdir()]
    return err


# --- config ------------------------------------------------------------------------------------------

CONFIG_CASES = {
    "malformed TOML": ("[train\nmax_steps = 5\n", ["bad.toml: not valid TOML", "fix the syntax"]),
    "unknown key": ("[train]\nmax_step = 5\n", ["train.max_step: unknown key", "did you mean train.max_steps?"]),
    "unknown section": ("[trian]\nmax_steps = 5\n", ["trian: unknown section", "known: model"]),
    "wrong type": ('[train]\nmax_steps = "ten"\n', ["train.max_steps: must be an integer, got 'ten'"]),
    "out of range": ("[lora]\nr = 0\n[train]\nlearning_rate = 5.0\n",
                     ["2 problems", "lora.r: must be >= 1, got 0", "train.learning_rate: must be <= 1, got 5"]),
    "bad choice": ('[quant]\nmode = "nf3"\n', ["quant.mode: must be one of nf4, fp4, int8, none, got 'nf3'"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_file(case, tmp_path, capsys):
    text, needles = CONFIG_CASES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    assert_input_error(capsys, ["train", "--config", str(path)], *needles)


def test_config_file_missing_or_not_utf8(tmp_path, capsys):
    assert_input_error(capsys, ["train", "--config", str(tmp_path / "nope.toml")], "config file not found",
                       "--preset demo")
    path = tmp_path / "latin1.toml"
    path.write_bytes('[model]\nname = "caf\xe9"\n'.encode("latin-1"))
    assert_input_error(capsys, ["train", "--config", str(path)], "cannot read the config file")


def test_bad_set_override(capsys):
    assert_input_error(capsys, ["train", *FAST, "--set", "train.max_steps=0"], "train.max_steps: must be >= 1")
    assert_input_error(capsys, ["train", *FAST, "--set", "max_steps=3"], "expected section.key=value")
    # A byte that is not UTF-8 on the command line arrives as a lone surrogate; it could not be saved.
    assert_input_error(capsys, ["train", *FAST, "--set", "data.source=caf\udce9.jsonl"],
                       "data.source: must be valid UTF-8 text")


# --- data --------------------------------------------------------------------------------------------

def write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def good(n=1):
    return "".join(json.dumps({"prompt": f"hi {i}", "chosen": "hey!", "rejected": "Hello."}) + "\n" for i in range(n))


DATA_CASES = {
    "missing": (None, ["not found", "check the path", "builtin:sample"]),
    "empty": ("", ["is empty", "'prompt' and 'chosen'"]),
    "not UTF-8": ('{"prompt": "caf\xe9", "chosen": "s\xfcr"}\n'.encode("latin-1") * 3,
                  ["none of the 3 rows", "3 not UTF-8", "save the file as UTF-8"]),
    "malformed JSON lines": ('{"prompt": "hi", "chosen": \n{prompt: hi}\n[1, 2\n',
                             ["3 malformed JSON line", "one JSON object"]),
    "missing columns": (json.dumps({"question": "hi", "answer": "hey"}) + "\n",
                        ["no rows with the columns 'prompt', 'chosen'", "set data.prompt_column"]),
    "empty or non-string fields": ("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "hi", "chosen": "   "}, {"prompt": 5, "chosen": "x"}, {"prompt": "hi", "chosen": ["x"]},
        {"prompt": "hi", "chosen": None}, {"prompt": "\ud800", "chosen": "x"}]),
        ["none of the 5 rows", "empty chosen", "prompt not a string", "chosen not a string", "missing chosen",
         "prompt not valid Unicode", "non-empty text fields prompt, chosen"]),
    "one gigantic row": (json.dumps({"prompt": "hi", "chosen": "ha" * 600_000}) + "\n",
                         ["1 over max_length", "shorten or split them"]),
    "rows over max_length tokens": (json.dumps({"prompt": "hi " * 400, "chosen": "hey"}) + "\n",
                                    ["longer than data.max_length = 256 tokens", "raise data.max_length"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_file(case, tmp_path, capsys):
    content, needles = DATA_CASES[case]
    path = tmp_path / "rows.jsonl"
    if content is not None:
        write(path, content)
    assert_input_error(capsys, ["train", *FAST, "--set", f"data.source={json.dumps(str(path))}"],
                       "data", *needles)


def test_bad_rows_among_good_ones_are_dropped_and_counted(tmp_path):
    """A few bad rows do not stop a run: they are skipped, counted and reported."""
    text = (good(3) + "{broken\n" + json.dumps({"prompt": "x", "chosen": "y" * 300_000}) + "\n"
            + json.dumps({"prompt": "", "chosen": "y"}) + "\n")
    path = write(tmp_path / "rows.jsonl", text.encode("utf-8") + b'{"prompt": "\xff", "chosen": "x"}\n')
    cfg = C.load_preset("demo").replace(**{"data.source": str(path)})
    rows, counts = D.load_rows(cfg.data)
    assert len(rows) == 3 and counts.rows_read == 7
    assert dict(counts.dropped) == {"malformed JSON line": 1, "over max_length": 1, "empty prompt": 1,
                                    "not UTF-8": 1}


# --- model and adapter -------------------------------------------------------------------------------

def test_unreachable_model_names_the_model_and_the_offline_choices(capsys):
    assert_input_error(capsys, ["train", *FAST, "--set", 'model.name="someone/no-such-model"'],
                       "'someone/no-such-model'", "Check the name and your internet connection",
                       "local folder", "builtin:tiny-phi")
    assert_input_error(capsys, ["train", *FAST, "--set", 'model.name="/no/such/folder"'],
                       "local folder /no/such/folder does not exist")


def fake_run_with_adapter(tmp_path, files: dict[str, str | bytes], base: str = "builtin:tiny-phi"):
    """A run folder on disk (config.toml + adapter/) with the given adapter files; no model needed."""
    run = tmp_path / "other-run"
    adapter = run / "adapter"
    adapter.mkdir(parents=True)
    C.save_config(C.load_preset("demo").replace(**{"model.name": base}), run / "config.toml")
    for name, content in files.items():
        write(adapter / name, content)
    return adapter


def test_adapter_with_missing_files(tmp_path, capsys):
    adapter = fake_run_with_adapter(tmp_path, {"adapter_config.json": "{}"})
    assert_input_error(capsys, ["chat", "--adapter", str(adapter), "--prompt", "hi"],
                       "incomplete adapter, missing adapter_model.safetensors", "resume or retrain")


def test_adapter_made_for_another_base_model(tmp_path, capsys):
    adapter = fake_run_with_adapter(tmp_path, {"adapter_config.json": "{}", "adapter_model.safetensors": b"x",
                                               "base_model.txt": "microsoft/phi-2\n"})
    assert_input_error(capsys, ["chat", "--adapter", str(adapter), "--prompt", "hi"],
                       "trained on 'microsoft/phi-2', not 'builtin:tiny-phi'", "set model.name = 'microsoft/phi-2'")
    from humanlike_tui.engine import models as M
    from humanlike_tui.errors import ModelError

    with pytest.raises(ModelError, match="trained on 'microsoft/phi-2'"):
        M.load_adapter(object(), adapter, "builtin:tiny-phi")  # refused before the model is touched


# --- a full disk while a checkpoint is written --------------------------------------------------------

def test_full_disk_during_a_checkpoint_keeps_the_last_one(monkeypatch, capsys):
    import torch

    real_save = torch.save
    calls = {"n": 0}

    def save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: the disk fills up half way
            with open(path, "wb") as f:
                f.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    code, err = run_cli(capsys, "train", *FAST, "--name", "full", "--set", "train.max_steps=3",
                        "--set", "train.save_every=1", "--set", 'quant.mode="none"')
    assert code == 1 and "the disk is full; free some space and resume the run" in err, err
    assert "Traceback" not in err
    run = S.get_run("full")
    assert run.status() == "failed" and "disk is full" in run.meta()["error"]
    assert [step for step, _ in run.checkpoints()] == [1]  # the complete one survived
    assert not [p.name for p in run.checkpoints_dir.iterdir() if p.name != "step-000001"]  # no half one

    monkeypatch.setattr(torch, "save", real_save)  # space freed: resume finishes the run
    code, err = run_cli(capsys, "train", "--resume", "full")
    assert code == 0, err
    assert run.status() == "finished" and run.meta()["steps"] == 3


# --- property-based: nothing but our own errors escape ------------------------------------------------

SPECS = {s.path: s for s in C.field_specs()}
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
values = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                   any_text, st.lists(st.one_of(any_text, st.integers()), max_size=3),
                   st.dictionaries(any_text, st.integers(), max_size=2))
keys = st.sampled_from(sorted(SPECS)).map(lambda p: p.split(".", 1)) | st.tuples(
    st.sampled_from(sorted(C.SECTIONS) + ["bogus"]), any_text)


@st.composite
def config_dicts(draw):
    data: dict = {}
    for section, key in draw(st.lists(keys, max_size=8)):
        data.setdefault(section, {})[key] = draw(values)
    if draw(st.booleans()):
        data[draw(st.sampled_from(sorted(C.SECTIONS)))] = draw(values)  # a section that is not a table
    return data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config_dicts())
def test_random_config_values_raise_only_our_errors(data):
    cfg, problems = C.validate_dict(data)
    assert (cfg is None) == bool(problems)
    assert all(isinstance(p, str) and ":" in p for p in problems)
    try:
        C.config_from_dict(data)
    except HumanlikeError:
        pass
    if cfg is not None:
        text = C.to_toml(cfg)
        text.encode("utf-8")  # what validates can be saved (a run writes its config.toml first) ...
        assert C.config_from_dict(C.parse_toml(text)) == cfg  # ... and reloads unchanged


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet=string.printable + "=.[]\"'é\ud800", max_size=30), max_size=3))
def test_random_overrides_raise_only_our_errors(items):
    try:
        C.apply_overrides(C.load_preset("demo"), items)
    except HumanlikeError:
        pass


field_values = st.one_of(any_text, st.text(max_size=300), st.none(), st.integers(), st.lists(any_text, max_size=2))
records = st.one_of(
    st.fixed_dictionaries({}, optional={"prompt": field_values, "chosen": field_values, "rejected": field_values,
                                        "other": field_values}),
    field_values)


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from humanlike_tui.engine import models as M

    cfg = C.load_preset("demo")
    return M.load_tokenizer(cfg, M.resolve_model_path(cfg))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(records, max_size=12), st.sampled_from(["sft", "dpo"]), st.sampled_from(["instruct", "chat"]),
       st.integers(16, 300))
def test_random_rows_raise_only_our_errors(tiny_tokenizer, rows, method, template, max_length):
    dcfg = C.load_preset("demo").replace(**{"data.template": template, "data.max_length": max_length}).data
    need_rejected = method == "dpo"
    counts = D.DataCounts("random")
    try:
        kept = D.check_rows(rows, dcfg, counts, need_rejected)
        examples = D.tokenize_rows(kept, tiny_tokenizer, dcfg, counts, need_rejected)
    except HumanlikeError:
        return
    assert examples and all(e.length <= max_length for e in examples)
    assert counts.rows_read == len(rows) and counts.rows_kept == len(examples)
    for e in examples:
        ids, labels = D.sft_tensors(e, False)
        assert len(ids) == len(labels) and labels[-1] == tiny_tokenizer.eos_token_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.sampled_from([".jsonl", ".json", ".csv"]))
def test_random_file_bytes_raise_only_our_errors(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"rows{suffix}"
    path.write_bytes(content)
    dcfg = C.load_preset("demo").replace(**{"data.source": str(path)}).data
    try:
        D.load_rows(dcfg)
    except HumanlikeError:
        pass
