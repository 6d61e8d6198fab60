"""Reliability round 2, the run store: a resume refused because another process trains the run changes no
byte of it (real processes), two processes that start together cannot both get a run's lock, and the
store's edge cases (a killed delete, a read-only store, a bad lock or meta file, a reused pid, a name at
the length limit, sizes counted while checkpoints are pruned, file modes) end in a message, never in a
traceback or a wrong state."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import child_env

from humanlike_tui import cli
from humanlike_tui import config as C
from humanlike_tui.engine.storage import library
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import StoreError
from humanlike_tui.engine.storage import files


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under `folder`, by relative path."""
    out: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        out[path.relative_to(folder).as_posix()] = path.read_bytes() if path.is_file() else None
    return out


def interrupted_run(name: str = "live") -> S.Run:
    """A run that trained to step 2 and was killed: config, meta 'running', a checkpoint, metrics."""
    cfg = C.load_preset("demo").replace(**{"train.max_steps": 6, "train.save_every": 0})
    run = S.create_run(cfg, name)
    cp = run.checkpoints_dir / "step-000002"
    cp.mkdir(parents=True)
    (cp / "state.json").write_text('{"step": 2}')
    (cp / files.COMPLETE).write_text("{}")
    run.append_metric({"step": 1, "kind": "train", "loss": 9.0})
    run.append_metric({"step": 2, "kind": "train", "loss": 8.0})
    run.update_meta(status="running", steps=2)
    return run


# The live trainer as far as the store sees it: a real process holding the run's lock (through the same
# store code) in the middle of a checkpoint write, waiting on stdin so the test decides when it ends.
HOLDER = """
import sys
from pathlib import Path
from humanlike_tui.engine.storage import files
from humanlike_tui.engine.storage import runs as S
run = S.Run(Path(sys.argv[1]))
run.acquire()
half = run.checkpoints_dir / ".tmp-step-000003-live"
half.mkdir(parents=True)
(half / "adapter_model.safetensors").write_bytes(b"half written")
print("holding", flush=True)
sys.stdin.readline()
(half / files.COMPLETE).write_text("{}")
half.rename(run.checkpoints_dir / "step-000003")
run.release()
print("released", flush=True)
"""


def start_holder(home: Path, run: S.Run) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run.run_dir)], env=child_env(home),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read()
    return proc


def cli_process(home: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "humanlike_tui", *argv], env=child_env(home),
                          capture_output=True, text=True, timeout=120)


def test_a_refused_resume_changes_no_byte_of_the_run_being_trained(home):
    run = interrupted_run()
    holder = start_holder(home, run)
    try:
        before = snapshot(run.run_dir)
        assert ".tmp-step-000003-live" in " ".join(before) and "run.lock" in before
        # Was: config.toml rewritten (max_steps), the live .tmp-step-* removed (the trainer then died
        # with FileNotFoundError), meta.json 'failed', and the holder's lock released.
        resume = cli_process(home, "train", "--resume", "live", "--set", "train.max_steps=99")
        assert resume.returncode == 2, resume.stderr
        assert f"run live is being trained by process {holder.pid}; stop it first" in resume.stderr
        assert "Traceback" not in resume.stderr
        # Neither delete nor rename pulls the folder away under the live trainer.
        for argv in (["adapters", "delete", "live", "--yes"], ["adapters", "rename", "live", "other"]):
            refused = cli_process(home, *argv)
            assert refused.returncode == 2 and f"being trained by process {holder.pid}" in refused.stderr, argv
        assert snapshot(run.run_dir) == before
        assert run.status() == "running"
    finally:
        out, err = holder.communicate("\n", timeout=30)
    assert holder.returncode == 0 and "released" in out, err  # its half-written checkpoint was still there
    assert run.latest_checkpoint()[0] == 3
    assert not (run.run_dir / "run.lock").exists() and run.status() == "interrupted"
    assert cli.main(["adapters", "delete", "live", "--yes"]) == 0  # once it let go


RACER = """
import sys, time
from pathlib import Path
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import StoreError
go = Path(sys.argv[2])
import psutil  # noqa: F401 - imported by acquire; here, so every racer is as ready as the others
(go.parent / f"ready-{sys.argv[3]}").touch()
while not go.exists():
    time.sleep(0.001)
run = S.Run(Path(sys.argv[1]))
try:
    run.acquire()
except StoreError:
    print("refused", flush=True)
else:
    print("won", flush=True)
    time.sleep(1.5)
    run.release()
"""


