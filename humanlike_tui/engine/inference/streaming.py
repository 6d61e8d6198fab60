"""The pieces handed to model.generate, and the text around it: the conversation formatted as in
training, end markers held back until it is clear they are not one, the stop flag after every token."""

from __future__ import annotations

from typing import Callable, Sequence
from humanlike_tui.engine import data as D


# Where an answer ends in the instruct template, and turns the model may start by itself after it. Matched
# anywhere, a newline before them or not: an answer that starts with "### End" is an empty answer.
INSTRUCT_MARKERS = (D.INSTRUCT_END.strip(), "### Instruct:", "### Output:")


def markers_for(template: str) -> tuple[str, ...]:  # template: resolved (instruct | chat)
    """The text markers that end an answer: the instruct template's; none for a chat template, whose turn
    ends with a special token that generation stops on."""
    return INSTRUCT_MARKERS if template == "instruct" else ()


def cut_answer_text(text: str, template: str) -> str:
    """A finished answer as people see it: cut at the first end marker, trimmed."""
    return split_at_marker(text, markers_for(template), final=True)[0].strip()


def conversation_turns(prompt: str, history: Sequence[tuple[str, str]], system: str = "") -> list[tuple[str, str]]:
    """(role, text) turns of a chat: the persona, earlier (prompt, answer) turns with an answer, the prompt."""
    turns: list[tuple[str, str]] = []
    for p, a in history:
        if a.strip():  # a turn stopped before its first word is left out
            turns += [(D.USER, p), (D.ASSISTANT, a)]
    return D.with_system(turns + [(D.USER, prompt)], system)


def format_conversation(prompt: str, history: Sequence[tuple[str, str]], template: str, tokenizer=None,
                        system: str = "") -> str:
    """The text before the new answer: the persona (data.system_prompt), earlier (prompt, answer) turns,
    then the prompt, rendered by the training formatter (data.render_conversation) exactly as trained.

    With no history and no persona this is exactly `data.format_prompt(prompt, template, tokenizer)`."""
    template = D.resolve_template(template, tokenizer)
    turns = conversation_turns(prompt, history, system)
    if len(turns) == 1:
        return D.format_prompt(prompt, template, tokenizer)
    return D.render_conversation(turns, template, tokenizer, generation_prompt=True).text


def split_at_marker(text: str, markers: Sequence[str], final: bool = False) -> tuple[str, bool]:
    """(the text that may be shown, whether an end marker was reached).

    Cuts at the earliest complete marker. Otherwise, unless `final`, holds back a tail that could be
    the beginning of a marker ('\\n##' might become '\\n### End'), so it is never shown and then taken back."""
    hits = [i for i in (text.find(m) for m in markers) if i >= 0]
    if hits:
        return text[:min(hits)], True
    if not final:
        for k in range(min(max((len(m) for m in markers), default=0) - 1, len(text)), 0, -1):
            if any(m.startswith(text[-k:]) for m in markers):
                return text[:-k], False
    return text, False


class TextStream:
    """Receives token ids from model.generate (in the generating thread) and emits new text.

    Duck-typed like transformers' BaseStreamer (put/end), so importing this module needs no transformers.

    transformers (5.x) calls the stopping criteria with the new token *before* it hands that token to the
    streamer, so a criterion that read `marker_hit` from put() stopped one token after the marker was
    complete. The criterion made by `stopping_criteria(..., stream=self, prompt_len=n)` calls `see()` with
    every generated id first; put() then only adds what see() has not already read."""

    def __init__(self, tokenizer, markers: Sequence[str], on_text: Callable[[str], None]):
        self.tok, self.markers, self.on_text = tokenizer, markers, on_text
        self.ids: list[int] = []
        self.shown = ""  # the answer text already emitted
        self.prompt_seen = False
        self.marker_hit = False
        self._received = 0  # answer ids handed to put() so far

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands us the prompt
            self.prompt_seen = True
            return
        new = [int(i) for i in value.reshape(-1).tolist()]
        self._received += len(new)
        missing = self._received - len(self.ids)  # the stopping check may have read them already
        if missing > 0:
            self.ids += new[-missing:]
            self._update()

    def see(self, answer_ids: Sequence[int]) -> None:
        """Every id generated so far (from the stopping check, before put() gets the newest one)."""
        if len(answer_ids) > len(self.ids):
            self.ids = [int(i) for i in answer_ids]
            self._update()

    def _update(self) -> None:
        text = self.decode()
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return
        visible, hit = split_at_marker(text, self.markers)
        self.marker_hit |= hit
        self._emit_upto(visible)

    def end(self) -> None:
        pass  # the caller flushes with final_text(), which also releases held-back text

    def decode(self) -> str:
        return self.tok.decode(self.ids, skip_special_tokens=True)

    def _emit_upto(self, visible: str) -> None:
        # Only ever append: if a decoder rewrote earlier text, AnswerDone's final text corrects it.
        if len(visible) > len(self.shown) and visible.startswith(self.shown):
            self.on_text(visible[len(self.shown):])
            self.shown = visible

    def final_text(self) -> str:
        visible, hit = split_at_marker(self.decode(), self.markers, final=True)
        self.marker_hit |= hit
        self._emit_upto(visible)
        return visible.strip()


def stopping_criteria(should_stop: Callable[[], bool], stream: TextStream | None = None, prompt_len: int = 0):
    """Stop on the Stop flag, or (with `stream`) on the token that completes an end marker: the check
    hands the stream the ids generated so far before asking it, so it never lags a token behind."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopFlag(StoppingCriteria):
        """Checked after every new token: the Stop button, or the template's end marker."""

        def __call__(self, input_ids, scores, **kwargs):
            import torch

            if stream is not None:
                stream.see(input_ids[0, prompt_len:].tolist())
            done = should_stop() or (stream is not None and stream.marker_hit)
            return torch.full((input_ids.shape[0],), bool(done), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopFlag()])


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "not enough memory" in text
                                              or "can't allocate memory" in text)
