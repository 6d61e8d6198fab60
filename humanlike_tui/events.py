"""The engine -> UI vocabulary. Frozen dataclasses, stdlib only, so the TUI, the headless CLI and
the tests all listen to exactly the same thing. The engine talks through one callable,
`emit(event)`, and never knows who listens."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Event:
    def to_dict(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Log(Event):
    """Free-text progress ('loading model ...'), for log panes and verbose CLI output."""

    message: str
    level: str = "info"  # info | warning | error


# Said before the first engine import of a process: torch, transformers and peft take 3-15 s to import,
# and nothing else would show why the run has not started.
LIBRARIES_LOADING = "loading torch, transformers and peft (a few seconds, longer on the first start)"


@dataclass(frozen=True)
class DataReport(Event):
    """What happened to the rows: read, kept, dropped and why, and the split."""

    source: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int]
    train_rows: int
    eval_rows: int
    tokens_mean: float = 0.0
    tokens_max: int = 0


@dataclass(frozen=True)
class RunStarted(Event):
    run_id: str
    run_dir: str
    method: str
    config: dict[str, Any]
    trainable_params: int
    total_params: int
    total_steps: int
    start_step: int  # > 0 when resumed
    device: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step(Event):
    """One optimizer step. `metrics` carries method-specific figures (DPO rewards, margin ...)."""

    step: int
    total_steps: int
    loss: float
    lr: float
    grad_norm: float
    tokens_per_s: float
    samples_seen: int
    tokens_seen: int
    elapsed_s: float
    eta_s: float
    phase: str = "sft"  # sft | dpo | orpo | simpo
    memory_allocated: int = 0
    memory_reserved: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Eval(Event):
    step: int
    eval_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    samples: tuple[tuple[str, str], ...] = ()  # (prompt, generated answer) to watch the style change


@dataclass(frozen=True)
class CheckpointSaved(Event):
    step: int
    path: str
    reason: str = "periodic"  # periodic | stop | pause | final


@dataclass(frozen=True)
class BatchReduced(Event):
    """Out of memory: the micro-batch token budget was halved and training goes on."""

    step: int
    old_tokens: int
    new_tokens: int
    message: str


@dataclass(frozen=True)
class Stopped(Event):
    """Stopped or paused on request, with a checkpoint the run can resume from."""

    run_id: str
    step: int
    checkpoint: str
    paused: bool = False


@dataclass(frozen=True)
class Finished(Event):
    run_id: str
    adapter_dir: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class Failed(Event):
    reason: str
    run_id: str = ""
    kind: str = "error"  # input | oom | error


@dataclass(frozen=True)
class EvalProgress(Event):
    """Scorecard progress: `done` of `total` items of one stage for one side (base | adapter)."""

    side: str
    stage: str  # likelihood | generate
    done: int
    total: int


# --- chat: what the generator tells its listener while it answers ------------------------------------
# One exchange emits, for each side in turn ("base" first, then "adapter"):
#   AnswerStarted(side, ...) -> AnswerText(side, text) x N -> AnswerDone(side, text, ...)
# The AnswerText pieces, concatenated in order, are the answer so far; AnswerDone.text is the final answer
# (trimmed, the end marker removed). A failure raises GenerationError (or an InputError) instead.

SIDES = ("base", "adapter")  # base = the model with its adapter disabled; adapter = with the LoRA on
FINISH_REASONS = ("end", "length", "stopped")  # EOS or the template's end marker | max_new_tokens | Stop


@dataclass(frozen=True)
class AnswerStarted(Event):
    side: str  # base | adapter
    prompt_tokens: int  # tokens of the formatted prompt, history included
    history_turns: int  # earlier turns kept in the prompt (older ones are dropped to fit the context)
    max_new_tokens: int  # after clamping to the model's context


@dataclass(frozen=True)
class AnswerText(Event):
    """A piece of the answer, in order. Never merge or drop these: together they are the answer."""

    side: str
    text: str


@dataclass(frozen=True)
class AnswerDone(Event):
    side: str
    text: str  # the final answer
    tokens: int  # new tokens generated (the end marker and EOS included)
    finish: str  # end | length | stopped
    seconds: float

    @property
    def stopped(self) -> bool:
        return self.finish == "stopped"


Emit = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """An emit that drops everything (scripts that only want the result)."""
