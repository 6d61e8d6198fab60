"""Plain records the engine hands to its listeners and the UI shows: chat settings and turns, the
adapter library's rows, the scorecard's figure labels. Stdlib only, so the TUI imports them without torch."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from humanlike_tui.config import Config
from humanlike_tui.errors import InputError
from humanlike_tui.events import SIDES

GENERATE_KEYS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")


@dataclass(frozen=True)
class GenSettings:
    """Generation settings; defaults and limits are the config's [generate] section."""

    max_new_tokens: int = 200
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Any) -> GenSettings:
        """cfg.generate with per-call overrides (None = keep), checked by the config's own validator,
        so a bad value gets the same message as in a TOML file ('generate.top_p: must be <= 1 ...')."""
        unknown = [k for k in overrides if k not in GENERATE_KEYS]
        if unknown:
            raise InputError(f"unknown generation setting(s): {', '.join(unknown)}; known: {', '.join(GENERATE_KEYS)}")
        changes = {f"generate.{k}": v for k, v in overrides.items() if v is not None}
        g = (cfg.replace(**changes) if changes else cfg).generate
        return cls(g.max_new_tokens, g.temperature, g.top_p, g.repetition_penalty, g.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in GENERATE_KEYS}


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of the session: the user's prompt and each side's answer."""

    prompt: str
    base: str = ""
    adapter: str = ""

    def answer(self, side: str) -> str:
        return self.base if side == "base" else self.adapter


@dataclass(frozen=True)
class Answer:
    side: str
    text: str
    tokens: int
    finish: str  # end | length | stopped
    seconds: float

    @property
    def stopped(self) -> bool:
        return self.finish == "stopped"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tokens": self.tokens, "finish": self.finish, "stopped": self.stopped,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Exchange:
    prompt: str
    answers: dict[str, Answer] = field(default_factory=dict)
    settings: GenSettings = field(default_factory=GenSettings)

    def turn(self) -> Turn:
        """This exchange as history for the next prompt."""
        return Turn(self.prompt, *(self.answers[s].text if s in self.answers else "" for s in SIDES))

    @property
    def stopped(self) -> bool:
        return any(a.stopped for a in self.answers.values())


RESUMABLE = ("paused", "stopped", "interrupted", "failed")


# An export's choices in the words both the command line (`adapters export`) and the Adapters screen's
# export dialog show, so the two never describe the same export differently.
EXPORT_FORMATS = {
    "safetensors": "a transformers model folder (safetensors and the tokenizer)",
    "gguf": "one .gguf file for llama.cpp, Ollama, LM Studio, with an Ollama Modelfile beside it",
}
EXPORT_MERGE_INTO = {
    "trained": "the base as training and chat used it (a 4-bit base dequantized), so the export answers as "
               "chat did",
    "original": "the checkpoint's full-precision weights (differs from what chat showed by the quantization error)",
}
# The Chat screen's picker names a base model alone (no adapter) as BASE_PREFIX + model; it offers these
# (offline: the real small model and the tiny one) besides the bases of the finished runs.
BASE_PREFIX = "base:"
CHAT_BASE_MODELS = ("builtin:smollm2-135m", "builtin:tiny-phi")
GGUF_QUANTS = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")  # engine/storage/gguf_export.py
DEFAULT_GGUF_QUANT = "q8_0"


@dataclass(frozen=True)
class AdapterInfo:
    """One run of the store as the library shows it. `complete` = it has a finished adapter."""

    name: str
    status: str  # finished | paused | stopped | failed | running | interrupted (see store.Run.status)
    complete: bool
    base_model: str
    data_source: str
    method: str
    steps: int | None
    max_steps: int | None
    final_loss: float | None
    final_eval_loss: float | None
    created: float | None  # unix time
    finished: float | None
    size_bytes: int  # the whole run folder: adapter, checkpoints, logs
    adapter_bytes: int
    last_checkpoint: int | None  # the step of the newest complete checkpoint
    run_dir: str
    adapter_dir: str
    error: str = ""  # why it failed, when it did

    @property
    def can_chat(self) -> bool:
        return self.complete

    @property
    def can_resume(self) -> bool:
        # A run killed before its first checkpoint restarts from step 0 on resume.
        return self.status in RESUMABLE

    @property
    def state(self) -> str:
        """A short, honest label: 'finished', or what is missing and what can be done."""
        if self.complete:
            return "finished"
        where = f" at {self.steps}/{self.max_steps}" if self.steps is not None and self.max_steps else ""
        fix = "resume or delete" if self.can_resume else "delete"
        if self.status == "running":
            return f"training{where}"
        return f"{self.status}{where} (incomplete: {fix})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data |= {"created_iso": iso_time(self.created), "finished_iso": iso_time(self.finished), "can_chat": self.can_chat,
                 "can_resume": self.can_resume, "state": self.state}
        return data


def iso_time(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t)) if t else None


REPEAT_N = 3  # n of the repeated-n-gram rate (Welleck et al.'s seq-rep-n with n = 3 suits short answers)


STYLE_KEYS = ("ai_disclaimer_rate", "emoji_rate", "question_rate", "exclamation_rate",
              "contractions_per_100_words", "mean_words", "distinct_2", "repeated_ngram_rate", "stopped_rate")


LIKELIHOOD_KEYS = ("preference_accuracy", "preference_margin", "reward_accuracy", "eval_loss", "perplexity")


JUDGE_KEYS = ("judge_human_rate",)  # the judge classifier's share (engine/evaluation/judge.py)


# (key, label, format) in display order: one source for the CLI table and the Adapters screen.
FIGURES = (
    # Two accuracies on the same pairs, named apart: preference_accuracy = chosen has the higher mean
    # log-prob per token; reward_accuracy = DPO's implicit reward (log-ratio to the base) is higher for chosen.
    ("preference_accuracy", "preference accuracy (log-prob/token)", "{:.1%}"),
    ("preference_margin", "preference margin (nats/token)", "{:+.3f}"),
    ("reward_accuracy", "DPO reward accuracy (vs base)", "{:.1%}"),
    ("eval_loss", "eval loss on chosen", "{:.3f}"),
    ("perplexity", "perplexity on chosen", "{:,.1f}"),
    ("ai_disclaimer_rate", "AI disclaimers", "{:.1%}"),
    ("emoji_rate", "with an emoji", "{:.1%}"),
    ("question_rate", "ask a question back", "{:.1%}"),
    ("exclamation_rate", "with an exclamation", "{:.1%}"),
    ("contractions_per_100_words", "contractions / 100 words", "{:.2f}"),
    ("mean_words", "mean length (words)", "{:.1f}"),
    ("distinct_2", "distinct-2", "{:.3f}"),
    ("repeated_ngram_rate", f"repeated {REPEAT_N}-grams", "{:.1%}"),
    ("stopped_rate", "stopped on their own (EOS)", "{:.1%}"),
    ("judge_human_rate", "judged human-like", "{:.1%}"),
)


SCORECARD_COLUMNS = ("figure", "base", "adapter", "data: chosen", "data: rejected")


def scorecard_rows(card: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """A scorecard (Scorecard.to_dict()) as `eval` prints it: every figure of FIGURES, one row each,
    base | adapter | the data's chosen | rejected answers (a card saved before the judge existed has no judge
    row). One source for the CLI and the Adapters screen."""
    base, adapter = card.get("base") or {}, card.get("adapter") or {}
    ref = card.get("reference") or {}
    return [(figure_label(card, key, label), format_figure(key, base.get(key)), format_figure(key, adapter.get(key)),
             format_figure(key, (ref.get("chosen") or {}).get(key)), format_figure(key, (ref.get("rejected") or {}).get(key)))
            for key, label, _ in FIGURES if key != "judge_human_rate" or card.get("judge")]  # no row before judges


def figure_label(card: dict[str, Any], key: str, label: str) -> str:
    """The judge's row carries the judge's own held-out accuracy, so its share is never read alone."""
    if key != "judge_human_rate" or not card.get("judge"):  # a card from before the judge: the plain label
        return label
    accuracy = card["judge"].get("accuracy")
    return f"{label} (judge {accuracy:.0%} right)" if accuracy is not None else f"{label} (no judge)"


def judge_caption(card: dict[str, Any]) -> str:
    """What the judge is and how far to trust it, or why there is none; '' for a card from before judges."""
    judge = card.get("judge")
    if not judge:
        return ""
    if judge.get("accuracy") is None:
        return f"judge: none ({judge.get('note') or 'not trained'})"
    return (f"judge: word and character n-gram classifier trained on {judge.get('train_answers')} chosen/rejected "
            f"answers of the training rows (never the prompts), {judge['accuracy']:.1%} right on "
            f"{judge.get('heldout_answers')} held-out ones; a style detector, not a ground truth")


def scorecard_caption(card: dict[str, Any]) -> str:
    """'50 held-out rows, 48 prompts from SOURCE; answers: seed 0, up to 200 new tokens' (what is known)."""
    text = f"{card.get('rows', '?')} held-out rows"
    if card.get("prompts") is not None:
        text += f", {card['prompts']} prompts"
    if card.get("data_source"):
        text += f" from {card['data_source']}"
    settings = card.get("settings") or {}
    if settings:
        text += f"; answers: seed {settings.get('seed')}, up to {settings.get('max_new_tokens')} new tokens"
    judge = judge_caption(card)
    return f"{text}\n{judge}" if judge else text


def format_figure(key: str, value: float | None) -> str:
    """A figure as shown to people; None (not measured, e.g. stopped_rate of written answers) is '—'."""
    if value is None:
        return "—"
    pattern = next(f for k, _, f in FIGURES if k == key)
    return pattern.format(value)


@dataclass(frozen=True)
class PickDraft:
    """One preference the person gave on the Chat screen, before the store adds its id and time stamp
    (engine/storage/picks.py saves it). history: the earlier (prompt, answer) turns of the side that wrote
    the chosen answer (or was edited into it); chosen_by / rejected_by: base | adapter | edited."""

    prompt: str
    chosen: str
    rejected: str
    chosen_by: str
    rejected_by: str
    history: tuple[tuple[str, str], ...] = ()
    adapter: str = ""
    base_model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    when: float | None = None
    system: str = ""
