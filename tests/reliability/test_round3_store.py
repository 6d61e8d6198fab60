"""Reliability round 3, the run store: a symbolic link planted in a run folder (run.lock, metrics.jsonl, the
checkpoints folder, the run folder itself) never makes resume, delete or rename write, truncate or delete the
file it points to; each refuses, exit 2, naming the link."""

from __future__ import annotations

import pytest

from humanlike_tui import cli
from humanlike_tui import config as C
from humanlike_tui.engine.storage import files
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import StoreError


def interrupted_run(name: str = "live") -> S.Run:
    cfg = C.load_preset("demo").replace(**{"train.max_steps": 6, "train.save_every": 0})
    run = S.create_run(cfg, name)
    cp = run.checkpoints_dir / "step-000002"
    cp.mkdir(parents=True)
    (cp / "state.json").write_text('{"step": 2}')
    (cp / files.COMPLETE).write_text("{}")
    run.append_metric({"step": 1, "kind": "train", "loss": 9.0})
    run.update_meta(status="running", steps=2)
    return run


COMMANDS = [["train", "--resume", "live"], ["adapters", "delete", "live", "--yes"],
            ["adapters", "rename", "live", "other"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=["resume", "delete", "rename"])
def test_a_run_lock_that_is_a_link_is_never_followed(home, tmp_path, capsys, argv):
    run = interrupted_run()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run.run_dir / "run.lock").symlink_to(victim)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "run.lock is a symbolic link" in err and "Remove the link" in err and "Traceback" not in err, err
    assert victim.read_text() == "precious\n"
    assert (run.run_dir / "run.lock").is_symlink() and (run.run_dir / "config.toml").is_file()


@pytest.mark.parametrize("argv", COMMANDS, ids=["resume", "delete", "rename"])
def test_a_linked_checkpoints_folder_or_metrics_file_is_refused(home, tmp_path, capsys, argv):
    run = interrupted_run()
    outside = tmp_path / "outside"
    (outside / "step-000001").mkdir(parents=True)
    (outside / "step-000001" / files.COMPLETE).write_text("{}")
    (outside / "keep.txt").write_text("mine")
    real = run.checkpoints_dir.rename(run.run_dir / "moved")
    run.checkpoints_dir.symlink_to(outside, target_is_directory=True)
    (run.run_dir / "metrics.jsonl").unlink()
    (run.run_dir / "metrics.jsonl").symlink_to(tmp_path / "log.txt")
    (tmp_path / "log.txt").write_text("line\n")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err, err
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt", "step-000001"]
    assert (tmp_path / "log.txt").read_text() == "line\n" and real.is_dir()


def test_a_run_folder_that_is_a_link_is_refused(home, tmp_path):
    run = interrupted_run("real")
    moved = run.run_dir.rename(tmp_path / "elsewhere")
    (S.runs_dir() / "live").symlink_to(moved, target_is_directory=True)
    with pytest.raises(StoreError, match="the run folder is a symbolic link"):
        S.delete_run("live")
    with pytest.raises(StoreError, match="the run folder is a symbolic link"):
        S.rename_run("live", "other")
    assert (moved / "config.toml").is_file() and not (moved / "run.lock").exists()


def test_append_metric_never_appends_through_a_link(home, tmp_path):
    run = interrupted_run()
    (run.run_dir / "metrics.jsonl").unlink()
    (run.run_dir / "metrics.jsonl").symlink_to(tmp_path / "log.txt")
    (tmp_path / "log.txt").write_text("")
    with pytest.raises(OSError):
        run.append_metric({"step": 3})
    assert (tmp_path / "log.txt").read_text() == ""


def test_a_run_without_links_is_still_deleted_and_renamed(home):
    interrupted_run()
    assert S.rename_run("live", "other").run_id == "other"
    S.delete_run("other")
    assert S.list_runs() == []


def finished_run(name: str = "done") -> S.Run:
    cfg = C.load_preset("demo").replace(**{"train.max_steps": 4})
    run = S.create_run(cfg, name)
    run.adapter_dir.mkdir()
    (run.adapter_dir / files.COMPLETE).write_text("{}")
    run.update_meta(status="finished", steps=4)
    return run


def test_a_finished_run_being_resumed_is_listed_as_running(home):
    run = finished_run()
    assert run.status() == "finished"
    holder = S.Run(run.run_dir)
    holder.acquire()  # a resume holds the lock while the model loads, before meta.json says 'running'
    try:
        assert run.status() == "running"
    finally:
        holder.release()
    assert run.status() == "finished"


def test_a_resume_for_more_steps_killed_while_loading_is_interrupted(home):
    import json
    import socket

    run = finished_run()
    C.save_config(run.config().replace(**{"train.max_steps": 8}), run.run_dir / "config.toml")
    (run.run_dir / "run.lock").write_text(json.dumps({"pid": 4_194_000, "host": socket.gethostname(),
                                                      "started": 1.0}))  # the killed resume's
    assert run.status() == "interrupted"
    assert cli.main(["adapters", "list", "--json"]) == 0
