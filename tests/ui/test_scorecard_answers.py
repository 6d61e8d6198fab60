"""The Adapters screen opens every answer of the selected run's last scorecard (a, or the button under the
card): each prompt with the base's and the adapter's answers, their tokens, whether they ended on their own,
and the judge's call; at 120x40 and at 80x24."""

from __future__ import annotations

from textual.widgets import Button, Static

from humanlike_tui.ui.screens.adapters import AdaptersScreen
from humanlike_tui.ui.screens.answer_dialogs import AnswersScreen, answers_summary
from support.chat_fakes import FakeScorecard
from test_adapters_screen import full_card, library_app, scored_screen
from ui_helpers import wait_until

RECORDS = [
    {"prompt": "Any plans for the weekend?", "side": "base", "text": "As an AI, I do not have plans.", "tokens": 9,
     "stopped": True, "judge_human": 0.04},
    {"prompt": "Do you like pizza?", "side": "base", "text": "Pizza is a dish " * 30, "tokens": 256, "stopped": False,
     "judge_human": 0.2},
    {"prompt": "Any plans for the weekend?", "side": "adapter", "text": "Oh yeah, hiking! 🥾 You?", "tokens": 11,
     "stopped": True, "judge_human": 0.91},
    {"prompt": "Do you like pizza?", "side": "adapter", "text": "", "tokens": 0, "stopped": True, "judge_human": 0.6},
]


def card_with_answers() -> dict:
    return full_card() | {"answers_file": "answers.jsonl",
                          "judge": {"accuracy": 0.95, "train_answers": 160, "heldout_answers": 40}}


def answers_app(card: dict, records=RECORDS):
    return library_app(scorecard=FakeScorecard(card, answers=records))


def shown_text(screen: AnswersScreen) -> str:
    return str(screen.query_one("#answers-text", Static).content) + str(
        screen.query_one("#answers-summary", Static).content)


async def test_answers_open_from_the_scorecard_and_close():
    app, _ = answers_app(card_with_answers())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await scored_screen(pilot)
        button = screen.query_one("#show-answers", Button)
        assert button.display and not button.disabled and screen.check_action("answers", ()) is True
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AnswersScreen), what="the answers")
        text = shown_text(app.screen)
        assert "1/2 > Any plans for the weekend?" in text and "2/2 > Do you like pizza?" in text
        assert "Oh yeah, hiking! 🥾 You?" in text and "As an AI, I do not have plans." in text
        assert "256 tokens · cut at the token limit" in text and "11 tokens · ended on its own" in text
        assert "judge: human-like (0.91)" in text and "judge: not human-like (0.04)" in text
        assert "(an empty answer: the model ended at once)" in text
        assert "2 prompts · ended on their own: base 1, adapter 2 · judged human-like: base 0, adapter 2" in text
        assert "50 held-out rows" in text  # which scorecard these answers belong to
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, AdaptersScreen), what="back to the library")
        assert "a: every answer" in str(screen.query_one("#scorecard", Static).content.title)
        button.scroll_visible(animate=False)
        await pilot.pause(0.05)
        await pilot.click("#show-answers")  # the button under the card opens them too
        await wait_until(pilot, lambda: isinstance(app.screen, AnswersScreen), what="the answers again")


async def test_no_answers_key_for_a_card_that_kept_none():
    app, _ = answers_app(full_card())  # a scorecard from before answers were kept
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await scored_screen(pilot)
        assert not screen.query_one("#show-answers", Button).display
        assert screen.check_action("answers", ()) is False  # hidden from the footer, not greyed
        await pilot.press("a")
        await pilot.pause(0.1)
        assert isinstance(app.screen, AdaptersScreen)


async def test_a_card_whose_answers_file_is_gone_says_so():
    app, _ = answers_app(card_with_answers(), records=[])
    async with app.run_test(size=(120, 40)) as pilot:
        await scored_screen(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: any("No answers were kept" in str(n.message) for n in app._notifications),
                         what="the warning")
        assert isinstance(app.screen, AdaptersScreen)


async def test_answers_fit_at_80x24():
    app, _ = answers_app(card_with_answers())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await scored_screen(pilot)
        screen.query_one("#show-answers", Button).scroll_visible(animate=False)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AnswersScreen), what="the answers")
        await pilot.pause(0.05)
        answers = app.screen
        box = answers.query_one("Vertical").region
        assert box.x >= 0 and box.y >= 0 and box.right <= 80 and box.bottom <= 24
        close = answers.query_one("#close", Button).region
        assert close.height >= 1 and close.bottom <= box.bottom and close.right <= box.right  # in view
        text = answers.query_one("#answers-text", Static)
        assert text.region.right <= box.right and text.virtual_size.width <= box.width  # wraps, no side scroll
        scroll = answers.query_one("#answers-scroll")
        assert scroll.region.height >= 10 and scroll.max_scroll_y > 0  # most of the screen; the rest scrolls
        await pilot.press("end")
        await pilot.pause(0.05)
        assert scroll.scroll_y == scroll.max_scroll_y  # the keys scroll it: focus is on the answers


def test_summary_without_a_judge():
    plain = [{k: v for k, v in r.items() if k != "judge_human"} for r in RECORDS]
    assert answers_summary(plain) == "2 prompts · ended on their own: base 1, adapter 2"
