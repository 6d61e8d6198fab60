"""The human-likeness scorecard: does the adapter prefer the human answer, and does it sound human?

Three kinds of figures, for the base model and for the adapter side by side:

- likelihood on held-out pairs: preference accuracy (share of rows where the model gives `chosen` a
  higher mean log-prob per token than `rejected`), the mean margin of that difference, and the loss
  and perplexity on `chosen`;
- style of answers the model writes for the held-out prompts (fixed seed): AI disclaimers, emoji,
  questions back to the user, exclamations, contractions, length, diversity, repetition, stopping;
- the same style figures for the data's own `chosen` and `rejected` answers, as the two ends of the
  scale the adapter should move along.

One base model is loaded; the base side runs under `model.disable_adapter()`, so there is never a
second copy in memory. The metric functions at the top are pure (stdlib only) and unit-tested on
hand-written texts. Engine module: never imports textual.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from humanlike_tui.config import Config
from humanlike_tui.engine import data as D
from humanlike_tui.engine import store as S
from humanlike_tui.errors import DataError, HumanlikeError, StoreError
from humanlike_tui.events import Emit, EvalProgress, Log, ignore

SCORECARD_FILE = "scorecard.json"  # in the run folder: the last scorecard of the run's own split
DEFAULT_LIMIT = 200  # held-out rows; the shared data's eval split has ~600, and each row is two generations
REPEAT_N = 3  # n of the repeated-n-gram rate (Welleck et al.'s seq-rep-n with n = 3 suits short answers)

STYLE_KEYS = ("ai_disclaimer_rate", "emoji_rate", "question_rate", "exclamation_rate",
              "contractions_per_100_words", "mean_words", "distinct_2", "repeated_ngram_rate", "stopped_rate")
LIKELIHOOD_KEYS = ("preference_accuracy", "preference_margin", "eval_loss", "perplexity")
# (key, label, format) in display order: one source for the CLI table and the Adapters screen.
FIGURES = (
    ("preference_accuracy", "preference accuracy", "{:.1%}"),
    ("preference_margin", "preference margin (nats/token)", "{:+.3f}"),
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
)


def format_figure(key: str, value: float | None) -> str:
    """A figure as shown to people; None (not measured, e.g. stopped_rate of written answers) is '—'."""
    if value is None:
        return "—"
    pattern = next(f for k, _, f in FIGURES if k == key)
    return pattern.format(value)


class EvaluationCancelled(HumanlikeError):
    """The caller set the stop event; nothing was measured to the end."""


# --- pure text metrics -----------------------------------------------------------------------------

# Code point ranges whose characters show as emoji by default (Unicode Emoji_Presentation, emoji 15).
# Ranges, not a list of favourites: a new face in a block we cover counts without a code change.
EMOJI_PRESENTATION = (
    (0x231A, 0x231B), (0x23E9, 0x23EC), (0x23F0, 0x23F0), (0x23F3, 0x23F3), (0x25FD, 0x25FE),
    (0x2614, 0x2615), (0x2648, 0x2653), (0x267F, 0x267F), (0x2693, 0x2693), (0x26A1, 0x26A1),
    (0x26AA, 0x26AB), (0x26BD, 0x26BE), (0x26C4, 0x26C5), (0x26CE, 0x26CE), (0x26D4, 0x26D4),
    (0x26EA, 0x26EA), (0x26F2, 0x26F3), (0x26F5, 0x26F5), (0x26FA, 0x26FA), (0x26FD, 0x26FD),
    (0x2705, 0x2705), (0x270A, 0x270B), (0x2728, 0x2728), (0x274C, 0x274C), (0x274E, 0x274E),
    (0x2753, 0x2755), (0x2757, 0x2757), (0x2795, 0x2797), (0x27B0, 0x27B0), (0x27BF, 0x27BF),
    (0x2B1B, 0x2B1C), (0x2B50, 0x2B50), (0x2B55, 0x2B55),
    (0x1F004, 0x1F004), (0x1F0CF, 0x1F0CF), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A),
    (0x1F1E6, 0x1F1FF),  # regional indicators: two of them make a flag
    (0x1F201, 0x1F201), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F236), (0x1F238, 0x1F23A),
    (0x1F250, 0x1F251),
    (0x1F300, 0x1F64F),  # misc symbols and pictographs, emoticons (faces)
    (0x1F680, 0x1F6FF),  # transport and map
    (0x1F7E0, 0x1F7EB), (0x1F7F0, 0x1F7F0),  # coloured circles and squares
    (0x1F90C, 0x1F9FF),  # supplemental symbols and pictographs
    (0x1FA70, 0x1FAFF),  # symbols and pictographs extended-A
)
# Pictographs that are text by default (a plain ✓, ©, → is not an emoji) but become emoji when the
# variation selector U+FE0F follows them ("❤️", "☀️", "✌️").
TEXT_PICTOGRAPHS = ((0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
                    (0x2139, 0x2139), (0x2194, 0x21AA), (0x2300, 0x23FF), (0x24C2, 0x24C2), (0x25AA, 0x25FE),
                    (0x2600, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
                    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F170, 0x1F251))
# Chat text often drops the selector from these few; a bare heart or smiley is still meant as one.
BARE_EMOJI = frozenset("❤♥☺☹✌❣")
VS16, KEYCAP = "\ufe0f", "\u20e3"


def _in_ranges(cp: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def has_emoji(text: str) -> bool:
    """True if the text shows at least one emoji: default-emoji code points, text pictographs made emoji
    by U+FE0F, keycaps (1️⃣, #⃣) and the few bare hearts/smileys chat text uses."""
    for i, ch in enumerate(text):
        cp = ord(ch)
        if ch in BARE_EMOJI or _in_ranges(cp, EMOJI_PRESENTATION):
            return True
        nxt = text[i + 1: i + 3]
        if nxt.startswith(VS16) and _in_ranges(cp, TEXT_PICTOGRAPHS):
            return True
        if ch in "0123456789#*" and (nxt.startswith(KEYCAP) or nxt == VS16 + KEYCAP):
            return True
    return False


def normalize_apostrophes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("\u02bc", "'")


_AI_NOUN = (r"(?:ai|a\.i\.|artificial intelligence|(?:large )?language model|llm|chatbot|chat bot|bot|"
            r"computer program|(?:digital|virtual|ai) (?:assistant|entity|being)|machine learning model|"
            r"machine(?! learning))")
# "As an AI enthusiast" or "I'm a big AI fan" is a person talking about AI, not a disclaimer.
_NOT_SELF = (r"(?![- ](?:enthusiast|fan|researcher|engineer|developer|expert|company|companies|startup|lab|"
             r"ethic|art\b|tool|news|safety|course|class))")
# The few adjectives the formal answers put in front ("I'm just a conversational AI"); an open list
# would let "I'm a huge AI fan" through the guard above.
_SELF_ADJ = r"(?:(?:conversational|friendly|helpful|digital|virtual|simple|humble|text-based|professional) )?"
DISCLAIMER_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (
    # "as an AI", "as a language model", "as a continuously evolving artificial intelligence"
    rf"\bas an? (?:[\w-]+ ){{0,2}}{_AI_NOUN}\b{_NOT_SELF}",
    r"\blanguage models?\b",
    rf"\bi(?:'m| am) (?:just |only |merely |simply )?(?:an? )?{_SELF_ADJ}(?:ai(?:-powered)? )?{_AI_NOUN}\b{_NOT_SELF}",
    r"\bi (?:don't|do not|can't|cannot|am unable to) (?:really )?(?:have|possess|experience|feel|hold|engage in|encounter)"
    r" (?:any )?(?:personal|emotions|feelings|a physical|a body|physical|consciousness|subjective|"
    r"human|real-world|first-hand|firsthand)\b",  # "I don't have personal opinions", "... feelings"
    r"\bi(?:'m| am) not (?:a )?(?:human|person|sentient|conscious)\b",
    r"\bi(?:'m| am) not capable of (?:feeling|experiencing|having|tasting)\b",
    r"\b(?:my|the) (?:training data|knowledge cut-?off)\b",
    r"\bi was (?:trained on|programmed to|programmed by|designed to)\b",
))


