"""Out of memory, injected on the CPU: training halves its token budget and goes on with the same
result; past the limit it fails with a clear message and keeps its last checkpoint; generation gives
a message, not a crash."""

from __future__ import annotations

import pytest
import torch
from reliability_helpers import FAST_OVERRIDES

from humanlike_tui import events as E
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.training import run as T
from humanlike_tui.errors import TrainingError
from humanlike_tui.engine import logprobs


def inject_oom(monkeypatch, should_fail):
    """answer_logprobs raises CUDA's OutOfMemoryError on the training passes where should_fail(n) is true."""
    real = logprobs.answer_logprobs
    calls = {"n": 0}

    def fake(model, input_ids, labels, attention, device):
        if model.training:
            calls["n"] += 1
            if should_fail(calls["n"], input_ids):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(model, input_ids, labels, attention, device)

    monkeypatch.setattr(logprobs, "answer_logprobs", fake)
    return calls


@pytest.fixture
def oom_cfg(demo_cfg):
    # 600 tokens per pass: two micro-batches per step, so an error in the second one finds the
    # first one's gradients already accumulated (they must be dropped, or the step counts them twice).
    return demo_cfg.replace(**FAST_OVERRIDES, **{"train.max_steps": 3, "train.micro_batch_tokens": 600,
                                                 "quant.mode": "none"})


def test_oom_halves_the_budget_and_the_result_is_unchanged(oom_cfg, monkeypatch):
    plain: list = []
    T.run_training(oom_cfg, plain.append)

    inject_oom(monkeypatch, lambda n, ids: n in (2, 8))  # step 1's second pass, then one in step 2
    events: list = []
    result = T.run_training(oom_cfg, events.append)
    assert result.status == "finished"
    reduced = [e for e in events if isinstance(e, E.BatchReduced)]
    assert [(e.old_tokens, e.new_tokens) for e in reduced] == [(600, 300), (300, 150)]
    assert reduced[0].step == 1 and "effective batch" in reduced[0].message
    losses = [e.loss for e in events if isinstance(e, E.Step)]
    assert losses == pytest.approx([e.loss for e in plain if isinstance(e, E.Step)], abs=1e-4)
    assert S.get_run(result.run_id).meta()["status"] == "finished"


def test_oom_beyond_the_limit_fails_clearly_and_keeps_the_checkpoint(oom_cfg, monkeypatch):
    state = {"fail": False}
    inject_oom(monkeypatch, lambda n, ids: state["fail"])
    events: list = []

    def emit(event):
        events.append(event)
        if isinstance(event, E.CheckpointSaved) and event.step == 2:
            state["fail"] = True  # from step 3 on, nothing fits

    cfg = oom_cfg.replace(**{"train.max_steps": 4, "train.save_every": 1})
    with pytest.raises(TrainingError, match="out of GPU memory at step 3") as info:
        T.run_training(cfg, emit)
    message = str(info.value)
    assert "data.max_length" in message and "gradient_checkpointing" in message and "checkpoint is kept" in message
    assert [e.new_tokens for e in events if isinstance(e, E.BatchReduced)] == [300, 150]
    assert isinstance(events[-1], E.Failed)
    run = S.list_runs()[0]
    assert run.status() == "failed" and run.latest_checkpoint()[0] == 2

    state["fail"] = False  # memory is back: the run resumes from its checkpoint and finishes
    result = T.run_training(None, resume=run.run_id)
    assert result.status == "finished" and result.summary["steps"] == 4


def test_generation_oom_is_a_message_not_a_crash(trained, monkeypatch, capsys):
    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(trained.home))
    from humanlike_tui import cli
    from humanlike_tui.errors import GenerationError
    from humanlike_tui.engine.inference.generator import Generator

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (injected)")

    gen = Generator.open(trained.run_id)
    model_cls = type(gen.model)  # peft's PeftModelForCausalLM: its generate() runs both sides
    try:
        real = model_cls.generate
        monkeypatch.setattr(model_cls, "generate", oom)
        with pytest.raises(GenerationError, match="out of system memory while generating the base answer") as info:
            gen.answer("base", "How was your day?")
        assert "lower max new tokens" in str(info.value) and "still loaded" in str(info.value)
        monkeypatch.setattr(model_cls, "generate", real)
        answer = gen.answer("adapter", "How was your day?", settings=gen.settings(max_new_tokens=4))
        assert answer.tokens > 0  # the model is still usable after the error
    finally:
        gen.close()

    # The same through the headless command: exit code 1 and the message, no traceback.
    monkeypatch.setattr(model_cls, "generate", oom)
    code = cli.main(["chat", "--adapter", trained.run_id, "--prompt", "hi", "--json"])
    err = capsys.readouterr().err
    assert code == 1 and "out of system memory" in err and "Traceback" not in err
