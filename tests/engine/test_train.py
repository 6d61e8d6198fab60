"""The engine end to end on the builtin tiny model (CPU): loss falls with nf4 and without
quantization, stop + resume replays the uninterrupted curve, an interrupted run never leaves an
adapter that looks complete, and events/metadata carry what the UI and scripts need."""

from __future__ import annotations

import json
import threading

import pytest

from humanlike_tui import events as E
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.training.schedule import lr_at, pack_micro_batches
from humanlike_tui.engine.training.run import run_training
from humanlike_tui.errors import ConfigError, InputError


class Recorder:
    def __init__(self, stop_at: int | None = None, pause: bool = False):
        self.events: list[E.Event] = []
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.stop_at, self.use_pause = stop_at, pause

    def __call__(self, event):
        self.events.append(event)
        if isinstance(event, E.Step) and event.step == self.stop_at:
            (self.pause if self.use_pause else self.stop).set()

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    def losses(self):
        return [e.loss for e in self.of(E.Step)]


@pytest.mark.parametrize("quant", ["nf4", "none"])
def test_demo_trains_and_loss_falls(demo_cfg, quant):
    cfg = demo_cfg.replace(**{"quant.mode": quant, "train.max_steps": 16, "train.eval_every": 8})
    rec = Recorder()
    result = run_training(cfg, rec)
    losses = rec.losses()
    assert result.status == "finished" and len(losses) == 16
    assert sum(losses[-4:]) / 4 < losses[0] - 0.5, losses
    evals = rec.of(E.Eval)
    assert [e.step for e in evals] == [8, 16] and evals[-1].eval_loss < evals[0].eval_loss + 0.05
    started = rec.of(E.RunStarted)[0]
    assert 0 < started.trainable_params < started.total_params
    assert started.data["train_rows"] > 0 and started.data["eval_rows"] > 0
    step = rec.of(E.Step)[-1]
    assert step.tokens_per_s > 0 and step.samples_seen == 16 * 8 and step.tokens_seen > 0
    assert isinstance(rec.events[-1], E.Finished)


@pytest.mark.slow  # ~12 s: bf16 matmuls are ~100x slower than fp32 on this CPU (CI runs it: .ci/run -m slow)
def test_bf16_without_autocast_trains_like_fp32(demo_cfg):
    # quant.autocast = false on a GPU runs the bf16 weights and activations as they are, with the LoRA
    # in fp32: the path a CPU takes with quant.compute_dtype = bf16. It must learn like fp32 does.
    cfg = demo_cfg.replace(**{"train.max_steps": 12, "train.eval_every": 0})
    curves = {}
    for dtype in ("fp32", "bf16"):
        rec = Recorder()
        assert run_training(cfg.replace(**{"quant.compute_dtype": dtype, "quant.autocast": False}), rec).status == "finished"
        curves[dtype] = rec.losses()
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert sum(bf16[-3:]) / 3 < bf16[0] - 0.5, bf16
    assert all(abs(a - b) < 0.15 for a, b in zip(fp32, bf16)), (fp32, bf16)


def test_run_folder_meta_and_adapter(demo_cfg):
    rec = Recorder()
    result = run_training(demo_cfg, rec)
    run = S.get_run(result.run_id)
    meta = run.meta()
    assert meta["status"] == "finished" and run.status() == "finished"
    assert meta["base_model"] == "builtin:tiny-phi" and meta["data_source"] == "builtin:sample"
    assert meta["data"]["rows_read"] >= 100 and "dropped" in meta["data"]
    assert meta["steps"] == 8 and meta["first_loss"] > meta["final_loss"]
    assert meta["final_eval_loss"] > 0 and meta["duration_s"] > 0 and meta["peak_memory_bytes"] > 0
    assert {"torch", "transformers", "peft", "bitsandbytes"} <= set(meta["versions"])
    assert S.is_complete(run.adapter_dir)
    assert (run.adapter_dir / "adapter_model.safetensors").exists()
    assert (run.adapter_dir / "base_model.txt").read_text().strip() == "builtin:tiny-phi"
    assert run.config() == demo_cfg
    lines = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if m["kind"] == "train"] == list(range(1, 9))
    assert not (run.run_dir / "run.lock").exists()


