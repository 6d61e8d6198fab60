"""The UI tests' training double (tests/support/fakes.py: FakeEngine) and the real engine, behind the
same protocol (humanlike_tui.protocols.TrainingService), emit the same events in the same order for one
scenario: train the builtin tiny model with an evaluation mid-run, stop after step 2 (a checkpoint),
then resume to the end. So the pilot and snapshot tests, which only ever see the double, cannot drift
from what the real engine sends the app. Log lines are free text: a run of them counts as one."""

from __future__ import annotations

import threading

from humanlike_tui import events as ev
from humanlike_tui.protocols import TrainingService
from humanlike_tui.ui.services import EngineTraining
from support.fakes import FakeEngine

STEPS, EVAL_EVERY, STOP_AFTER = 4, 2, 2


def signature(event: ev.Event) -> tuple:
    """What the app acts on: the event's type, and where it happened for those that say."""
    match event:
        case ev.RunStarted():
            return ("RunStarted", event.start_step, event.total_steps)
        case ev.Step() | ev.Eval():
            return (type(event).__name__, event.step)
        case ev.CheckpointSaved():
            return ("CheckpointSaved", event.step, event.reason)
        case ev.Stopped():
            return ("Stopped", event.step, event.paused)
    return (type(event).__name__,)


def collapsed(events: list[ev.Event]) -> list[tuple]:
    out: list[tuple] = []
    for sig in map(signature, events):
        if not (out and sig == out[-1] == ("Log",)):
            out.append(sig)
    return out


def stop_then_resume(service: TrainingService, cfg) -> tuple[list[tuple], list[tuple]]:
    """The signatures of both calls: the first stopped after step STOP_AFTER, the second resuming it."""
    calls: list[list[ev.Event]] = []
    for resume in (None, "the first call's run"):
        seen: list[ev.Event] = []
        stop = threading.Event()

        def emit(event: ev.Event) -> None:
            seen.append(event)
            if isinstance(event, ev.Step) and event.step == STOP_AFTER and not calls:
                stop.set()  # as the Stop key does, mid-run

        if calls:
            resume = next(e.run_id for e in calls[0] if isinstance(e, ev.RunStarted))
        result = service.run(cfg, emit, stop, resume=resume)
        assert result.status == ("finished" if calls else "stopped")
        calls.append(seen)
    return collapsed(calls[0]), collapsed(calls[1])


def test_the_fake_engine_emits_what_the_real_engine_emits(demo_cfg):
    cfg = demo_cfg.replace(**{"train.max_steps": STEPS, "train.eval_every": EVAL_EVERY, "train.sample_prompts": 0})
    real = stop_then_resume(EngineTraining(), cfg)
    fake = stop_then_resume(FakeEngine(total_steps=STEPS, eval_every=EVAL_EVERY), cfg)
    assert fake == real
    stopped, resumed = real  # the scenario is the one meant: stop with a checkpoint, resume to the end
    assert stopped[-2:] == [("CheckpointSaved", STOP_AFTER, "stop"), ("Stopped", STOP_AFTER, False)]
    assert ("RunStarted", STOP_AFTER, STEPS) in resumed and ("DataReport",) in resumed
    assert resumed[-2:] == [("CheckpointSaved", STEPS, "final"), ("Finished",)]
