"""Reliability round 3, the headless commands: odd ids for `download`, and inputs each command now checks
(issue 25 item 9 and the low items), each exit 2 with a message, never 'unexpected error ... this is a bug'."""

from __future__ import annotations

import pytest

from humanlike_tui import cli


def no_bug(err: str) -> bool:
    return "this is a bug" not in err and "unexpected error" not in err and "Traceback" not in err


@pytest.mark.parametrize("name, words", [
    ("../../etc", "'../../etc' is not a Hugging Face Hub model id"),
    ("x" * 300, "(300 characters) is not a Hugging Face Hub model id"),
    ("has space/model", "is not a Hugging Face Hub model id"),
    ("", "'' is not a Hugging Face Hub model id"),
    ("a/b/c", "is not a Hugging Face Hub model id"),
])
def test_download_of_an_odd_id_names_the_problem(home, capsys, name, words):
    assert cli.main(["download", name]) == 2
    err = capsys.readouterr().err
    assert words in err and "OWNER/NAME" in err and no_bug(err), err
    assert "eta" not in err  # refused before the progress bar is drawn


def test_download_without_internet_names_the_problem(home, capsys):
    assert cli.main(["download", "someone/some-model"]) == 2  # the home fixture sets HF_HUB_OFFLINE=1
    err = capsys.readouterr().err
    assert "offline mode is on" in err and "cannot be downloaded now" in err and no_bug(err), err


@pytest.mark.parametrize("kind, words", [("RepositoryNotFoundError", "no model 'someone/some-model' on the Hugging Face Hub"),
                                         ("GatedRepoError", "is gated on the Hugging Face Hub"),
                                         ("RevisionNotFoundError", "has no revision")])
def test_download_says_what_the_hub_refused(home, capsys, monkeypatch, kind, words):
    import huggingface_hub

    error = type(kind, (Exception,), {})

    def refuse(*args, **kwargs):
        raise error("404 Client Error")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    assert cli.main(["download", "someone/some-model"]) == 2
    err = capsys.readouterr().err
    assert words in err and no_bug(err), err


def test_a_toml_config_with_a_utf8_bom_is_read(home, tmp_path):
    from humanlike_tui import config as C

    path = tmp_path / "bom.toml"
    C.save_config(C.load_preset("demo"), path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Notepad saves "UTF-8 with BOM"
    assert C.load_config(path) == C.load_preset("demo")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e9"])
def test_hw_vram_must_be_a_real_size(home, capsys, value):
    assert cli.main(["hw", "--vram", value]) == 2
    err = capsys.readouterr().err
    assert "--vram: must be a number of GiB > 0 and at most 100,000" in err and no_bug(err), err


def test_bench_threads_past_the_limit_is_refused_before_anything_runs(home, capsys):
    assert cli.main(["bench", "--threads", "5000"]) == 2  # was a segmentation fault
    err = capsys.readouterr().err
    assert "--threads: at most" in err and "got 5,000" in err, err


def test_bench_warmup_0_times_the_steps_after_the_first(home):
    from humanlike_tui.engine.bench.measure import timed_rate
    from humanlike_tui.errors import InputError

    with pytest.raises(InputError, match="leave no timed step"):
        timed_rate([(1.0, 10)], 0)  # was ZeroDivisionError further on: 0 seconds timed
    assert timed_rate([(1.0, 10), (3.0, 20)], 0) == (2.0, 20, 1)


def test_a_whitespace_only_data_file_is_called_empty(home, tmp_path):
    from humanlike_tui import config as C
    from humanlike_tui.engine import data as D
    from humanlike_tui.errors import DataError

    path = tmp_path / "blank.jsonl"
    path.write_text("  \n\n\t \n")
    dcfg = C.load_preset("demo").replace(**{"data.source": str(path)}).data
    with pytest.raises(DataError, match=r"blank.jsonl is empty \(only blank space\); it needs rows"):
        D.load_rows(dcfg)


def test_dpo_where_every_chosen_equals_its_rejected_warns(home):
    from types import SimpleNamespace

    from humanlike_tui import config as C
    from humanlike_tui.engine.data.loading import Row
    from humanlike_tui.engine.training.trainer import Trainer

    logged = []
    fake = SimpleNamespace(cfg=C.load_preset("demo").replace(**{"train.method": "dpo"}),
                           log=lambda msg, level="info": logged.append((level, msg)))
    Trainer._warn_same_pairs(fake, [Row("p", "same", " same "), Row("q", "x", "x")])
    assert logged and logged[0][0] == "warning" and "every pair's chosen answer equals its rejected one" in logged[0][1]
    logged.clear()
    Trainer._warn_same_pairs(fake, [Row("p", "same", "same"), Row("q", "x", "y")])
    assert "1 of 2 pairs" in logged[0][1]
    logged.clear()
    Trainer._warn_same_pairs(fake, [Row("q", "x", "y")])
    assert logged == []


def test_a_home_that_is_a_file_is_named(home, tmp_path, capsys, monkeypatch):
    (tmp_path / "home-file").write_text("x")
    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(tmp_path / "home-file"))
    assert cli.main(["adapters", "list"]) == 2
    err = capsys.readouterr().err
    assert "HUMANLIKE_TUI_HOME=" in err and "is a file, not a folder" in err and no_bug(err), err


def test_a_read_only_home_is_named_when_a_run_is_made(home, capsys, monkeypatch):
    import errno
    from pathlib import Path

    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(home)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert cli.main(["train", "--preset", "demo", "--set", "train.max_steps=1"]) == 2
    err = capsys.readouterr().err
    assert "cannot create a run" in err and "Read-only file system" in err and "HUMANLIKE_TUI_HOME is" in err, err
    assert no_bug(err)
