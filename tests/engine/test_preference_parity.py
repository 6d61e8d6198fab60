"""ORPO and SimPO equal TRL's own losses (trl.experimental: ORPOTrainer; CPOTrainer with loss_type "simpo"
and cpo_alpha 0, TRL's pure SimPO) on the same batches and the same LoRA weights, within 1e-5: our step
(StepRunner, split into two passes) against TRL's get_batch_loss_metrics on one batch of the same token ids.
Slow only because importing trl takes seconds."""

from __future__ import annotations

import contextlib

import pytest

pytestmark = pytest.mark.slow

ROWS = 4


def _setup(cfg):
    import torch

    from humanlike_tui.engine import data as D
    from humanlike_tui.engine import models as M
    from humanlike_tui.engine.training.steps import StepRunner

    model, tok = M.load_base_model(cfg, M.resolve_precision(cfg, "cpu"))
    torch.manual_seed(0)
    model = M.attach_lora(cfg, model, False)
    with torch.no_grad():  # LoRA's B starts at zero: move it so that the adapter changes the log-probs
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.eval()  # no dropout: both sides see the same function
    rows, counts = D.load_rows(cfg.data, need_rejected=True)
    exs = D.tokenize_rows(rows[:ROWS], tok, cfg.data, counts, True)
    budget = 2 * 2 * max(e.length for e in exs)  # two pairs per pass: our step takes two passes
    runner = StepRunner(cfg, model, tok, torch.device("cpu"), contextlib.nullcontext, exs, [], None, None, None,
                        None, budget, lambda event: None)
    assert len(runner.passes(list(range(ROWS)), cfg.train.method)) == 2
    return model, tok, exs, runner


def _trl_batch(exs, pad_id):
    """TRL's tokenized pair batch (prompt masked to -100 in the labels, right padding) from our token ids."""
    from humanlike_tui.engine import data as D

    batch = {}
    for side in ("chosen", "rejected"):
        ids, labels, att = D.pad_batch([D.sft_tensors(e, False, side) for e in exs], pad_id)
        batch |= {f"{side}_input_ids": ids, f"{side}_attention_mask": att, f"{side}_labels": labels}
    return batch


def _ours(runner):
    idx = list(range(ROWS))
    stats, _ = runner.forward_backward(runner.cfg.train.method, idx, idx)
    return {k: float(v) for k, v in stats.items()}


def _trl_args(cls, tmp_path, **kw):
    return cls(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, bf16=False, max_length=512, **kw)


def _dataset():
    from datasets import Dataset

    return Dataset.from_dict({"prompt": ["hi"], "chosen": ["hello"], "rejected": ["greetings"]})


def test_orpo_loss_equals_trls_orpo_trainer(home, demo_cfg, tmp_path):
    import torch
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    # TRL's ORPO takes its SFT loss over prompt and answer: data.train_on_prompt does the same here.
    cfg = demo_cfg.replace(**{"quant.mode": "none", "train.method": "orpo", "train.orpo_lambda": 0.25,
                              "data.train_on_prompt": True})
    model, tok, exs, runner = _setup(cfg)
    ours = _ours(runner)
    trainer = ORPOTrainer(model=model, args=_trl_args(ORPOConfig, tmp_path, beta=0.25), train_dataset=_dataset(),
                          processing_class=tok)
    with torch.no_grad():
        loss, m = trainer.get_batch_loss_metrics(model, _trl_batch(exs, tok.pad_token_id))
    assert ours["loss_sum"] == pytest.approx(float(loss), abs=1e-5)
    assert ours["nll_sum"] == pytest.approx(m["nll_loss"], abs=1e-5)
    assert ours["log_odds_sum"] == pytest.approx(m["log_odds_chosen"], abs=1e-5)  # TRL's name for the log odds
    assert ours["chosen_sum"] == pytest.approx(m["rewards/chosen"], abs=1e-5)
    assert ours["rejected_sum"] == pytest.approx(m["rewards/rejected"], abs=1e-5)
    assert ours["correct"] == pytest.approx(m["rewards/accuracies"], abs=1e-6)
    assert ours["logp_chosen_sum"] == pytest.approx(m["logps/chosen"], abs=1e-5)


def test_simpo_loss_equals_trls_cpo_trainer_with_loss_type_simpo(home, demo_cfg, tmp_path):
    import torch
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    cfg = demo_cfg.replace(**{"quant.mode": "none", "train.method": "simpo", "train.simpo_beta": 2.0,
                              "train.simpo_gamma": 0.7})
    model, tok, exs, runner = _setup(cfg)
    ours = _ours(runner)
    args = _trl_args(CPOConfig, tmp_path, loss_type="simpo", cpo_alpha=0.0, beta=2.0, simpo_gamma=0.7)
    trainer = CPOTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tok)
    with torch.no_grad():
        loss, m = trainer.get_batch_loss_metrics(model, _trl_batch(exs, tok.pad_token_id))
    assert 0.1 < float(loss) < 5  # a real loss, not a saturated one
    assert ours["loss_sum"] == pytest.approx(float(loss), abs=1e-5)
    assert ours["chosen_sum"] == pytest.approx(m["rewards/chosen"], abs=1e-5)
    assert ours["rejected_sum"] == pytest.approx(m["rewards/rejected"], abs=1e-5)
    assert ours["correct"] == pytest.approx(m["rewards/accuracies"], abs=1e-6)
    assert ours["logp_rejected_sum"] == pytest.approx(m["logps/rejected"], abs=1e-5)
