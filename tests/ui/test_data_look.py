"""The Config screen's data look on conversations (issue 22.6): counts per shape and rows as turns with the
learned ones marked, the same lines `humanlike-tui data inspect` prints."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.widgets import Static

from humanlike_tui.ui.widgets.data_look import DataLook
from ui_helpers import SIZE, build, settle, wait_until


@dataclass
class Turn:
    role: str
    text: str
    loss: bool


@dataclass
class ConversationPreview:
    rows: int
    lengths: list[int]
    max_length: int
    dropped_share: float
    examples: list[str]
    turns: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)
    shortened_share: float = 0.0


def preview(cfg):
    turns = [[Turn("system", "You are Sam.", False), Turn("user", "hi!", False), Turn("assistant", "hey you", True),
              Turn("user", "bored", False), Turn("assistant", "wanna hear a silly fact?", True)]]
    return ConversationPreview(40, [120] * 40, cfg.data.max_length, 0.0, ["(exact text)"], turns,
                               {"messages": 30, "sharegpt": 10}, 0.05)


async def test_the_data_look_shows_turns_and_shapes():
    app = build(initial_screen="config", preview=preview)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        look = app.screen.query_one(DataLook)
        await wait_until(pilot, lambda: "messages 30" in str(look.query_one("#data-summary", Static).render()))
        summary = str(look.query_one("#data-summary", Static).render())
        assert "ShareGPT 10" in summary and "5.0% conversations shortened" in summary
        body = look.query_one("#data-examples", Static).render()
        lines = str(body).splitlines()
        assert "* assistant  hey you" in lines and "  user       hi!" in lines and "  system     You are Sam." in lines
        text = look.query_one("#data-examples", Static).content  # the rich Text as given
        learned = [text.plain[s.start:s.end] for s in text.spans if s.style == "green"]
        assert learned == ["* assistant  hey you\n", "* assistant  wanna hear a silly fact?\n"]  # in colour
