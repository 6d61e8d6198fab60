"""Style figures of written answers: AI disclaimers, emoji, questions back, exclamations, contractions,
length, diversity, repetition, stopping; and the likelihood figures' arithmetic. Pure, stdlib only,
unit-tested on hand-written texts."""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence
from humanlike_tui.records import REPEAT_N


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


def reward_accuracy(policy: tuple[Sequence[float], Sequence[float]],
                    reference: tuple[Sequence[float], Sequence[float]]) -> float | None:
    """DPO's implicit-reward accuracy: the share of pairs where log p(chosen) - log p_ref(chosen) beats the
    same for rejected (summed log-probs; beta scales both sides alike). Not length-normalised, unlike
    preference_accuracy: a different question (how the adapter moved from its base), hence the name."""
    (pc, pr), (rc, rr) = policy, reference
    wins = [(a - ra) > (b - rb) for a, b, ra, rb in zip(pc, pr, rc, rr)]
    return sum(wins) / len(wins) if wins else None


def loss_figures(total_logp: float, n_tokens: int) -> dict[str, float | None]:
    if not n_tokens:
        return {"eval_loss": None, "perplexity": None}
    loss = -total_logp / n_tokens
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 700.0))}  # exp(>709) overflows a float
