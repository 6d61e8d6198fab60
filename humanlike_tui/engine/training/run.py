"""run_training(config, emit, stop) -> TrainResult: SFT, DPO and SFT-then-DPO behind one loop.

Why our own loop instead of HF Trainer: exact stop/pause/resume (data order, learning rate and
dropout seeds are pure functions of the step, so resuming at step k replays the same run), token-
budget micro-batches whose split never changes the maths (the loss is normalised by the whole
step's answer tokens, so halving the budget after an out-of-memory error changes speed, not the
result), logits computed only where a label exists, and one sync with the host per optimizer step.

The engine never imports textual: it talks through `emit(event)` and stops when `stop` is set."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from humanlike_tui.config import Config
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import ConfigError, HumanlikeError, InputError, TrainingError, write_crash_report
from humanlike_tui.events import (Emit, Failed, Finished, Log, RunStarted, ignore)
from humanlike_tui.engine.training.distributed import Dist, barrier, init_distributed
from humanlike_tui.engine.training.schedule import check_resume_compatible
from humanlike_tui.engine.training.trainer import StoppedBeforeStart, Trainer
from humanlike_tui.engine.hardware.probe import library_versions
from humanlike_tui.engine.training.checkpoints import restore_newest


@dataclass
class TrainResult:
    run_id: str
    run_dir: str
    status: str  # finished | stopped | paused
    adapter_dir: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


def run_training(cfg: Config | None, emit: Emit = ignore, stop: threading.Event | None = None, *,
                 resume: str | None = None, pause: threading.Event | None = None, run_name: str | None = None,
                 power: Callable[[], float | None] | None = None) -> TrainResult:
    """Train per `cfg` (or resume run `resume`, optionally with a changed cfg such as more steps).

    Emits RunStarted, DataReport, Step, Eval, CheckpointSaved, then Finished or Stopped; on an error
    emits Failed and raises (InputError for the user's input, TrainingError otherwise).
    """
    stop = stop or threading.Event()
    pause = pause or threading.Event()
    dist = init_distributed()
    run = None
    trainer = None
    try:
        run, cfg, checkpoints = _open_run(cfg, resume, run_name, dist)
        trainer = Trainer(cfg, emit, stop, pause, run, dist, power)
        if dist.main:
            run.update_meta(status="running", base_model=cfg.model.name, method=cfg.train.method,
                            data_source=cfg.data.source, versions=library_versions(), max_steps=cfg.train.max_steps)
        trainer.setup()
        damaged, restored = restore_newest(trainer, checkpoints) if checkpoints else ([], None)
        barrier(dist)  # every rank has read its checkpoint before the damaged ones go
        if dist.main:
            for path, _ in damaged:
                S.discard_folder(path)
        if restored is not None:
            if dist.main:
                run.truncate_metrics(trainer.state.step)
            trainer.log(f"resumed {run.run_id} at step {trainer.state.step}")
        elif resume:
            if dist.main:
                run.truncate_metrics(0)
            trainer.log(f"{run.run_id} has no complete checkpoint yet: training it again from step 0")
        trainer.t0 = time.perf_counter()
        if dist.main:
            run.update_meta(data=trainer.counts.to_dict(), trainable_params=trainer.trainable,
                            total_params=trainer.total, device=_device_name(trainer.precision),
                            compute_dtype=trainer.precision.compute)
        trainer.emit(RunStarted(run.run_id, str(run.run_dir), cfg.train.method, cfg.to_dict(), trainer.trainable,
                                trainer.total, cfg.train.max_steps, trainer.state.step, _device_name(trainer.precision),
                                trainer.counts.to_dict()))
        status = trainer.loop()
        adapter = ""
        if status == "finished":
            adapter = str(trainer.save_adapter())
        summary = trainer.meta_progress() | {"status": status, "run_id": run.run_id, "adapter_dir": adapter}
        if dist.main:
            run.update_meta(**summary, finished=time.time())
        if status == "finished":
            trainer.emit(Finished(run.run_id, adapter, summary))
        return TrainResult(run.run_id, str(run.run_dir), status, adapter, summary)
    except StoppedBeforeStart:
        return _stopped_before_start(run, resume, dist, emit)
    except HumanlikeError as exc:
        if isinstance(exc, InputError) and run is not None and not resume and not (trainer and trainer.state.step):
            # Bad config, data or model on a new run: it never trained, so leave no run folder behind.
            if _discard_new_run(run, dist):
                run = None
        _fail(emit if dist.main else ignore, run, str(exc), "input" if isinstance(exc, InputError) else "error")
        raise
    except KeyboardInterrupt:
        if run is not None and not resume and not (trainer and trainer.state.step):
            _discard_new_run(run, dist)  # stopped before its first step: a new run leaves no folder
            run = None
        raise
    except Exception as exc:
        import torch

        kind = "oom" if isinstance(exc, torch.OutOfMemoryError) else "error"
        reason = _failure_message(exc, run)
        if kind == "error" and reason.startswith("training failed:"):
            reason += _unexpected(exc, cfg)
        _fail(emit if dist.main else ignore, run, reason, kind)
        raise TrainingError(reason) from exc
    finally:
        if trainer is not None:
            trainer.free()
        if run is not None and dist.main:
            run.release()


def _stopped_before_start(run: S.Run, resume: str | None, dist: Dist, emit: Emit) -> TrainResult:
    """Stopped while loading: a new run leaves no folder; a resumed one keeps its checkpoints as they were."""
    run_id, run_dir = run.run_id, str(run.run_dir)
    if resume:
        run.update_meta(status="stopped")
        emit(Log(f"stopped before the first step: {run_id} keeps its checkpoints as they were"))
    else:
        _discard_new_run(run, dist)
        emit(Log("stopped before the first step: nothing to save, so the new run was not kept"))
    return TrainResult(run_id, run_dir, "stopped", summary={"status": "stopped", "run_id": run_id,
                                                             "before_first_step": True})


def _discard_new_run(run: S.Run, dist: Dist) -> bool:
    """Remove a run folder made by this call (the other ranks only forget it). False: kept."""
    if not dist.main:
        return True
    if run.checkpoints():
        return False
    import shutil

    trash = run.run_dir.with_name(f".tmp-discard-{run.run_id}-{os.getpid()}")
    try:
        os.replace(run.run_dir, trash)  # out of the list at once, even if the delete is cut short
    except OSError:
        return False
    run.release()
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _failure_message(exc: Exception, run: S.Run | None = None) -> str:
    full = _disk_full(exc, run)
    if full is not None:
        return ("the disk is full; free some space and resume the run (the last complete checkpoint is kept, "
                f"the one being written was discarded{full})")
    return f"training failed: {type(exc).__name__}: {exc}"


def _unexpected(exc: Exception, cfg: Config | None) -> str:
    """The failure message of an error we did not foresee, with a crash report (traceback, versions,
    config) for the bug report: the person sees one line, never a traceback."""
    report = write_crash_report(exc, config=cfg)
    return f" (crash report: {report})" if report is not None else ""


NO_SPACE = (28, 122)  # ENOSPC, EDQUOT (over quota)
FULL_BELOW_BYTES = 64 * 2**20
WRITE_WORDS = ("write", "unexpected pos", "no space", "os error 28", "i/o error")


def _disk_full(exc: BaseException, run: S.Run | None) -> str | None:
    """Whether a failure was the disk filling up: ' (N MB free in DIR)' or '' if so, None if not.

    Not every writer says ENOSPC: torch.save reports a full disk as RuntimeError('... unexpected pos
    ...' / 'file write failed'), safetensors as its own error type. So for any failure that looks like
    a write, look at the free space where the run writes."""
    seen, chain = set(), []
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(e, OSError) and e.errno in NO_SPACE for e in chain):
        return _free_text(run)
    looks_like_write = any(isinstance(e, OSError) or any(w in f"{type(e).__name__} {e}".lower() for w in WRITE_WORDS)
                           for e in chain)
    if not looks_like_write or run is None:
        return None
    free = _free_bytes(run)
    newest = run.latest_checkpoint()
    needed = max(FULL_BELOW_BYTES, 2 * S.folder_bytes(newest[1]) if newest else 0)
    return _free_text(run) if free is not None and free < needed else None


def _free_bytes(run: S.Run | None) -> int | None:
    import shutil

    try:
        return shutil.disk_usage(run.run_dir).free if run is not None else None
    except OSError:
        return None


def _free_text(run: S.Run | None) -> str:
    free = _free_bytes(run)
    return "" if free is None else f"; {free / 2**20:.1f} MB free in {run.run_dir.parent}"


def _open_run(cfg: Config | None, resume: str | None, run_name: str | None, dist: Dist):
    """The run to train, its config and the checkpoint to resume from. The main process holds the
    run's lock before it changes anything: a resume refused because another process trains the run
    (StoreError) has changed no byte of it, and its caller gets no run to mark failed or unlock."""
    if resume:
        run = S.get_run(resume)
        if dist.main:
            run.acquire()
        try:
            saved = run.config()
            cfg = cfg or saved
            check_resume_compatible(saved, cfg)
            run.clean_partial() if dist.main else None
            checkpoints = run.checkpoints()  # none: killed before its first checkpoint, starts again
            if dist.main and cfg != saved:
                from humanlike_tui.config import save_config

                save_config(cfg, run.run_dir / "config.toml",
                            header=f"config of run {run.run_id} (changed on resume)")
        except BaseException:
            run.release()
            raise
        return run, cfg, checkpoints
    if cfg is None:
        raise ConfigError("config: give a config or a run to resume")
    if dist.world > 1:
        run = _shared_run(cfg, run_name, dist)
    else:
        run = S.create_run(cfg, run_name)
    if dist.main:
        run.acquire()
    return run, cfg, []


def _shared_run(cfg: Config, run_name: str | None, dist: Dist) -> S.Run:
    """Data-parallel: the main process creates the run folder, the others learn its name."""
    import torch.distributed as dist_mod

    box = [S.create_run(cfg, run_name).run_id if dist.main else None]
    dist_mod.broadcast_object_list(box, src=0)
    return S.Run(S.runs_dir() / box[0])


def _fail(emit: Emit, run: S.Run | None, reason: str, kind: str) -> None:
    if run is not None and run.holds_lock:  # only the process that holds the run writes to it
        try:
            run.update_meta(status="failed", error=reason, failed=time.time())
        except OSError:
            pass  # the disk may be the problem; the event still tells the user
    emit(Failed(reason, run.run_id if run else "", kind))


def _device_name(precision) -> str:
    import torch

    if precision.device == "cuda":
        return f"{torch.cuda.get_device_name()} ({precision.compute})"
    return f"CPU ({precision.compute})"
