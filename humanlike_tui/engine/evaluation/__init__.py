"""Evaluation: style metrics (pure) and the human-likeness scorecard of an adapter against its base."""


from humanlike_tui.engine.evaluation.metrics import (EMOJI_PRESENTATION, TEXT_PICTOGRAPHS, BARE_EMOJI, VS16, KEYCAP,
                                                     has_emoji, normalize_apostrophes, DISCLAIMER_PATTERNS,
                                                     has_ai_disclaimer, asks_question, has_exclamation, words,
                                                     count_contractions, contractions_per_100_words, ngrams,
                                                     distinct_n, repeated_ngram_rate, share, style_figures,
                                                     preference_figures, reward_accuracy, loss_figures)
from humanlike_tui.engine.evaluation.scoring import (SCORECARD_FILE, DEFAULT_LIMIT, EvaluationCancelled, Scorecard,
                                                     finished_adapter, heldout_examples, likelihood_scores,
                                                     generate_answers, score_side, scorecard, last_scorecard,
                                                     last_answers, run_split)
from humanlike_tui.engine.evaluation.answers import ANSWERS_FILE, read_answers, write_answers
from humanlike_tui.engine.evaluation.judge import Judge, Pair, train_judge
