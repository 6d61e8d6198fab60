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
