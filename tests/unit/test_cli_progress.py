"""The headless progress line and the `adapters show` / Adapters screen numbers people read."""

from __future__ import annotations

from humanlike_tui.events import Eval, Finished, RunStarted, Step


def _step(n: int, loss: float, speed: float) -> Step:
    return Step(step=n, total_steps=2, loss=loss, lr=1e-3, grad_norm=1.0, tokens_per_s=speed, samples_seen=n,
                tokens_seen=100 * n, elapsed_s=n, eta_s=0)


def test_progress_bar_ends_with_the_final_eval_loss_and_the_average_speed(capsys):
    """The bar's last text was the last step's: an eval loss from before the final evaluation and the last
    step's speed, while the finished line gave the final ones (bar 'eval 7.0781', 'eval 7.0790' below)."""
    from humanlike_tui.commands.train import ProgressListener

    listener = ProgressListener()
    listener(RunStarted(run_id="r", run_dir="/tmp/r", method="sft", config={}, trainable_params=1, total_params=2,
                        total_steps=2, start_step=0, device="cpu"))
    listener(_step(1, 7.5, 900.0))
    listener(Eval(step=1, eval_loss=7.0781))
    listener(_step(2, 7.2, 1049.0))
    listener(Eval(step=2, eval_loss=7.0790))
    assert "eval 7.0790" in listener.progress.tasks[0].fields["info"]  # the bar follows every evaluation
    listener(Finished(run_id="r", adapter_dir="/tmp/r/adapter", summary={
        "steps": 2, "first_loss": 7.5, "final_loss": 7.2, "final_eval_loss": 7.0790, "tokens_per_s": 728.3,
        "duration_s": 12.4}))
    err = capsys.readouterr().err
    bar = [line for line in err.splitlines() if "tok/s" in line and "train" in line][-1]
    assert "eval 7.0790" in bar and "728 tok/s" in bar and "1,049" not in bar, bar
    assert "728 tok/s (average), 12s" in err


def test_adapters_show_rounds_losses(home, capsys):
    from humanlike_tui.commands.adapters import show_value

    assert show_value("final_loss", 0.00849174614995718) == "0.008492"
    assert show_value("final_eval_loss", 2.345678) == "2.346" and show_value("steps", 60) == "60"


def test_a_short_run_does_not_read_zero_minutes():
    """The Adapters screen's details said '0 min' for a 12 s run."""
    from humanlike_tui.records import AdapterInfo
    from humanlike_tui.ui.library_text import details_text

    info = AdapterInfo(name="r", status="finished", complete=True, base_model="builtin:tiny-phi",
                       data_source="builtin:sample", method="sft", steps=8, max_steps=8, final_loss=1.0,
                       final_eval_loss=None, created=0.0, finished=12.0, size_bytes=1, adapter_bytes=1,
                       last_checkpoint=None, run_dir="/tmp/r", adapter_dir="/tmp/r/adapter")
    text = details_text(info, {"duration_s": 12.4}).plain
    assert "0 min" not in text and "12s" in text


def test_readme_does_not_count_the_slow_tests():
    """The README said 'two slow campaigns' while pytest left out three: the set grows, so it names the
    kinds and the command that lists them instead of a number that goes stale."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    sentence = readme[readme.index("The test command leaves out"):].split(";", 1)[0]
    assert not re.search(r"\b(one|two|three|four|five|six|\d+) (slow|multi-process)", sentence), sentence
    assert "-m slow" in readme


def test_preset_help_lists_every_shipped_preset():
    from humanlike_tui.cli import build_parser
    from humanlike_tui.config import preset_names

    text = build_parser(commands=["train"])._subparsers._group_actions[0].choices["train"].format_help()
    flat = " ".join(text.split()).replace("- ", "-")  # argparse wraps a line after a name's hyphen
    assert all(name in flat for name in preset_names()) and "smol-cpu" in preset_names()
