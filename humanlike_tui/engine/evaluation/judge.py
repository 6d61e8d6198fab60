"""The judge: a small classifier that says whether an answer reads like the data's human answers.

It is logistic regression on word and character n-grams (scikit-learn's TfidfVectorizer and
LogisticRegression), trained on the ANSWERS of the run's own training rows: `chosen` is human-like (1),
`rejected` is not (0). It never sees a prompt, neither when it learns nor when it scores, so it judges the
answer alone. Before it scores anything it is tested on a held-out part of those training rows (grouped
by prompt, so no prompt's answers land on both sides), and that accuracy travels with every figure it
gives: a judge that tells the data's own answers apart only 70% of the time is not worth trusting for a
+40-point claim. It is not a ground truth either way: it learns whatever separates the two columns of
this data set (emoji, contractions, "As an AI"), which is the style the adapter was trained towards.

Engine module: stdlib at import time; scikit-learn is imported when a judge is trained.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

MAX_PAIRS = 800  # training rows used at most (two answers each): ~2 s of one core (600 already score 100%)
HELDOUT_FRACTION = 0.2  # of the pairs, grouped by prompt, kept out to measure the judge's accuracy
MIN_PAIRS = 4  # fewer training rows with both answers than this: no judge
HEAD_CHARS, TAIL_CHARS = 400, 200  # of a long answer: how it opens and how it ends (a question back) carry
# the style; the middle costs the most n-grams and adds little
TRAINED_ON = "chosen (human) vs rejected answers of the run's training rows, never the prompts"


@dataclass(frozen=True)
class Pair:
    """One training row's two answers; `group` (the prompt's key) only decides the held-out split."""

    chosen: str
    rejected: str
    group: str


@dataclass
class Judge:
    """A trained judge: `human_probability(texts)`, and its accuracy on held-out training answers."""

    model: Any  # a fitted sklearn Pipeline
    accuracy: float
    train_answers: int
    heldout_answers: int
    seconds: float

    def human_probability(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        return [float(p) for p in self.model.predict_proba([_clip(t) for t in texts])[:, 1]]

    def human_rate(self, texts: Sequence[str]) -> float | None:
        """The share of `texts` judged human-like (probability >= 0.5); None for no texts."""
        probs = self.human_probability(texts)
        return sum(1 for p in probs if p >= 0.5) / len(probs) if probs else None

    def describe(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "train_answers": self.train_answers,
                "heldout_answers": self.heldout_answers, "seconds": round(self.seconds, 2),
                "trained_on": TRAINED_ON, "note": ""}


def unavailable(note: str) -> dict[str, Any]:
    """The scorecard's `judge` entry when no judge could be trained, saying why."""
    return {"accuracy": None, "train_answers": 0, "heldout_answers": 0, "seconds": 0.0, "trained_on": TRAINED_ON,
            "note": note}


def train_judge(pairs: Sequence[Pair], seed: int = 0, max_pairs: int = MAX_PAIRS) -> Judge:
    """Fit on the pairs' answers (a sample of `max_pairs` when there are more), holding out about a fifth of
    the prompts to measure accuracy. Raises ValueError when there are too few pairs to do both."""
    if len(pairs) < MIN_PAIRS:
        raise ValueError(f"{len(pairs)} training rows with both a chosen and a rejected answer; the judge needs "
                         f"at least {MIN_PAIRS}")
    start = time.perf_counter()
    pairs = sample_pairs(pairs, seed, max_pairs)
    fit_on, held = split_pairs(pairs, HELDOUT_FRACTION, seed)
    model = _pipeline(len(fit_on))
    texts, labels = _answers(fit_on)
    model.fit(texts, labels)
    held_texts, held_labels = _answers(held)
    predicted = model.predict(held_texts)
    accuracy = sum(1 for p, y in zip(predicted, held_labels) if p == y) / len(held_labels)
    return Judge(model, accuracy, len(texts), len(held_texts), time.perf_counter() - start)


def sample_pairs(items: Sequence, seed: int = 0, max_pairs: int = MAX_PAIRS) -> list:
    """At most `max_pairs` of `items`, drawn with a fixed seed (all of them, in order, when fewer)."""
    items = list(items)
    return random.Random(seed).sample(items, max_pairs) if len(items) > max_pairs else items


def split_pairs(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """A deterministic split by group (prompt): both sides always get at least one group."""
    groups = sorted({p.group for p in pairs})
    random.Random(f"judge:{seed}").shuffle(groups)
    n_held = min(max(1, round(len(groups) * fraction)), len(groups) - 1)
    if n_held < 1:  # one prompt only: split its rows instead
        k = max(1, round(len(pairs) * fraction))
        return list(pairs[k:]), list(pairs[:k])
    held = set(groups[:n_held])
    return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]


def _answers(pairs: Sequence[Pair]) -> tuple[list[str], list[int]]:
    texts = [_clip(t) for p in pairs for t in (p.chosen, p.rejected)]
    return texts, [1, 0] * len(pairs)


def _clip(text: str) -> str:
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return f"{text[:HEAD_CHARS]} … {text[-TAIL_CHARS:]}"


def _pipeline(n_pairs: int):
    """Words and punctuation/emoji as tokens (1-2 grams), plus character 1-4 grams inside word bounds,
    case kept (lower-case chat, 'I AM' shouting); balanced classes, so 0.5 is the natural threshold."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    min_df = 2 if n_pairs >= 50 else 1  # a few hundred rows: drop the n-grams seen once (names, typos)
    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b|[^\w\s]",
                            sublinear_tf=True, min_df=min_df, max_features=50_000)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=False, sublinear_tf=True,
                            min_df=min_df, max_features=100_000)
    return make_pipeline(make_union(words, chars), LogisticRegression(C=4.0, max_iter=1000, solver="liblinear"))