def has_ai_disclaimer(text: str) -> bool:
    """An answer that says it is an AI or lacks a person's experience ('As an AI, I don't have ...')."""
    t = normalize_apostrophes(text)
    return any(p.search(t) for p in DISCLAIMER_PATTERNS)


# A "?" that ends a sentence: not inside a word or a URL query ("?q=1").
_QUESTION = re.compile(r"[?\uff1f](?![\w=&])")


def asks_question(text: str) -> bool:
    """True if the answer puts a question to the reader ('... and you? what's yours?')."""
    return bool(_QUESTION.search(text))


def has_exclamation(text: str) -> bool:
    return "!" in text or "\uff01" in text


_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# n't, 're, 've, 'll, 'd, 'm always; 's only after the words where it means is/has/us, so that a
# possessive ("the dog's bowl") is not counted.
_CONTRACTION = re.compile(
    r"^(?:[^\W_]+(?:n't|'re|'ve|'ll|'d|'m)|(?:it|that|what|there|here|he|she|who|where|how|let|when|why|"
    r"everything|nothing|something|someone|everyone|somebody|nobody|this)'s|y'all|ma'am|o'clock|'em|"
    r"gonna|wanna|gotta)$", re.IGNORECASE)


def words(text: str) -> list[str]:
    """Lower-cased words; a contraction is one word ("don't")."""
    return [w.lower() for w in _WORD.findall(normalize_apostrophes(text))]


