"""What the chat generator tells its listener while it answers. Frozen dataclasses, stdlib only, like
`humanlike_tui.events` (they subclass its `Event`, so `to_dict()` works the same), so the TUI can
import them without torch.

One exchange emits, for each side in turn ("base" first, then "adapter"):

    AnswerStarted(side, ...)  ->  AnswerText(side, text) x N  ->  AnswerDone(side, text, ...)

The `text` pieces of AnswerText, concatenated in order, are the answer so far; AnswerDone.text is the
final answer (trimmed, the template's end marker removed): a listener that shows the pieces should
replace them with it. A failure raises `GenerationError` (or an InputError) instead of emitting.
"""

from __future__ import annotations

from dataclasses import dataclass

from humanlike_tui.errors import HumanlikeError
from humanlike_tui.events import Event

SIDES = ("base", "adapter")  # base = the model with its adapter disabled; adapter = with the LoRA on
FINISH_REASONS = ("end", "length", "stopped")  # EOS or the template's end marker | max_new_tokens | Stop


class GenerationError(HumanlikeError):
    """Generation itself failed (out of memory, a broken model). Exit code 1.

    It lives here rather than in humanlike_tui.errors only because that module belongs to the
    foundation; it subclasses HumanlikeError, so the CLI and the UI already treat it as ours."""

    exit_code = 1


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


def printable(text: str) -> str:
    """Model output made safe for a terminal: control characters (ESC or CSI could start a terminal
    escape sequence) become U+FFFD; newlines and tabs stay. For display only: answers keep every character."""
    return "".join(c if c in "\n\t" or not (c < " " or "\x7f" <= c <= "\x9f") else "\ufffd" for c in text)
