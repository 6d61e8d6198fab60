"""Reliability round 2, a run's progress: damaged checkpoints are skipped for the newest one that verifies
(sizes and sha256 recorded in COMPLETE), damaged metrics lines never block a resume, a disk that really
fills up is reported as a full disk (torch.save says RuntimeError, not ENOSPC), and SIGTERM / SIGHUP
save a checkpoint like Ctrl+C, in the CLI and in the TUI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from reliability_helpers import FAST, start, train_steps, wait_for

from humanlike_tui import events as E
from humanlike_tui.config import load_preset
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.training import run as training_run
from humanlike_tui.engine.training.checkpoints import verify_checkpoint
from humanlike_tui.errors import TrainingError
from humanlike_tui.engine.storage import files

# A run cut to the bone: no evaluation, no held-out rows, no quantization (loads fastest), tiny batches.
QUICK = {"train.eval_every": 0, "data.eval_fraction": 0.0, "train.sample_prompts": 0, "train.warmup_steps": 1,
         "data.max_rows": 16, "train.batch_size": 4, "quant.mode": "none", "quant.double_quant": False,
         "train.save_every": 1, "train.keep_checkpoints": 3, "generate.max_new_tokens": 8}
_TRAINED: dict[str, Path] = {}


def quick_cfg(**extra):
    return load_preset("demo").replace(**{**QUICK, **extra})


def three_checkpoints(home: Path, name: str = "cps") -> S.Run:
    """A run trained 3 steps with a checkpoint after each (trained once per session, copied in)."""
    if "run" not in _TRAINED:
        root = Path(os.environ["HUMANLIKE_TUI_HOME"]).parent / "shared-run-home"
        (root / "data").mkdir(parents=True)
        (root / "cache").symlink_to((home / "cache").resolve(), target_is_directory=True)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HUMANLIKE_TUI_HOME", str(root))
            result = training_run.run_training(quick_cfg(**{"train.max_steps": 3}), run_name="cps")
        assert result.status == "finished"
        _TRAINED["run"] = Path(result.run_dir)
    target = S.runs_dir() / name
    shutil.copytree(_TRAINED["run"], target)
    return S.Run(target)


# --- 5. damaged checkpoints and metrics ---------------------------------------------------------------

def damage(folder: Path, how: str) -> None:
    if how == "truncated adapter":
        path = folder / "adapter_model.safetensors"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "random trainer state":
        path = folder / "trainer_state.pt"
        path.write_bytes(os.urandom(path.stat().st_size))
    elif how == "state without step":
        S.write_json(folder / "state.json", {"samples_seen": 3})
    elif how == "no manifest, state without step":
        (folder / files.COMPLETE).write_text('{"written": 1}')  # as written before manifests existed
        S.write_json(folder / "state.json", {"samples_seen": 3})


@pytest.mark.parametrize("how, reason", [
    ("truncated adapter", "adapter_model.safetensors has"),
    ("random trainer state", "trainer_state.pt has changed since it was written"),
    ("state without step", "state.json has 24 bytes"),
    ("no manifest, state without step", "state.json does not name step 3"),
])
def test_each_kind_of_damage_is_found_before_anything_loads(home, how, reason):
    run = three_checkpoints(home)
    newest = run.checkpoints_dir / "step-000003"
    assert verify_checkpoint(newest) is None
    marker = (newest / files.COMPLETE).read_text()
    assert '"sha256"' in marker and '"trainer_state.pt"' in marker  # sizes and hashes recorded when written
    damage(newest, how)
    assert reason in (verify_checkpoint(newest) or ""), verify_checkpoint(newest)


def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(home):
    run = three_checkpoints(home)
    damage(run.checkpoints_dir / "step-000003", "truncated adapter")  # fails verification
    # Step 2 as an old checkpoint (no manifest) with random bytes for its optimizer state: it verifies,
    # then fails to load (was: loaded, then NaN); the model must not keep anything of it.
    (run.checkpoints_dir / "step-000002" / files.COMPLETE).write_text('{"written": 1}')
    state = run.checkpoints_dir / "step-000002" / "trainer_state.pt"
    state.write_bytes(os.urandom(state.stat().st_size))
    with open(run.run_dir / "metrics.jsonl", "ab") as f:  # was: UnicodeDecodeError / TypeError on resume
        f.write(b"\xff\xfe not utf-8\n[1, 2]\n{\"step\": \"x\"}\n")
    events: list = []
    result = training_run.run_training(quick_cfg(**{"train.max_steps": 3}), events.append, resume="cps")
    assert result.status == "finished"
    warnings = [e.message for e in events if isinstance(e, E.Log) and e.level == "warning"]
    assert any(w.startswith("resuming from step-000001: step-000003 is damaged: adapter_model.safetensors has")
               and "step-000002 is damaged: it cannot be read" in w for w in warnings), warnings
    assert [e.start_step for e in events if isinstance(e, E.RunStarted)] == [1]
    assert train_steps(run.run_dir) == [1, 2, 3]  # every step logged once, the damaged lines gone
    assert [step for step, _ in run.checkpoints()] == [1, 2, 3]
    assert all(verify_checkpoint(path) is None for _, path in run.checkpoints())  # rewritten whole
    assert run.meta()["steps"] == 3 and run.status() == "finished"


# --- 6. a disk that really fills up -------------------------------------------------------------------

TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing "
                          "file data/3: file write failed; unexpected pos 594624 vs 594512")


def test_torch_saves_runtime_error_on_a_full_disk_is_called_a_full_disk(home, monkeypatch):
    run = S.create_run(quick_cfg(), "full")
    usage = shutil.disk_usage(run.run_dir)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=300_000))
    message = training_run._failure_message(TORCH_FULL, run)
    assert message.startswith("the disk is full; free some space and resume the run"), message
    assert "0.3 MB free in" in message
    # The same error with room to spare is not a full disk; neither is an error that is not a write.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=50 * 2**30))
    assert training_run._failure_message(TORCH_FULL, run).startswith("training failed: RuntimeError")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1))
    assert training_run._failure_message(ValueError("bad shape"), run) == "training failed: ValueError: bad shape"


def test_a_real_full_disk_fails_with_the_disk_is_full(home):
    data = home / "data"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(data)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        # Leave ~450 KB: the adapter weights of the first checkpoint fit, its trainer_state.pt does not,
        # and torch.save reports that as a RuntimeError.
        free = shutil.disk_usage(data).free
        (data / "filler").write_bytes(b"\0" * (free - 450_000))
        with pytest.raises(TrainingError, match="the disk is full; free some space") as info:
            training_run.run_training(quick_cfg(**{"train.max_steps": 3}), run_name="full")
        assert "MB free in" in str(info.value)
        run = S.get_run("full")
        assert run.status() == "failed" and "disk is full" in run.meta()["error"]
        assert not [p for p in run.checkpoints_dir.iterdir()]  # the half-written checkpoint is gone
    finally:
        subprocess.run(["umount", "-l", str(data)])


# --- 7. SIGTERM and SIGHUP ----------------------------------------------------------------------------

def test_sigterm_saves_a_checkpoint_and_exits_like_ctrl_c(home):
    run = S.Run(S.runs_dir() / "termed")
    proc = start(home, ["train", *FAST, "--name", "termed", "--set", "train.max_steps=200",
                        "--set", "train.save_every=0", "--set", 'quant.mode="none"',
                        "--set", "quant.double_quant=false", "--set", "data.eval_fraction=0"])
    wait_for(lambda: len(train_steps(run.run_dir)) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]  # was: killed by the signal, every step since the start lost
    assert "SIGTERM: stopping after this step" in err and "resume with: humanlike-tui train --resume termed" in err
    assert run.status() == "stopped"
    step = run.latest_checkpoint()[0]
    assert step >= 2 and max(train_steps(run.run_dir)) == step
    assert not (run.run_dir / "run.lock").exists()


def test_sighup_and_sigterm_stop_the_cli_run_like_ctrl_c():
    import threading

    from humanlike_tui.commands import train

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        stop = threading.Event()
        previous = train.install_interrupt(stop)
        try:
            os.kill(os.getpid(), sig)  # a real signal to this process: handled, not fatal
            assert stop.is_set()
        finally:
            train.restore_signals(previous)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_sigterm_in_the_tui_stops_the_run_with_a_checkpoint_then_quits():
    import time

    from support.fakes import FakeClock, FakeEngine, fake_services

    from humanlike_tui.ui.app import make_app

    async def wait_until(pilot, condition, what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await pilot.pause(0.02)

    engine = FakeEngine(total_steps=40, hold_at=5)
    app = make_app(fake_services(engine, FakeClock()), load_preset("demo"), Path("config.toml"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await pilot.press("n")
        await wait_until(pilot, engine.holding.is_set, what="the run to reach step 5")
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)  # else the kill would end pytest
        os.kill(os.getpid(), signal.SIGTERM)
        await wait_until(pilot, lambda: not app.is_running or not app.state.tracker.active, what="the stop")
    assert engine.saved_step == 5  # stopped (checkpoint) at the step it had reached, then quit
    assert app.return_code == 0


# --- 10. an adapter written before manifests, truncated: chat says so -----------------------------------

def test_chat_with_a_truncated_adapter_is_a_message_not_a_traceback(home, capsys):
    from humanlike_tui import cli

    run = three_checkpoints(home)
    (run.adapter_dir / files.COMPLETE).write_text('{"written": 1}')  # no manifest: only loading can tell
    damage(run.adapter_dir, "truncated adapter")
    assert cli.main(["chat", "--adapter", "cps", "--prompt", "hi", "--json"]) == 2
    out, err = capsys.readouterr()
    assert "adapter_model.safetensors is damaged (Error while deserializing header" in err, err
    assert "resume or retrain the run" in err and "Traceback" not in err and out == ""
