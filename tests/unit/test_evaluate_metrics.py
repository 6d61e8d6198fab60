"""The scorecard's text metrics on hand-written answers with known results, and the DPO loss on a
pair computed by hand (with math, not torch)."""

from __future__ import annotations

import math

import pytest

from humanlike_tui.engine import evaluation as ev
from humanlike_tui import records


@pytest.mark.parametrize("text", [
    "Haha, that's hilarious 😂", "Spill the beans! 🤣", "Love it ❤️", "love it ❤ so much", "Done ✅",
    "Sunny ☀️ today", "Paris 🇫🇷", "Press 1️⃣ now", "Party time 🥳", "melting 🫠", "⭐ five stars",
    "Coffee ☕", "🚀 launch", "thumbs 👍🏽", "family 👨‍👩‍👧",
])
def test_emoji_is_found(text):
    assert ev.has_emoji(text)


@pytest.mark.parametrize("text", [
    "Plain text, nothing else.", "© 2024 ACME", "Trademark™ and ®", "→ next step", "Price: 5 €", "✓ checked",
    "★ rating", "∑ of x", "你好，世界", "Привет!", "It costs $5 (roughly)", "1. first\n2. second", "#1 fan",
    "♪ music note", "☐ box", "",
])
def test_no_emoji_in_plain_text(text):
    assert not ev.has_emoji(text)


@pytest.mark.parametrize("text", [
    "As an AI, I don't have personal preferences.",
    "I'm an artificial intelligence language model, I don't have personal experiences.",
    "As a large language model, I cannot browse the web.",
    "I am just a computer program, so I can't taste food.",
    "I don\u2019t have personal opinions, but here are some facts.",
    "I do not possess emotions in the way humans do.",
    "I'm not a human, but I can help.",
    "Based on my training data, the answer is 42.",
    "I'm an AI assistant and cannot feel tired.",
    "As a continuously evolving artificial intelligence, I keep learning.",
    "As a professional AI, I don't engage in personal experiences.",
    "You know, I'm just a conversational AI, but I love this!",
    "I'm just a chatbot and all, but every chat is different!",
])
def test_ai_disclaimers_are_found(text):
    assert ev.has_ai_disclaimer(text)


@pytest.mark.parametrize("text", [
    "I'm a machine learning engineer, and I love my job!",
    "Oh man, I don't have a favorite, I love them all!",
    "I have personal reasons for that, haha.",
    "My dog is a good boy.",
    "AI is everywhere these days, right?",
    "I'm a programmer by day and a drummer by night.",
    "As an AI enthusiast, I read every paper.",
    "I'm a huge AI fan, honestly!",
    "I'm a program manager at a bakery.",
    "I was trained to be a nurse, back in the day.",
])
def test_human_answers_have_no_disclaimer(text):
    assert not ev.has_ai_disclaimer(text)


def test_questions_back_to_the_user():
    assert ev.asks_question("I love hiking. What about you?")
    assert ev.asks_question("Have you tried it? It's great.")
    assert ev.asks_question("Really?!")
    assert not ev.asks_question("I love hiking.")
    assert not ev.asks_question("See https://example.com/search?q=cats for more.")


def test_contractions_count_is_words_not_possessives():
    text = "I'm sure it's fine, but don't worry: we'll see. The dog's bowl isn't empty."
    # I'm, it's, don't, we'll, isn't = 5; "dog's" is a possessive
    assert ev.count_contractions(text) == 5
    assert len(ev.words(text)) == 14
    assert ev.contractions_per_100_words([text]) == pytest.approx(100 * 5 / 14)
    assert ev.count_contractions("I\u2019ve got it, y'all.") == 2  # curly apostrophe too
    assert ev.count_contractions("I do not know what it is.") == 0
    assert ev.contractions_per_100_words([]) == 0.0


def test_length_diversity_and_repetition():
    assert ev.distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)  # (a b) twice, (b c), (b d)
    assert ev.repeated_ngram_rate(["I I I I I I"], 3) == pytest.approx(3 / 4)  # 4 trigrams, 1 unique
    assert ev.repeated_ngram_rate(["one two three four"], 3) == 0.0
    figures = ev.style_figures(["Hey! 😂 How are you?", "As an AI, I do not know."], stopped=[True, False])
    assert figures == pytest.approx({
        "ai_disclaimer_rate": 0.5, "emoji_rate": 0.5, "question_rate": 0.5, "exclamation_rate": 0.5,
        "contractions_per_100_words": 0.0, "mean_words": 5.5, "distinct_2": 1.0, "repeated_ngram_rate": 0.0,
        "stopped_rate": 0.5})
    assert ev.style_figures(["written answer"])["stopped_rate"] is None
    assert set(ev.style_figures([])) == set(records.STYLE_KEYS)


def test_preference_figures_are_length_normalized():
    # chosen: -10 over 10 tokens (-1.0/token); rejected: -12 over 20 tokens (-0.6/token): rejected wins
    # per token although its sum is lower. Second row: chosen -0.5/token beats rejected -2/token.
    out = ev.preference_figures([-10.0, -5.0], [10, 10], [-12.0, -20.0], [20, 10])
    assert out["preference_accuracy"] == 0.5
    assert out["preference_margin"] == pytest.approx(((-1.0 + 0.6) + (-0.5 + 2.0)) / 2)
    assert ev.preference_figures([], [], [], [])["preference_accuracy"] is None


def test_loss_figures():
    out = ev.loss_figures(-20.0, 10)
    assert out["eval_loss"] == pytest.approx(2.0) and out["perplexity"] == pytest.approx(math.exp(2.0))
    assert ev.loss_figures(0.0, 0)["perplexity"] is None


def test_dpo_loss_matches_a_hand_computed_pair():
    import torch

    from humanlike_tui.engine.training.objectives import dpo_loss

    pc, pr, rc, rr, beta = -12.0, -20.0, -14.0, -18.0, 0.1
    # By hand: chosen reward 0.1*(-12+14) = 0.2, rejected reward 0.1*(-20+18) = -0.2,
    # loss = -log(sigmoid(0.4)) = log(1 + e^-0.4)
    want = math.log(1 + math.exp(-0.4))
    assert want == pytest.approx(0.5130152523999526)
    t = lambda x: torch.tensor([x], dtype=torch.float64)  # noqa: E731
    loss, cr, rj = dpo_loss(t(pc), t(pr), t(rc), t(rr), beta)
    assert float(loss) == pytest.approx(want, abs=1e-12)
    assert float(cr) == pytest.approx(0.2) and float(rj) == pytest.approx(-0.2)
    # policy = reference: no preference yet, the loss is log 2
    loss0, _, _ = dpo_loss(t(-5.0), t(-7.0), t(-5.0), t(-7.0), 0.5)
    assert float(loss0) == pytest.approx(math.log(2))