def test_stop_then_resume_matches_uninterrupted_run(demo_cfg):
    cfg = demo_cfg.replace(**{"train.max_steps": 10, "train.eval_every": 0, "lora.dropout": 0.1,
                              "data.eval_fraction": 0.1})
    full = Recorder()
    run_training(cfg, full)

    first = Recorder(stop_at=4)
    res = run_training(cfg, first, first.stop)
    assert res.status == "stopped"
    stopped = first.of(E.Stopped)[0]
    assert stopped.step == 4 and not stopped.paused
    assert S.get_run(res.run_id).status() == "stopped"
    assert not S.is_complete(S.get_run(res.run_id).adapter_dir)  # no adapter yet, and none pretends

    second = Recorder()
    res2 = run_training(None, second, resume=res.run_id)
    assert res2.status == "finished" and res2.run_id == res.run_id
    assert second.of(E.RunStarted)[0].start_step == 4
    resumed = first.losses() + second.losses()
    assert resumed == pytest.approx(full.losses(), abs=1e-5)
    metrics = S.get_run(res.run_id).metrics()
    assert [m["step"] for m in metrics if m["kind"] == "train"] == list(range(1, 11))


def test_pause_saves_a_checkpoint_and_resume_can_extend_the_run(demo_cfg):
    rec = Recorder(stop_at=3, pause=True)
    res = run_training(demo_cfg, rec, pause=rec.pause)
    assert res.status == "paused" and rec.of(E.Stopped)[0].paused
    assert S.get_run(res.run_id).latest_checkpoint()[0] == 3
    longer = S.get_run(res.run_id).config().replace(**{"train.max_steps": 10})
    rec2 = Recorder()
    res2 = run_training(longer, rec2, resume=res.run_id)
    assert res2.summary["steps"] == 10 and rec2.of(E.Step)[0].step == 4
    assert S.get_run(res.run_id).config().train.max_steps == 10


def test_a_stop_while_loading_ends_the_run_before_the_model_loads(demo_cfg, monkeypatch):
    """The workbench's Stop during set-up (its engine has no signal to raise): the run ends at the next
    stage, nothing is saved and a new run leaves no folder. Was: the model loaded, one step ran, a checkpoint."""
    from humanlike_tui.engine import models as M

    def no_load(*args, **kwargs):
        raise AssertionError("the model loaded after the stop")

    monkeypatch.setattr(M, "load_base_model", no_load)
    rec = Recorder()
    rec.stop.set()  # pressed while the data was read
    res = run_training(demo_cfg, rec, rec.stop)
    assert res.status == "stopped" and res.summary["before_first_step"]
    assert not rec.of(E.RunStarted) and not rec.of(E.Stopped) and not rec.of(E.Failed)
    assert any("nothing to save" in e.message for e in rec.of(E.Log))
    assert S.list_runs() == []


def test_a_stop_while_a_resume_loads_keeps_the_runs_checkpoints(demo_cfg):
    first = Recorder(stop_at=2)
    res = run_training(demo_cfg, first, first.stop)
    checkpoints = S.get_run(res.run_id).checkpoints()

    class StopOnData(Recorder):  # pressed once the data is read and tokenized, the model already loaded
        def __call__(self, event):
            super().__call__(event)
            if isinstance(event, E.DataReport):
                self.stop.set()

    rec = StopOnData()
    again = run_training(None, rec, rec.stop, resume=res.run_id)
    run = S.get_run(res.run_id)
    assert again.status == "stopped" and not rec.of(E.RunStarted)
    assert run.checkpoints() == checkpoints and run.status() == "stopped"
    assert any(f"{res.run_id} keeps its checkpoints" in e.message for e in rec.of(E.Log))


def test_the_train_screen_says_a_stop_while_loading_saved_nothing():
    from humanlike_tui.ui.run_state import RunTracker
    from humanlike_tui.ui.screens.train import idle_hint

    tracker = RunTracker()
    tracker.status = "stopped"
    assert "before the first step" in idle_hint(tracker) and "nothing to save" in idle_hint(tracker)
    tracker.checkpoint = "/runs/r/checkpoints/step-000004"
    assert "Stopped with a checkpoint (/runs/r/checkpoints/step-000004)" in idle_hint(tracker)


def test_resume_refuses_a_changed_model(demo_cfg):
    rec = Recorder(stop_at=2)
    res = run_training(demo_cfg, rec, rec.stop)
    with pytest.raises(ConfigError, match="lora: cannot change when resuming"):
        run_training(demo_cfg.replace(**{"lora.r": 4}), resume=res.run_id)


def test_interrupted_run_leaves_no_adapter_that_looks_complete(demo_cfg, monkeypatch):
    """A crash while the final adapter is written: the half-written folder is never taken as an adapter."""
    from humanlike_tui.engine.training import run as T

    def crash(self, tmp, **kw):
        (tmp / "adapter_model.safetensors").write_bytes(b"half")
        raise RuntimeError("power cut")

    rec = Recorder()
    real_save = T.Trainer.save_adapter

    def save_adapter(self):
        monkeypatch.setattr(type(self.model), "save_pretrained", crash)
        return real_save(self)

    monkeypatch.setattr(T.Trainer, "save_adapter", save_adapter)
    with pytest.raises(Exception, match="power cut"):
        run_training(demo_cfg, rec)
    run = S.list_runs()[0]
    assert not run.adapter_dir.exists()
    assert not S.is_complete(run.adapter_dir)
    assert not [p for p in run.run_dir.iterdir() if p.name.startswith(".tmp-")]
    assert run.status() == "failed" and isinstance(rec.events[-1], E.Failed)
    assert run.latest_checkpoint()[0] == 8  # the last complete checkpoint survives: resumable


