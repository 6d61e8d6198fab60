"""The measured memory check: a few real steps through the engine next to the estimate."""

from __future__ import annotations

import json

import pytest

from humanlike_tui.config import load_preset
from humanlike_tui.engine.storage import runs as store
from humanlike_tui.engine.bench import peak


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(tmp_path))
    return tmp_path


def test_measurement_config_is_short_and_fixes_the_budget():
    cfg = load_preset("gaming-8gb").replace(**{"train.method": "sft+dpo", "data.rejected_column": "rejected"})
    m = peak.measurement_config(cfg, 3, "cuda")
    assert (m.train.max_steps, m.train.eval_every, m.train.sample_prompts) == (3, 0, 0)
    assert m.train.method == "dpo"  # the larger-peak phase of sft+dpo
    assert m.train.micro_batch_tokens == 2 * 8 * 512


def test_measure_peak_on_the_demo_and_cleans_up(home, capsys):
    check = peak.measure_peak(load_preset("demo"), steps=1)
    assert check.device in ("cpu", "cuda") and check.steps == 1
    assert check.measured_bytes > 0 and check.estimated_bytes > 0
    assert 16 <= check.seq_len <= 256 and check.tokens >= check.seq_len
    assert store.list_runs() == []  # the check's run is deleted
    assert json.loads(json.dumps(check.to_dict()))["error"] == round(check.error, 4)


@pytest.mark.gpu
def test_phi2_random_estimate_within_15_percent(home):
    # The acceptance check of docs/vram-planning.md; needs a CUDA GPU (skipped elsewhere).
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = load_preset("gaming-8gb").replace(**{"model.name": "builtin:phi-2-random", "data.source": "builtin:sample"})
    check = peak.measure_peak(cfg, steps=3)
    assert not check.budget_reduced
    assert abs(check.error) <= 0.15, check.to_dict()
