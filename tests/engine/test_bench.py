"""`humanlike-tui bench` on the tiny model with a handful of samples: the shape of its output and
that both sides really trained. Speed is never asserted here (see docs/benchmarks.md)."""

from __future__ import annotations

import json

from humanlike_tui import cli
from humanlike_tui.engine.bench import compare as bench
from humanlike_tui.engine.storage import runs as store


def test_bench_json_has_both_sides_trained(capsys):
    import torch

    threads = torch.get_num_threads()
    # One thread: on a busy 2-core CI machine two threads mostly wait for each other.
    code = cli.main(["bench", "--model", "builtin:tiny-phi", "--samples", "32", "--warmup", "1", "--threads", "1",
                     "--json"])
    assert torch.get_num_threads() == threads  # the bench gives the thread count back
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # one JSON object and nothing else on stdout
    result = json.loads(out[0])
    assert {"baseline", "engine", "speedup", "device"} <= set(result)
    base, eng = result["baseline"], result["engine"]
    for side in (base, eng):
        assert side["samples"] == 32
        assert side["tokens"] > 0 and side["seconds"] > 0 and side["tokens_per_s"] > 0
        assert side["s_per_sample"] > 0 and side["eval_loss"] > 0 and side["cpu_seconds"] > 0
        assert side["peak_rss"] or side["peak_reserved"]
    assert base["timed_samples"] == 31 and eng["timed_samples"] == 16  # warm-up steps are not timed
    assert base["settings"]["batch"] == 1 and eng["settings"]["batch"] == 16
    assert eng["settings"]["grad_ckpt"] is False  # the tiny model's step fits in RAM without checkpointing
    assert result["threads"] == 1
    assert result["speedup"] == round(eng["tokens_per_s"] / base["tokens_per_s"], 2)
    assert store.list_runs() == []  # the engine's run is not left in the user's library


def test_bench_rejects_too_few_samples_for_the_warm_up(capsys):
    assert cli.main(["bench", "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err


def test_timed_rate_leaves_out_warm_up_steps():
    marks = [(1.0, 100), (2.0, 50), (4.0, 60)]  # end time and tokens of steps 1..3
    assert bench.timed_rate(marks, 1) == (3.0, 110, 2)
    assert bench.timed_rate(marks, 2) == (2.0, 60, 1)


def test_format_table_lists_both_sides():
    side = {"tokens_per_s": 100.0, "s_per_sample": 0.5, "eval_loss": 8.0, "peak_rss": 2**30, "peak_allocated": None,
            "peak_reserved": None, "peak_driver": None, "settings": {"batch": 1}}
    from humanlike_tui.commands.bench import format_table

    text = format_table({"device": "CPU", "model": "m", "data": "d", "samples": 32, "warmup_steps": 1,
                         "baseline": side, "engine": dict(side, tokens_per_s=300.0), "speedup": 3.0,
                         "eval_loss_delta": 0.0})
    assert "original recipe" in text and "engine" in text and "3.00x" in text and "1.00 GiB" in text


def test_engine_only_with_a_changed_setting_skips_the_recipe(capsys):
    # The A/B a GPU session runs for quant.autocast: engine variants on the same samples, no recipe.
    # fp32, not bf16: this CPU has no native bf16 and runs it ~100x slower (the override is what is tested).
    code = cli.main(["bench", "--samples", "32", "--warmup", "1", "--threads", "1", "--engine-only",
                     "--engine-set", "quant.compute_dtype=fp32", "--engine-set", "lora.r=8", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["baseline"] is None and result["speedup"] is None and result["eval_loss_delta"] is None
    assert result["engine_overrides"] == ["quant.compute_dtype=fp32", "lora.r=8"]
    eng = result["engine"]
    assert eng["settings"]["compute"] == "fp32" and eng["settings"]["lora_r"] == 8
    assert eng["tokens_per_s"] > 0 and eng["eval_loss"] > 0
    from humanlike_tui.commands.bench import format_table

    text = format_table(result)
    assert "original recipe skipped" in text and "changed: quant.compute_dtype=fp32, lora.r=8" in text


def test_engine_set_refuses_what_would_make_the_sides_differ_and_bad_values(capsys):
    assert cli.main(["bench", "--engine-set", "data.max_length=64"]) == 2
    assert "fixed by the benchmark" in capsys.readouterr().err
    assert cli.main(["bench", "--engine-set", "quant.autocast=maybe"]) == 2
    assert "quant.autocast" in capsys.readouterr().err
    assert cli.main(["bench", "--engine-set", "nonsense"]) == 2
    assert "section.key=value" in capsys.readouterr().err
