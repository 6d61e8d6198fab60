"""Reliability round 3, exports: never into the run store, --force replaces only an earlier export's own
files, the target folder is checked (a file in the path, a name too long, a read-only or full disk) before
the model loads, a write that fails midway is a message, leftovers of a killed export are cleaned, and the
files follow the umask (issue 25 items 7-8 and lows; issue 24 items 4-5)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from humanlike_tui import cli
from humanlike_tui.engine import models as M
from humanlike_tui.engine.storage import export as E
from humanlike_tui.engine.storage import files


@pytest.fixture
def store(trained, monkeypatch):
    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(trained.home))
    return trained


@pytest.fixture
def no_load(monkeypatch):
    """Fails the test if a model is loaded: every check here comes first."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the target was checked")

    monkeypatch.setattr(M, "load_base_model", refuse)


def export(run_id: str, out: Path, *extra: str) -> int:
    return cli.main(["adapters", "export", run_id, str(out), *extra])


@pytest.mark.parametrize("where", ["adapter/exp", "", "checkpoints/x/y"])
def test_an_export_into_the_store_is_refused(store, capsys, no_load, where):
    out = store.run_dir / where if where else store.run_dir.parent
    assert export(store.run_id, out, "--force") == 2
    err = capsys.readouterr().err
    assert "the run store" in err and "outside it" in err, err
    assert not (store.run_dir / "adapter" / "exp").exists()


def test_an_export_holding_the_store_is_refused(store, capsys, no_load):
    assert export(store.run_id, store.home, "--force") == 2
    assert "the run store" in capsys.readouterr().err


def test_force_replaces_only_an_earlier_exports_own_files(store, tmp_path, capsys):
    out = tmp_path / "merged"
    old = os.umask(0o022)
    try:
        assert export(store.run_id, out) == 0, capsys.readouterr().err
    finally:
        os.umask(old)
    # issue 24.4: the weights follow the umask like every other file
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}["model.safetensors"] == "0o644"
    (out / "notes.txt").write_text("my notes")
    assert export(store.run_id, out, "--force") == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "nothing was changed" in err, err
    assert (out / "notes.txt").read_text() == "my notes"
    (out / "notes.txt").unlink()
    (out / "config.json").write_text((out / "config.json").read_text() + " ")  # edited by the user
    assert export(store.run_id, out, "--force") == 2
    assert "config.json" in capsys.readouterr().err
    (out / "config.json").write_text((out / "config.json").read_text()[:-1])
    assert export(store.run_id, out, "--force") == 0, capsys.readouterr().err
    assert (out / "model.safetensors").is_file()


def test_a_bad_target_is_refused_before_the_model_loads(store, tmp_path, capsys, no_load, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    assert export(store.run_id, tmp_path / "a-file" / "sub") == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert export(store.run_id, tmp_path / ("n" * 300)) == 2
    assert "at most 255" in capsys.readouterr().err

    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkdtemp", read_only)
        assert export(store.run_id, tmp_path / "ro" / "out") == 2
        err = capsys.readouterr().err
        assert "does not take new files (Read-only file system)" in err and "this is a bug" not in err, err


def test_a_full_disk_is_refused_before_the_model_loads(store, tmp_path, capsys, no_load, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    for fmt in ([], ["--format", "gguf"]):
        assert export(store.run_id, tmp_path / "out", *fmt) == 2
        err = capsys.readouterr().err
        assert "not enough free space" in err and "1,000 B is free" in err, err
    assert not (tmp_path / "out").exists()


def test_a_write_that_fails_midway_is_a_message_and_leaves_nothing(store, tmp_path, capsys, monkeypatch):
    def disk_full(folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "follow_umask", disk_full)
    (tmp_path / "exports").mkdir()
    assert export(store.run_id, tmp_path / "exports" / "out") == 1
    err = capsys.readouterr().err
    assert "the disk is full" in err and "this is a bug" not in err, err
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == []


def test_leftovers_of_a_killed_export_are_cleaned(home, tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / ".tmp-out-4194000-abcdefgh"
    live = tmp_path / f".tmp-out-{os.getpid()}-abcdefgh"
    other = tmp_path / ".tmp-out-2-4194000-abcdefgh"  # another target's (out-2) leftover
    for d in (dead, live, other):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"half")
    E.check_export_target(out, overwrite=False)
    assert not dead.exists() and live.exists() and other.exists()


def test_quant_without_gguf_is_refused(store, tmp_path, capsys, no_load):
    assert export(store.run_id, tmp_path / "out", "--quant", "q4_0") == 2
    err = capsys.readouterr().err
    assert "--quant q4_0: only a GGUF export is quantized; add --format gguf" in err, err
    assert not (tmp_path / "out").exists()


def test_weights_written_by_safetensors_follow_the_umask(home, tmp_path):
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o002)
    try:
        with files.atomic_dir(tmp_path / "adapter") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp / "adapter_model.safetensors"))
    finally:
        os.umask(old)
    assert oct((tmp_path / "adapter" / "adapter_model.safetensors").stat().st_mode & 0o777) == "0o664"
