"""Data-parallel training with `accelerate launch`: two CPU processes (gloo) on the builtin tiny model.

One run folder, one adapter, one meta.json; metrics logged by the main process only (one line per
step); the losses equal a one-process run's (the global batch is split, the loss normalised over the
whole step, gradients summed); `--resume` works with two processes, and Ctrl+C stops both at one
step with one checkpoint (the launcher itself then reports the signal with its own traceback).

On a CPU-only machine `accelerate launch --num_processes 2` alone runs ONE process (its CPU path
needs MPI); `--multi_gpu` selects the torchrun launcher, which starts both, and the engine asks
accelerate for gloo when there is no CUDA. On a multi-GPU machine `--num_processes N` is enough.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from reliability_helpers import FAST_OVERRIDES, child_env, train_steps, wait_for

from humanlike_tui import config as C
from humanlike_tui import events as E
from humanlike_tui.engine.storage import runs as S

pytest.importorskip("accelerate")
if not __import__("torch").distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(home, *args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "humanlike_tui", "train", *args]
    proc = subprocess.Popen(cmd, env=child_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if not wait:
        return proc
    proc.stdout_text, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-4000:]
    return proc


@pytest.mark.slow  # ~35 s: two real processes under accelerate (CI runs it: .ci/run -m slow)
def test_two_processes_train_resume_and_match_one_process(home, tmp_path):
    cfg = C.load_preset("demo").replace(**{**FAST_OVERRIDES, "quant.mode": "none", "train.max_steps": 4,
                                           "train.save_every": 2})
    config_file = C.save_config(cfg, tmp_path / "ddp.toml")

    proc = launch(home, "--config", str(config_file), "--name", "ddp", "--json")
    json_lines = [line for line in proc.stdout_text.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1, proc.stdout_text  # the result is printed by the main process only
    assert json.loads(json_lines[0])["status"] == "finished"
    runs = S.list_runs()
    assert [r.run_id for r in runs] == ["ddp"]
    run = runs[0]
    assert run.status() == "finished" and S.is_complete(run.adapter_dir)
    assert list(run.run_dir.glob("**/adapter_model.safetensors")) != []
    assert len(list(run.run_dir.rglob("meta.json"))) == 1
    assert train_steps(run.run_dir) == [1, 2, 3, 4]  # one line per step: the main process logs
    assert [s for s, _ in run.checkpoints()] == [2, 4]
    two = [m["loss"] for m in run.metrics() if m["kind"] == "train"]

    # The same config in one process: the same losses.
    from humanlike_tui.engine.training.run import run_training

    events: list = []
    run_training(cfg, events.append, run_name="single")
    one = [e.loss for e in events if isinstance(e, E.Step)]
    assert two == pytest.approx(one, abs=1e-4)

    # Resume with two processes, then Ctrl+C: both stop at the same step, one checkpoint is saved.
    proc = launch(home, "--resume", "ddp", "--set", "train.max_steps=400", wait=False)
    wait_for(lambda: max(train_steps(run.run_dir)) >= 5, proc)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl+C goes to the launcher, which passes it on
    out, err = proc.communicate(timeout=200)
    step = run.latest_checkpoint()[0]
    assert f"stopped at step {step}; resume with: humanlike-tui train --resume ddp" in err, err[-4000:]
    assert run.status() == "stopped" and 5 <= step < 400 and run.config().train.max_steps == 400
    assert train_steps(run.run_dir) == list(range(1, step + 1))  # resumed at 5, every step logged once
    assert sorted(r.run_id for r in S.list_runs()) == ["ddp", "single"]
    assert not (run.run_dir / "run.lock").exists()
