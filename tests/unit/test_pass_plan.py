"""The engine's plan for a step: checkpointing only when the step would need more passes without it,
and the largest pass that planning.estimate's model says fits (phi-2 on an 8 GB card, tiny-phi on a CPU)."""

from __future__ import annotations

import dataclasses

import pytest

from humanlike_tui.config import load_preset
from humanlike_tui.engine import planning as memory
from humanlike_tui.engine import models as M
from humanlike_tui.engine.planning.passes import VRAM_PLAN_CAP, PassPlan, largest_tokens, plan_passes, vram_plan_limit

GiB = 2**30
STEP = 16 * 130  # 16 samples of the builtin sample's longest length


@pytest.fixture(scope="module")
def phi2():
    cfg = load_preset("gaming-8gb")
    shapes = memory.shapes_from_hf_config(M.phi2_config(), "builtin:phi-2-random", "test")
    return shapes, dataclasses.replace(memory.settings_for(cfg, shapes, "cuda", True), seq_len=130)


def torch_peak(shapes, settings, tokens: int, ckpt: bool) -> int:
    items = memory.estimate_items(shapes, dataclasses.replace(settings, tokens=tokens, checkpointing=ckpt))
    return sum(it.bytes for it in items if it.key != "cuda_context")


def test_largest_tokens_is_a_binary_search():
    assert largest_tokens(lambda t: t <= 777, 8192) == 777
    assert largest_tokens(lambda t: True, 8192) == 8192
    assert largest_tokens(lambda t: False, 8192) == 0


def test_the_vram_limit_defaults_to_an_8gb_card_and_can_be_raised_but_never_past_the_card():
    h100 = 79 * GiB
    assert vram_plan_limit(h100, 0) == VRAM_PLAN_CAP == int(7.5 * GiB)  # default: an 8 GB card's plan
    assert vram_plan_limit(h100, 40) == 40 * GiB  # train.vram_limit_gib = 40 on a big card
    assert vram_plan_limit(int(6.1 * GiB), 0) == int(6.1 * GiB)  # never more than is available
    assert vram_plan_limit(int(6.1 * GiB), 24) == int(6.1 * GiB)
    assert vram_plan_limit(-5, 0) == 0


def test_a_raised_limit_lets_phi2_skip_checkpointing_and_take_whole_steps(phi2):
    shapes, s = phi2
    default = plan_passes(shapes, s, vram_plan_limit(79 * GiB, 0), STEP, 8192, allow_ckpt=True)
    raised = plan_passes(shapes, s, vram_plan_limit(79 * GiB, 40), STEP, 8192, allow_ckpt=True)
    assert default.checkpointing and not raised.checkpointing and raised.budget >= STEP


def test_phi2_on_an_8gb_card_checkpoints_and_plans_with_headroom(phi2):
    shapes, s = phi2
    limit = int(7.3 * GiB)  # an 8 GB card: free after the CUDA context and a desktop, plus our weights
    plan = plan_passes(shapes, s, limit, STEP, 8192, allow_ckpt=True)
    assert plan.checkpointing  # phi-2 without checkpointing needs ~7 MB a token: not even one step fits
    assert STEP < plan.budget < 8192  # the old rough formula planned 8192 tokens, which the model puts past 7.3 GiB
    assert torch_peak(shapes, s, plan.budget, True) * (1 + memory.FIT_MARGIN) <= limit
    assert torch_peak(shapes, s, plan.budget + 1, True) * (1 + memory.FIT_MARGIN) > limit


def test_checkpointing_is_skipped_when_the_step_fits_without_it(phi2):
    shapes, s = phi2
    roomy = plan_passes(shapes, s, 40 * GiB, STEP, 8192, allow_ckpt=True)
    assert roomy == PassPlan(False, roomy.budget) and roomy.budget >= STEP
    assert not plan_passes(shapes, s, int(7.3 * GiB), STEP, 8192, allow_ckpt=False).checkpointing  # the user said no


def test_a_fixed_budget_is_kept_and_only_checkpointing_is_chosen(phi2):
    shapes, s = phi2
    assert plan_passes(shapes, s, int(7.3 * GiB), STEP, 8192, True, fixed_budget=1024) == PassPlan(True, 1024)
    assert plan_passes(shapes, s, 40 * GiB, STEP, 8192, True, fixed_budget=1024) == PassPlan(False, 1024)


def test_tiny_model_on_the_cpu_runs_whole_steps_without_checkpointing():
    cfg = load_preset("demo").replace(**{"model.gradient_checkpointing": True})
    shapes = memory.shapes_from_hf_config(M.tiny_phi_config(), "builtin:tiny-phi", "test")
    s = dataclasses.replace(memory.settings_for(cfg, shapes, "cpu", False), seq_len=130)
    plan = plan_passes(shapes, s, 4 * GiB, STEP, 8 * 256, allow_ckpt=True, dynamic_only=True)
    assert plan == PassPlan(False, 8 * 256)
