"""Engine events as one line of text for the Train screen's log pane. Pure, so it is unit-tested
without a terminal."""

from __future__ import annotations

from humanlike_tui import events as ev
from humanlike_tui.ui import format as fmt


def step_log_every(total_steps: int) -> int:
    """Log about 20 steps per run: every step would bury the evaluations and checkpoints."""
    return max(1, total_steps // 20)


def describe(event: ev.Event, on_gpu: bool = True) -> str | None:
    """One log line, or None for events that only feed the charts (most Steps). `on_gpu`: the run trains on
    a GPU (a paused CPU run frees RAM, not GPU memory)."""
    match event:
        case ev.Log(message=message, level=level):
            return message if level == "info" else f"{level}: {message}"
        case ev.DataReport():
            dropped = ", ".join(f"{n} {why}" for why, n in event.dropped.items() if n) or "none"
            return (f"data {event.source}: {event.rows_kept}/{event.rows_read} rows kept (dropped: {dropped}); "
                    f"{event.train_rows} train, {event.eval_rows} eval")
        case ev.RunStarted():
            resumed = f", resumed at step {event.start_step}" if event.start_step else ""
            return (f"run {event.run_id} started: {event.method} on {event.device}, {event.total_steps} steps, "
                    f"{event.trainable_params:,} of {event.total_params:,} params trainable{resumed}")
        case ev.Step():
            if event.step % step_log_every(event.total_steps) and event.step != event.total_steps:
                return None
            return (f"step {event.step}/{event.total_steps} loss {event.loss:.4f} lr {fmt.learning_rate(event.lr)} "
                    f"{fmt.rate(event.tokens_per_s)} tok/s" + _metrics(event.metrics, STEP_METRICS))
        case ev.Eval():
            return f"eval at step {event.step}: loss {event.eval_loss:.4f}" + _metrics(event.metrics)
        case ev.CheckpointSaved():
            return f"checkpoint ({event.reason}) at step {event.step}: {event.path}"
        case ev.BatchReduced():
            return (f"out of memory at step {event.step}: micro-batch {event.old_tokens} -> {event.new_tokens} tokens; "
                    f"{event.message}")
        case ev.Stopped(paused=True):
            return f"paused at step {event.step}; {'GPU memory' if on_gpu else 'memory'} freed; checkpoint {event.checkpoint}"
        case ev.Stopped():
            return f"stopped at step {event.step}; checkpoint {event.checkpoint}"
        case ev.Finished():
            return f"finished run {event.run_id}: adapter saved to {event.adapter_dir}"
        case ev.Failed():
            return f"FAILED ({event.kind}): {event.reason}"
    return None


# How the engine's metric keys read in the log: (label, format). Eval metrics come from
# engine/training/heldout.py, the DPO step metrics from engine/training/trainer.py.
METRIC_TEXT = {
    "eval_logp_accuracy": ("log-prob accuracy", "{:.0%}"),
    "eval_logp_margin": ("log-prob margin", "{:+.3f}"),
    "eval_reward_accuracy": ("reward accuracy", "{:.0%}"),
    "reward_accuracy": ("reward accuracy", "{:.0%}"),
    "reward_margin": ("reward margin", "{:+.3f}"),
}
STEP_METRICS = ("reward_accuracy", "reward_margin")  # the DPO figures worth a log line; the rest are charted


def metric_text(key: str, value: float) -> str:
    label, pattern = METRIC_TEXT.get(key, (key.removeprefix("eval_").replace("_", " "), "{:.3g}"))
    return f"{label} {pattern.format(value)}"


def _metrics(metrics: dict[str, float], keys: tuple[str, ...] | None = None) -> str:
    """', label value' for each metric (all of them, or those of `keys`, in that order): a label and its
    value are always adjacent, so a wrapped line never puts one metric's value after another's name."""
    items = [(k, metrics[k]) for k in keys if k in metrics] if keys is not None else sorted(metrics.items())
    return "".join(f", {metric_text(k, v)}" for k, v in items)
