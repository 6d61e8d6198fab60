"""Picks on the Chat screen, as data: when the last exchange can be picked, and the preference it makes.
Pure (stdlib and core): the screen calls these, the service (protocols.PicksService) saves the result.

The left pane is the base model, the right one the adapter. Preferring one side makes it `chosen` and the
other `rejected`; editing a side makes the edited text `chosen` and that side's own answer `rejected`.
The history saved with a pick is the conversation the chosen side saw (each side continues its own), so
the row is what that answer was conditioned on."""

from __future__ import annotations

from typing import Any

from humanlike_tui.records import PickDraft
from humanlike_tui.ui.chat_transcript import ChatTurn

PANE_SIDES = {"left": "base", "right": "adapter"}
SIDE_PANES = {side: pane for pane, side in PANE_SIDES.items()}
DONE = ("end", "length")  # answers that are in: not stopped, not failed, not being written


def other(side: str) -> str:
    return "adapter" if side == "base" else "base"


def pick_problem(turn: ChatTurn | None, busy: bool, *, edit: bool = False) -> str:
    """Why the last exchange cannot be picked now ('' when it can)."""
    if busy:
        return "Still answering: pick once both answers are in."
    if turn is None:
        return "Ask something first: a pick compares the two answers to your last message."
    if turn.error:
        return "That exchange failed: ask again, then pick."
    answers = turn.answers
    unfinished = [SIDE_PANES[s] for s in answers if answers[s].finish not in DONE or not answers[s].text.strip()]
    if unfinished and not edit:
        return (f"The {' and '.join(unfinished)} answer is not complete (stopped, empty or failed): ask for another "
                f"one ({'/'.join('F6' if p == 'left' else 'F7' for p in unfinished)}) or edit it (ctrl+y).")
    if not edit and answers["base"].text.strip() == answers["adapter"].text.strip():
        return "Both answers are the same: there is nothing to prefer (ask for another one, or edit one)."
    return ""


def prefer(turns: list[ChatTurn], history_start: int, chosen: str, seeds: dict[str, int], when: float,
           system: str = "") -> PickDraft:
    """The last exchange with side `chosen` ('base' | 'adapter') preferred over the other side."""
    turn = turns[-1]
    return PickDraft(turn.prompt, turn.answers[chosen].text.strip(), turn.answers[other(chosen)].text.strip(),
                     chosen, other(chosen), history_of(turns, history_start, chosen), turn.adapter, turn.base_model,
                     settings_of(turn, seeds), when, system)


def edited(turns: list[ChatTurn], history_start: int, side: str, text: str, seeds: dict[str, int], when: float,
           system: str = "") -> PickDraft:
    """The last exchange with `side`'s answer edited into `text`: the edit is chosen, the model's rejected."""
    turn = turns[-1]
    return PickDraft(turn.prompt, text.strip(), turn.answers[side].text.strip(), "edited", side,
                     history_of(turns, history_start, side), turn.adapter, turn.base_model, settings_of(turn, seeds),
                     when, system)


def history_of(turns: list[ChatTurn], history_start: int, side: str) -> tuple[tuple[str, str], ...]:
    """(prompt, answer) of the turns before the last one, as `side` saw them (failed turns left out, as the
    generator leaves them out)."""
    return tuple((t.prompt, t.answers[side].text) for t in turns[history_start:-1] if not t.error)


def settings_of(turn: ChatTurn, seeds: dict[str, int]) -> dict[str, Any]:
    """The generation settings of the exchange, with the seed each side's answer was drawn with (asking for
    another answer draws with the next seed)."""
    return dict(turn.settings) | {"seeds": dict(seeds)}


def edit_problem(original: str, text: str) -> str:
    if not text.strip():
        return "Write the answer you wanted (it must not be empty)."
    if text.strip() == original.strip():
        return "Unchanged: edit it into the answer you would have liked, or cancel."
    return ""