def test_processes_starting_together_never_both_get_a_run(home, tmp_path):
    # Was: read the lock, see no live holder, write our own: two resumes started together both trained
    # (and one meta.json update was lost). The OS lock lets exactly one in.
    run = interrupted_run()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(run.run_dir), str(go), str(i)], env=child_env(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    deadline = time.monotonic() + 120  # every racer imported and is polling for the start signal (a fixed
    while len(list(tmp_path.glob("ready-*"))) < 6 and time.monotonic() < deadline:  # wait lost on a busy machine)
        time.sleep(0.01)
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    assert sorted(out.strip() for out, _ in results) == ["refused"] * 5 + ["won"], results
    assert not (run.run_dir / "run.lock").exists()


# --- 8. store edge cases ------------------------------------------------------------------------------

def test_a_killed_delete_leaves_no_trash_that_blocks_the_next(home):
    run = interrupted_run("big")
    leftover = S.runs_dir() / ".tmp-deleting-big"  # what SIGKILL in the middle of `adapters delete big` left
    shutil.copytree(run.run_dir, leftover)
    S.delete_run("big")  # was: OSError, the trash name was taken
    interrupted_run("big")
    S.delete_run("big")
    assert [p.name for p in S.runs_dir().iterdir()] == []  # the leftover is gone too


def test_a_read_only_store_refuses_delete_and_rename_with_a_message(home, capsys, monkeypatch):
    interrupted_run("kept")
    (S.runs_dir() / "kept" / "run.lock").unlink(missing_ok=True)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(S.runs_dir() / "kept"))

    monkeypatch.setattr(S, "replace_retrying", read_only)
    for argv in (["adapters", "delete", "kept", "--yes"], ["adapters", "rename", "kept", "other"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "Read-only file system" in err and "Traceback" not in err, err
    assert S.get_run("kept").status() == "interrupted"


def read_only_mount(path: Path):
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")


def test_a_really_read_only_store(home, capsys):
    data = home / "data"
    read_only_mount(data)
    try:
        interrupted_run("kept")
        (S.runs_dir() / "kept" / "run.lock").unlink(missing_ok=True)
        assert subprocess.run(["mount", "-o", "remount,ro", str(data)]).returncode == 0
        for argv in (["adapters", "delete", "kept", "--yes"], ["adapters", "rename", "kept", "other"]):
            assert cli.main(argv) == 2
            err = capsys.readouterr().err
            assert "Read-only file system" in err and "Traceback" not in err, err
        assert cli.main(["adapters", "list", "--json"]) == 0
        assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["kept"]
    finally:
        subprocess.run(["umount", "-l", str(data)])


@pytest.mark.parametrize("lock, meta", [
    ({"pid": "abc", "host": socket.gethostname()}, {}),
    ({"pid": 10**30, "host": socket.gethostname()}, {}),
    ("not json at all", {}),
    ({"pid": None}, {"created": None}),
    ({}, {"created": "yesterday", "status": 7}),
])
def test_one_bad_lock_or_meta_file_does_not_break_the_list(home, capsys, lock, meta):
    interrupted_run("good")
    bad = interrupted_run("bad")
    (bad.run_dir / "run.lock").write_text(lock if isinstance(lock, str) else json.dumps(lock))
    bad.update_meta(**meta)
    assert cli.main(["adapters", "list", "--json"]) == 0
    listed = {r["name"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {"good": "interrupted", "bad": "interrupted"}


def test_a_reused_pid_does_not_keep_a_dead_run_running(home):
    run = interrupted_run()
    # The trainer died; the OS gave its pid to another process (here: this one), which started later.
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": 1.0, "started": 1.0}
    (run.run_dir / "run.lock").write_text(json.dumps(info))
    assert run.status() == "interrupted"  # was: 'running' forever, so it could not be resumed or deleted
    info["started"] = S.process_started(os.getpid())
    (run.run_dir / "run.lock").write_text(json.dumps(info))
    assert run.status() == "running"


def test_a_taken_100_character_name_gets_a_suffix_that_is_still_a_name(home, capsys):
    name = "n" * 100
    first = S.create_run(C.load_preset("demo"), name)
    second = S.create_run(C.load_preset("demo"), name)
    assert first.run_id == name and len(second.run_id) == 100 and second.run_id.endswith("-2")
    S.check_name(second.run_id)  # was: 102 characters, refused by show, delete and chat
    assert cli.main(["adapters", "show", second.run_id]) == 0
    assert cli.main(["adapters", "delete", second.run_id, "--yes"]) == 0


def test_sizes_counted_while_a_checkpoint_is_pruned(home, monkeypatch):
    run = interrupted_run()
    (run.checkpoints_dir / "step-000002" / "big.bin").write_bytes(b"x" * 1000)
    real_stat = os.stat

    def pruned_meanwhile(path, *args, **kwargs):  # the trainer prunes between listing and stat
        if str(path).endswith("big.bin"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", pruned_meanwhile)
    assert run.size_bytes() > 0  # was: FileNotFoundError out of `adapters list`
    assert library.get_adapter("live").size_bytes > 0


def test_a_process_refused_the_lock_writes_nothing_and_releases_nothing(home):
    run = interrupted_run()
    run.acquire()
    other = S.Run(run.run_dir)
    with pytest.raises(StoreError, match=f"being trained by process {os.getpid()}"):
        other.acquire()
    other.release()  # holds nothing: lets nothing go
    assert (run.run_dir / "run.lock").exists() and run.holds_lock
    run.release()
    assert not (run.run_dir / "run.lock").exists()


# --- 9. file modes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                        (0o002, 0o664, 0o775)])
def test_files_and_folders_follow_the_umask_like_a_normal_write(home, tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        run = S.create_run(C.load_preset("demo"), "modes")  # config.toml, meta.json: atomic_write_text
        run.append_metric({"step": 1})
        with files.atomic_dir(run.checkpoints_dir / "step-000001", manifest=True) as tmp:  # checkpoints, adapters,
            (tmp / "weights.safetensors").write_bytes(b"w")  # and exports (storage.export) are made so
            S.write_json(tmp / "state.json", {"step": 1})
        with files.atomic_dir(tmp_path / "export") as tmp:
            S.write_json(tmp / "humanlike_export.json", {"run": "modes"})
    finally:
        os.umask(old)
    cp = run.checkpoints_dir / "step-000001"
    # Was: 0600 files and 0700 folders (the temp-file defaults) that other programs could not read.
    for path in (run.run_dir / "config.toml", run.meta_path, cp / "state.json", cp / files.COMPLETE,
                 tmp_path / "export" / "humanlike_export.json"):
        assert oct(path.stat().st_mode & 0o777) == oct(file_mode), path
    for path in (cp, tmp_path / "export"):
        assert oct(path.stat().st_mode & 0o777) == oct(dir_mode), path