def count_contractions(text: str) -> int:
    return sum(1 for w in words(text) if _CONTRACTION.match(w))


def contractions_per_100_words(texts: Iterable[str]) -> float:
    n_words = n_contr = 0
    for t in texts:
        ws = words(t)
        n_words += len(ws)
        n_contr += sum(1 for w in ws if _CONTRACTION.match(w))
    return 100.0 * n_contr / n_words if n_words else 0.0


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Unique n-grams / all n-grams over the whole set of answers (Li et al. 2016): low = the model
    says the same things to everyone."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(texts: Iterable[str], n: int = REPEAT_N) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same answer: loops like 'I I I I'."""
    total = repeats = 0
    for t in texts:
        grams = ngrams(words(t), n)
        total += len(grams)
        repeats += len(grams) - len(set(grams))
    return repeats / total if total else 0.0


def share(flags: Iterable[bool]) -> float | None:
    flags = list(flags)
    return sum(1 for f in flags if f) / len(flags) if flags else None


def style_figures(texts: Sequence[str], stopped: Sequence[bool] | None = None) -> dict[str, float | None]:
    """Every style figure of the scorecard for a set of answers. `stopped` (did generation end with EOS
    before the token limit) is None for written answers, whose stopped_rate is then None."""
    texts = list(texts)
    return {
        "ai_disclaimer_rate": share(map(has_ai_disclaimer, texts)),
        "emoji_rate": share(map(has_emoji, texts)),
        "question_rate": share(map(asks_question, texts)),
        "exclamation_rate": share(map(has_exclamation, texts)),
        "contractions_per_100_words": contractions_per_100_words(texts) if texts else None,
        "mean_words": sum(len(words(t)) for t in texts) / len(texts) if texts else None,
        "distinct_2": distinct_n(texts, 2) if texts else None,
        "repeated_ngram_rate": repeated_ngram_rate(texts) if texts else None,
        "stopped_rate": share(stopped) if stopped is not None else None,
    }


def preference_figures(chosen_logp: Sequence[float], chosen_len: Sequence[int], rejected_logp: Sequence[float],
                       rejected_len: Sequence[int]) -> dict[str, float | None]:
    """Accuracy and mean margin of length-normalized log-likelihoods (mean log-prob per answer token),
    so that a short answer does not win just by having fewer tokens to pay for."""
    diffs = [c / max(1, lc) - r / max(1, lr)
             for c, lc, r, lr in zip(chosen_logp, chosen_len, rejected_logp, rejected_len)]
    if not diffs:
        return {"preference_accuracy": None, "preference_margin": None}
    return {"preference_accuracy": sum(1 for d in diffs if d > 0) / len(diffs),
            "preference_margin": sum(diffs) / len(diffs)}


def loss_figures(total_logp: float, n_tokens: int) -> dict[str, float | None]:
    if not n_tokens:
        return {"eval_loss": None, "perplexity": None}
    loss = -total_logp / n_tokens
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 700.0))}  # exp(>709) overflows a float


# --- the scorecard -------------------------------------------------------------------------------