def test_crash_state_is_listed_as_interrupted(demo_cfg):
    rec = Recorder(stop_at=2)
    res = run_training(demo_cfg, rec, rec.stop)
    run = S.get_run(res.run_id)
    run.update_meta(status="running")  # as a SIGKILL would leave it
    S.write_json(run.run_dir / "run.lock", {"pid": 999999, "host": __import__("socket").gethostname()})
    assert run.status() == "interrupted"


def test_bad_data_fails_with_input_error_and_failed_event(demo_cfg, tmp_path):
    bad = tmp_path / "none.jsonl"
    rec = Recorder()
    with pytest.raises(InputError, match="not found"):
        run_training(demo_cfg.replace(**{"data.source": str(bad)}), rec)
    assert isinstance(rec.events[-1], E.Failed) and rec.events[-1].kind == "input"


def test_dpo_and_sft_then_dpo_emit_preference_metrics(demo_cfg):
    rec = Recorder()
    cfg = demo_cfg.replace(**{"train.method": "sft+dpo", "train.max_steps": 6, "train.sft_steps": 3})
    run_training(cfg, rec)
    steps = rec.of(E.Step)
    assert [s.phase for s in steps] == ["sft"] * 3 + ["dpo"] * 3
    assert {"reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy"} <= set(steps[-1].metrics)
    assert steps[3].loss == pytest.approx(0.6931, abs=0.05)  # DPO starts at log 2: policy = reference
    # Both accuracies, under names that say which: log-prob per token, and DPO's implicit reward.
    final = rec.of(E.Eval)[-1].metrics
    assert {"eval_logp_accuracy", "eval_logp_margin", "eval_reward_accuracy"} <= set(final)
    assert 0 <= final["eval_reward_accuracy"] <= 1


def test_micro_batch_split_does_not_change_the_result(demo_cfg):
    """The loss is normalised over the whole step, so the token budget changes speed, not maths."""
    a, b = Recorder(), Recorder()
    cfg = demo_cfg.replace(**{"train.max_steps": 3, "train.eval_every": 0})
    run_training(cfg, a)
    run_training(cfg.replace(**{"train.micro_batch_tokens": 300}), b)
    assert a.losses() == pytest.approx(b.losses(), abs=1e-4)


def test_pack_micro_batches_respects_the_budget():
    lengths = [100, 30, 90, 40, 50]
    batches = pack_micro_batches(lengths, 200)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    assert all(len(b) * max(lengths[i] for i in b) <= 200 for b in batches)


def test_lr_schedule_warms_up_then_decays(demo_cfg):
    cfg = demo_cfg.replace(**{"train.max_steps": 100, "train.warmup_steps": 10, "train.learning_rate": 1e-3})
    lrs = [lr_at(cfg, s) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1e-3
    assert lrs[10] == pytest.approx(1e-3) and lrs[99] < 1e-5


def test_train_on_prompt_loss_equals_transformers_own(demo_cfg):
    """With data.train_on_prompt the loss is normalised by the real targets: every token but the first
    (which nothing predicts). It used to divide by len(prompt) + len(answer), one too many per row."""
    import torch

    from humanlike_tui.engine import data as D
    from humanlike_tui.engine import models as M
    from humanlike_tui.engine.logprobs import answer_logprobs
    from humanlike_tui.engine.training.steps import sft_normaliser

    cfg = demo_cfg.replace(**{"quant.mode": "none", "data.train_on_prompt": True})
    model, tok = M.load_base_model(cfg, M.resolve_precision(cfg, "cpu"))
    model = M.attach_lora(cfg, model, False).eval()
    rows, counts = D.load_rows(cfg.data)
    exs = D.tokenize_rows(rows[:3], tok, cfg.data, counts, False)
    ids, labels, att = D.pad_batch([D.sft_tensors(e, True) for e in exs], tok.pad_token_id)
    with torch.no_grad():
        logp, _ = answer_logprobs(model, ids, labels, att, torch.device("cpu"))
        ours = float(-logp.sum() / sum(sft_normaliser(e, True) for e in exs))
        theirs = float(model(input_ids=ids, attention_mask=att, labels=labels).loss)
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert sft_normaliser(exs[0], True) == len(exs[0].prompt_ids) - 1 + len(exs[0].chosen_ids)
    assert sft_normaliser(exs[0], False) == len(exs[0].chosen_ids)