@dataclass
class Scorecard:
    """Figures for base, adapter and the data's own answers; `samples` are (prompt, base, adapter)."""

    run_id: str
    base_model: str
    data_source: str
    rows: int
    prompts: int
    settings: dict[str, Any]
    base: dict[str, float | None]
    adapter: dict[str, float | None]
    reference: dict[str, dict[str, float | None] | None]
    samples: list[tuple[str, str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a non-finite figure (a diverged model) becomes None, as JSON has no NaN."""
        return {"run_id": self.run_id, "base_model": self.base_model, "data_source": self.data_source,
                "rows": self.rows, "prompts": self.prompts, "settings": dict(self.settings),
                "base": _finite(self.base), "adapter": _finite(self.adapter),
                "reference": {k: (_finite(v) if v is not None else None) for k, v in self.reference.items()},
                "samples": [{"prompt": p, "base": b, "adapter": a} for p, b, a in self.samples]}


def _finite(figures: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (v if v is None or math.isfinite(v) else None) for k, v in figures.items()}


@dataclass
class _Session:
    """The loaded model and what every measurement needs."""

    cfg: Config
    model: Any
    tok: Any
    device: Any
    precision: Any
    emit: Emit
    stop: threading.Event
    batch_size: int

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise EvaluationCancelled("evaluation cancelled")

    def autocast(self):
        return self.precision.autocast_context()


def finished_adapter(run_id: str) -> S.Run:
    """The run whose adapter we score; a clear StoreError when there is none yet."""
    run = S.get_run(run_id)
    if not S.is_complete(run.adapter_dir):
        raise StoreError(f"run {run.run_id} has no finished adapter (status: {run.status()}); resume it with "
                         f"`humanlike-tui train --resume {run.run_id}` or score a finished run")
    return run


def heldout_examples(cfg: Config, tok, data: str | None = None,
                     limit: int | None = DEFAULT_LIMIT) -> tuple[list[D.Example], str]:
    """The rows to score: the run's own eval split, recomputed exactly as training made it (loading,
    filtering and the prompt-hash split are deterministic), or every usable row of `data`."""
    if data:
        dcfg = cfg.replace(**{"data.source": str(data), "data.max_rows": 0}).data
        rows, counts = D.load_rows(dcfg, need_rejected=False)
        examples = D.tokenize_rows(rows, tok, dcfg, counts, need_rejected=False)
        source = str(data)
    else:
        need_rejected = cfg.train.method != "sft"  # as in training, so the same rows survive the filters
        try:
            rows, counts = D.load_rows(cfg.data, need_rejected=need_rejected)
        except DataError as exc:  # most often a relative data.source and another working folder
            raise DataError(f"{exc}\n(the run's held-out rows come from its data.source {cfg.data.source!r}: "
                            "run eval from the folder the training ran in, or score a file with --data FILE)"
                            ) from None
        examples = D.tokenize_rows(rows, tok, cfg.data, counts, need_rejected)
        _, examples = D.split_by_prompt(examples, cfg.data.eval_fraction, cfg.train.seed)
        source = cfg.data.source
        if not examples:
            raise DataError(f"run data {source}: no held-out rows (data.eval_fraction = "
                            f"{cfg.data.eval_fraction}); give rows to score with --data FILE")
    return (examples[:limit] if limit else examples), source


def _answer_logps(s: _Session, exs: list[D.Example], answer: str) -> list[float]:
    """Summed log-prob of each example's `answer` ('chosen' or 'rejected') given its prompt."""
    import torch

    from humanlike_tui.engine.train import answer_logprobs, per_row_sum

    seqs = [D.sft_tensors(e, False, answer) for e in exs]
    ids, labels, att = D.pad_batch(seqs, s.tok.pad_token_id)
    with torch.no_grad(), s.autocast():
        logp, rows = answer_logprobs(s.model, ids, labels, att, s.device)
        sums = per_row_sum(logp.float(), rows, len(exs))
    return [float(x) for x in sums.cpu()]


def likelihood_scores(s: _Session, exs: list[D.Example], side: str) -> dict[str, float | None]:
    """Preference accuracy and margin on rows with a rejected answer, loss and perplexity on chosen."""
    pairs = [e for e in exs if e.rejected_ids is not None]
    chosen: list[float] = []
    rejected: list[float] = []
    total = len(exs) + len(pairs)
    for i in range(0, len(exs), s.batch_size):
        s.check_stop()
        batch = exs[i:i + s.batch_size]
        chosen += _answer_logps(s, batch, "chosen")
        with_rej = [e for e in batch if e.rejected_ids is not None]
        if with_rej:
            rejected += _answer_logps(s, with_rej, "rejected")
        s.emit(EvalProgress(side, "likelihood", len(chosen) + len(rejected), total))
    chosen_pairs = [c for c, e in zip(chosen, exs) if e.rejected_ids is not None]
    pref = preference_figures(chosen_pairs, [len(e.chosen_ids) for e in pairs],
                              rejected, [len(e.rejected_ids or ()) for e in pairs])
    return pref | loss_figures(sum(chosen), sum(len(e.chosen_ids) for e in exs))


def generate_answers(s: _Session, prompts: list[str], max_new_tokens: int, side: str) -> tuple[list[str], list[bool]]:
    """Answers to `prompts`, formatted exactly as in training, in left-padded batches with a fixed seed.

    The seed is set once before the first batch, so the base and the adapter draw the same random
    numbers in the same order and differ only by their weights. Returns (texts, stopped_with_eos)."""
    import torch

    g = s.cfg.generate
    torch.manual_seed(g.seed)
    sample = g.temperature > 0
    knobs = dict(do_sample=True, temperature=g.temperature, top_p=g.top_p) if sample else dict(do_sample=False)
    eos, pad = s.tok.eos_token_id, s.tok.pad_token_id
    texts: list[str] = []
    stopped: list[bool] = []
    for i in range(0, len(prompts), s.batch_size):
        s.check_stop()
        encoded = [s.tok(D.format_prompt(p, s.cfg.data.template, s.tok), add_special_tokens=False)["input_ids"]
                   for p in prompts[i:i + s.batch_size]]
        ids, att = _left_pad(encoded, pad)
        with torch.no_grad(), s.autocast():
            out = s.model.generate(input_ids=ids.to(s.device), attention_mask=att.to(s.device),
                                   max_new_tokens=max_new_tokens, repetition_penalty=g.repetition_penalty,
                                   pad_token_id=pad, eos_token_id=eos, use_cache=True, **knobs)
        for row in out[:, ids.shape[1]:].tolist():
            text, ended = _cut_answer(row, eos, s.tok, s.cfg.data.template)
            texts.append(text)
            stopped.append(ended)
        s.emit(EvalProgress(side, "generate", len(texts), len(prompts)))
    return texts, stopped


def _left_pad(seqs: list[list[int]], pad_id: int):
    """Generation continues every row at the same column, so prompts are padded on the left."""
    import torch

    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, x in enumerate(seqs):
        ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
        att[i, width - len(x):] = 1
    return ids, att


def _cut_answer(new_ids: list[int], eos: int, tok, template: str) -> tuple[str, bool]:
    """The answer text up to EOS (and before the instruct template's end marker); whether EOS came."""
    ended = eos in new_ids
    if ended:
        new_ids = new_ids[: new_ids.index(eos)]
    text = tok.decode(new_ids, skip_special_tokens=True)
    suffix = D.answer_suffix(template).strip()
    if suffix:
        text = text.split(suffix)[0]
    return text.strip(), ended


def _load(run: S.Run, emit: Emit, stop: threading.Event, batch_size: int) -> _Session:
    import torch

    from humanlike_tui.engine import model as M

    cfg = run.config()
    precision = M.resolve_precision(cfg, "cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device("cuda", 0) if precision.device == "cuda" else torch.device("cpu")
    base, tok = M.load_base_model(cfg, precision, 0, lambda m: emit(Log(m)))
    model = M.load_adapter(base, run.adapter_dir, cfg.model.name)
    model.eval()
    return _Session(cfg, model, tok, device, precision, emit, stop, batch_size)


def _holds_adapter(loaded: Any, run: S.Run) -> bool:
    """Whether `loaded` (an engine.generate.Generator) has this run's adapter on its base."""
    if loaded is None or not getattr(loaded, "adapter_dir", ""):
        return False
    try:
        return Path(loaded.adapter_dir).resolve() == Path(run.adapter_dir).resolve()
    except OSError:
        return False


@contextlib.contextmanager
def _session(run: S.Run, emit: Emit, stop: threading.Event, batch_size: int, loaded: Any = None
             ) -> Iterator[_Session]:
    """The model to score: the one `loaded` already holds for this run (borrowed under its lock: no
    second base model in memory, the chat waits meanwhile), else a fresh load freed afterwards."""
    if _holds_adapter(loaded, run):
        with loaded.lock:
            if loaded.model is not None:  # not closed while we waited for the lock
                from humanlike_tui.engine import model as M

                emit(Log(f"scoring with the model already loaded for {run.run_id} (no second copy)"))
                device = next(loaded.model.parameters()).device
                precision = M.resolve_precision(loaded.config, device.type)
                loaded.model.eval()
                yield _Session(loaded.config, loaded.model, loaded.tok, device, precision, emit, stop, batch_size)
                return
    emit(Log(f"loading {run.run_id} for the scorecard"))
    s = _load(run, emit, stop, batch_size)
    try:
        yield s
    finally:
        _free(s)


def score_side(s: _Session, exs: list[D.Example], prompts: list[str], max_new_tokens: int,
               side: str) -> tuple[dict[str, float | None], list[str]]:
    """Every model figure for one side ('base' or 'adapter') of the currently active weights."""
    s.emit(Log(f"{side}: likelihood of chosen and rejected on {len(exs)} rows"))
    figures = likelihood_scores(s, exs, side)
    s.emit(Log(f"{side}: answering {len(prompts)} held-out prompts (up to {max_new_tokens} new tokens)"))
    texts, stopped = generate_answers(s, prompts, max_new_tokens, side)
    return figures | style_figures(texts, stopped), texts


def scorecard(run_id: str, data: str | None = None, limit: int | None = DEFAULT_LIMIT,
              max_new_tokens: int | None = None, emit: Emit = ignore, stop: threading.Event | None = None,
              batch_size: int = 16, n_samples: int = 3, loaded: Any = None) -> Scorecard:
    """Score run `run_id`'s adapter against its base on held-out rows (the run's eval split, or `data`).

    The card of the run's own split is also saved in the run folder (see last_scorecard). Emits Log and EvalProgress events; raises StoreError for an unknown or unfinished run, DataError for
    unusable data, EvaluationCancelled when `stop` is set. Long work: call it from a worker thread.
    loaded: a Generator (the chat's) that may already hold this run's adapter; its model is borrowed."""
    stop = stop or threading.Event()
    run = finished_adapter(run_id)
    with _session(run, emit, stop, batch_size, loaded) as s:
        exs, source = heldout_examples(s.cfg, s.tok, data, limit)
        prompts = list(dict.fromkeys(e.prompt for e in exs))
        max_new = max_new_tokens or s.cfg.generate.max_new_tokens
        with s.model.disable_adapter():  # the same weights, LoRA off: the base model, no second copy
            base, base_texts = score_side(s, exs, prompts, max_new, "base")
        adapter, adapter_texts = score_side(s, exs, prompts, max_new, "adapter")
    rows = _rows_of(exs, s.tok, s.cfg.data.template)
    reference = {"chosen": style_figures([r[0] for r in rows]),
                 "rejected": style_figures([r[1] for r in rows if r[1] is not None]) if any(
                     r[1] is not None for r in rows) else None}
    g = s.cfg.generate
    settings = {"max_new_tokens": max_new, "seed": g.seed, "temperature": g.temperature, "top_p": g.top_p,
                "repetition_penalty": g.repetition_penalty, "limit": limit, "repeat_n": REPEAT_N,
                "split": "file" if data else "run eval split"}
    samples = list(zip(prompts, base_texts, adapter_texts))[:n_samples]
    card = Scorecard(run.run_id, s.cfg.model.name, source, len(exs), len(prompts), settings, base, adapter,
                     reference, samples)
    if data is None:  # the run's own held-out split: keep it, so the Adapters screen can show it later
        S.write_json(run.run_dir / SCORECARD_FILE, card.to_dict())
    return card


def last_scorecard(run_id: str) -> dict[str, Any] | None:
    """The last saved scorecard of a run (Scorecard.to_dict() shape), or None. Stdlib only: cheap for a UI."""
    data = S.read_json(S.get_run(run_id).run_dir / SCORECARD_FILE)
    return data or None


def _rows_of(exs: list[D.Example], tok, template: str) -> list[tuple[str, str | None]]:
    """The data's own answers as text, decoded from the kept examples (byte-level tokenizers give the
    text back, up to whitespace), so the reference rows are exactly the rows the models were scored on."""
    def text(ids: Sequence[int]) -> str:
        return _cut_answer(list(ids), tok.eos_token_id, tok, template)[0]

    return [(text(e.chosen_ids), text(e.rejected_ids) if e.rejected_ids is not None else None) for e in exs]


def _free(s: _Session) -> None:
    import gc

    import torch

    s.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
