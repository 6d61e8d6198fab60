"""Conversations: rows in OpenAI's `messages`, ShareGPT's `conversations` or TRL's conversational preference
shape, checked turn by turn; rendered with the template exactly as the chat path renders them; and which
tokens carry loss (the assistant turns, with the token that ends each one).

A conversation row becomes a `Row` like any other: `messages` holds the turns before the final answer (it
ends on the user), `chosen` (and `rejected`) the final assistant answer(s), `prompt` the last user message.
So one formatter serves training, chat, serve, eval and exports: `render(turns, template, tokenizer)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from humanlike_tui.engine.data.templates import INSTRUCT_END, INSTRUCT_PROMPT, chat_turn_end
from humanlike_tui.errors import DataError

SYSTEM, USER, ASSISTANT = "system", "user", "assistant"

# Role names as data sets write them (OpenAI, ShareGPT), mapped to ours; any other role drops the row.
ROLE_NAMES = {"system": SYSTEM, "user": USER, "human": USER, "assistant": ASSISTANT, "gpt": ASSISTANT}

SHAPES = ("prompt_chosen", "messages", "sharegpt", "preference_messages")

# The instruct template's system line, before the first '### Instruct:' (our own template has no system role).
INSTRUCT_SYSTEM = "### System:\n{system}\n\n"

Turn = tuple[str, str]  # (role, content), role one of SYSTEM, USER, ASSISTANT


# ---- shapes ------------------------------------------------------------------------------------------------


def shape_of(rec: dict, fmt: str, prompt_column: str = "prompt", chosen_column: str = "chosen") -> str:
    """The row's shape: data.format when set, else told from its fields (as TRL and axolotl do)."""
    if fmt != "auto":
        return fmt
    if "messages" in rec:
        return "preference_messages" if chosen_column in rec else "messages"
    if "conversations" in rec:
        return "sharegpt"
    if isinstance(rec.get(prompt_column), list):  # TRL: prompt/chosen/rejected as lists of messages
        return "preference_messages"
    return "prompt_chosen"


def read_turns(items: Any, role_key: str, content_key: str, max_chars: int) -> tuple[tuple[Turn, ...], str | None]:
    """The turns of a list of messages, or the reason the list is unusable."""
    if not isinstance(items, list):
        return (), "turns not a list"
    turns = []
    for item in items:
        if not isinstance(item, dict):
            return (), "turn not an object"
        role = ROLE_NAMES.get(str(item.get(role_key, "")).strip().lower())
        if role is None:
            return (), "unknown role"
        content = _text_of(item.get(content_key))
        if content is None:
            return (), "turn content not text"
        if not content.strip():
            return (), "empty turn"
        if len(content) > max_chars:
            return (), "over max_length"
        if not encodable(content):
            return (), "turn not valid Unicode"
        turns.append((role, content.strip()))
    return tuple(turns), None


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or OpenAI's list of parts when every part is text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(isinstance(p, dict) and p.get("type") == "text"
                                                     and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return None


def encodable(text: str) -> bool:
    """False for text the tokenizer cannot take: a JSON escape like "\\ud800" decodes to a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def order_problem(turns: Sequence[Turn], ends_on: str) -> str | None:
    """Why the turns are not one conversation: a system message only first, then user and assistant taking
    turns from the user on, ending on `ends_on`."""
    if not turns:
        return "empty conversation"
    body = list(turns[1:] if turns[0][0] == SYSTEM else turns)
    if any(role == SYSTEM for role, _ in body):
        return "system turn after the start"
    if not body:
        return "no user turn"
    if body[0][0] != USER:
        return "conversation starts with the assistant"
    for (a, _), (b, _) in zip(body, body[1:]):
        if a == b:
            return f"two {a} turns in a row"
    if body[-1][0] != ends_on:
        return "conversation ends on the user" if ends_on == ASSISTANT else "history ends on the assistant"
    return None


def final_answer(value: Any, max_chars: int) -> tuple[str | None, str | None]:
    """A preference row's chosen or rejected answer: a string, one assistant message, or (TRL) a list
    holding one assistant message. Returns (text, None) or (None, reason)."""
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        turns, problem = read_turns(value, "role", "content", max_chars)
        if problem:
            return None, problem
        if len(turns) != 1 or turns[0][0] != ASSISTANT:
            return None, "answer not one assistant turn"
        return turns[0][1], None
    if not isinstance(value, str):
        return None, "answer not text"
    if not value.strip():
        return None, "empty answer"
    if len(value) > max_chars:
        return None, "over max_length"
    if not encodable(value):
        return None, "answer not valid Unicode"
    return value.strip(), None


# ---- turns of a row ----------------------------------------------------------------------------------------


def with_system(turns: Sequence[Turn], system_prompt: str) -> list[Turn]:
    """The turns with data.system_prompt first, unless they already start with a system message."""
    turns = list(turns)
    if system_prompt.strip() and not (turns and turns[0][0] == SYSTEM):
        turns.insert(0, (SYSTEM, system_prompt.strip()))
    return turns


def fold_system(turns: Sequence[Turn]) -> list[Turn]:
    """For templates with no system role (Gemma): the system text opens the first user turn, as Gemma 3's
    own template does ('system\\n\\nuser')."""
    turns = list(turns)
    if not turns or turns[0][0] != SYSTEM:
        return turns
    system, rest = turns[0][1], turns[1:]
    if rest and rest[0][0] == USER:
        return [(USER, f"{system}\n\n{rest[0][1]}")] + rest[1:]
    return [(USER, system)] + rest


_SYSTEM_SUPPORT: dict[str, bool] = {}


def supports_system(tokenizer) -> bool:
    """Whether the chat template renders a system message (Gemma's raises or leaves it out)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if template not in _SYSTEM_SUPPORT:
        marker = "\u2063persona\u2063"
        try:
            text = tokenizer.apply_chat_template([{"role": SYSTEM, "content": marker}, {"role": USER, "content": "hi"}],
                                                 tokenize=False, add_generation_prompt=True)
            _SYSTEM_SUPPORT[template] = marker in text and "hi" in text.split(marker, 1)[1]
        except Exception:  # noqa: BLE001 - 'System role not supported' and the like
            _SYSTEM_SUPPORT[template] = False
    return _SYSTEM_SUPPORT[template]


def generation_tagged(tokenizer) -> bool:
    """The chat template marks assistant output with {% generation %}: transformers can say which
    tokens are the assistant's, and we take its word for it."""
    return bool(re.search(r"\{%-?\s*generation\s*-?%\}", getattr(tokenizer, "chat_template", None) or ""))


# ---- rendering -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: tuple[tuple[int, int], ...]  # each assistant turn's [start, end) in text: its words and end marker
    turns: tuple[Turn, ...]  # the turns as rendered (a system prompt folded for templates without one)


def render(turns: Sequence[Turn], template: str, tokenizer, *, generation_prompt: bool = False,
           eos: str | None = None) -> Rendered:
    """The conversation's text as trained and as chat sends it (template resolved: instruct | chat).
    With `generation_prompt` the turns end on the user and the text ends where the answer begins."""
    if template == "chat":
        return _render_chat(turns, tokenizer, generation_prompt)
    eos = eos if eos is not None else (getattr(tokenizer, "eos_token", None) or "<|endoftext|>")
    return _render_instruct(turns, eos)


def _render_instruct(turns: Sequence[Turn], eos: str) -> Rendered:
    text, spans = "", []
    for role, content in turns:
        if role == SYSTEM:
            text += INSTRUCT_SYSTEM.format(system=content.strip())
        elif role == USER:
            text += INSTRUCT_PROMPT.format(prompt=content.strip())
        else:
            start = len(text)
            text += content.strip() + INSTRUCT_END + eos
            spans.append((start, len(text)))
    return Rendered(text, tuple(spans), tuple(turns))


def _messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": role, "content": content.strip()} for role, content in turns]


def _render_chat(turns: Sequence[Turn], tokenizer, generation_prompt: bool) -> Rendered:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise DataError("data.template: 'chat' needs a model with a chat template; this one has none, "
                        "use data.template = 'instruct'")
    turns = list(turns) if supports_system(tokenizer) else fold_system(turns)
    end_marker = chat_turn_end(tokenizer)
    if end_marker is None and getattr(tokenizer, "eos_token", None):
        # A template that closes no assistant turn: each answer ends with EOS, as a single answer is trained,
        # so the model learns to stop and chat history reads the same.
        end_marker = tokenizer.eos_token
        turns = [(r, c.strip() + end_marker if r == ASSISTANT else c) for r, c in turns]
    msgs = _messages(turns)
    try:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as exc:  # noqa: BLE001 - jinja's TemplateError and raise_exception('roles must alternate')
        raise DataError(f"the chat template refused this conversation ({str(exc)[:200]})") from None
    spans, done = [], 0
    for i, (role, content) in enumerate(turns):
        if role != ASSISTANT:
            continue
        # The turn starts where the template's answer prompt ends, when the conversation so far renders as
        # a prefix of the whole; else (a template that re-renders history) where its words are found.
        head = _head(tokenizer, msgs[:i])
        words = content.strip()
        prefix = bool(head) and text.startswith(head)
        at = text.find(words, max(done, len(head)) if prefix else done)
        if at < 0:
            raise DataError("the chat template changed an answer's text, so its tokens cannot be found")
        start = len(head) if prefix and done <= len(head) <= at else at
        end = at + len(words)
        rest = text[end:].lstrip(" ")
        if end_marker and not words.endswith(end_marker) and rest.startswith(end_marker):
            end = len(text) - len(rest) + len(end_marker)
        spans.append((start, end))
        done = end
    return Rendered(text, tuple(spans), tuple(turns))


def _head(tokenizer, msgs: list[dict[str, str]]) -> str:
    """The conversation so far with the answer prompt; '' where the template refuses a partial one."""
    try:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - the answer's start is then found by its words
        return ""


# ---- tokens -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    ids: tuple[int, ...]
    turn_of: tuple[int, ...]  # per token: the index of the assistant turn it belongs to, or -1

    def span(self, k: int) -> tuple[int, int]:
        """Token range [start, end) of assistant turn k."""
        at = [i for i, t in enumerate(self.turn_of) if t == k]
        return at[0], at[-1] + 1


def encode(rendered: Rendered, tokenizer, template: str) -> Encoded:
    """Token ids of the whole text (as transformers' apply_chat_template tokenizes it) and, per token, the
    assistant turn it belongs to. A template with {% generation %} marks says itself which tokens are the
    assistant's; otherwise a token belongs to a turn when its characters overlap the turn's span."""
    if template == "chat" and generation_tagged(tokenizer):
        out = tokenizer.apply_chat_template(_messages(rendered.turns), tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        return Encoded(tuple(out["input_ids"]), _runs(out["assistant_masks"]))
    try:
        enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, KeyError):  # a slow tokenizer: tokenize piece by piece
        return _encode_pieces(rendered, tokenizer)
    turn_of, k = [], 0
    spans = rendered.spans
    for start, end in offsets:
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        turn_of.append(k if k < len(spans) and end > spans[k][0] else -1)
    return Encoded(tuple(enc["input_ids"]), tuple(turn_of))


def _runs(mask: Sequence[int]) -> tuple[int, ...]:
    """A 0/1 assistant mask as turn indices: each run of ones is the next assistant turn."""
    out, k, previous = [], -1, 0
    for m in mask:
        if m and not previous:
            k += 1
        out.append(k if m else -1)
        previous = m
    return tuple(out)


def _encode_pieces(rendered: Rendered, tokenizer) -> Encoded:
    ids: list[int] = []
    turn_of: list[int] = []
    cursor = 0
    for k, (start, end) in enumerate(rendered.spans):
        for text, owner in ((rendered.text[cursor:start], -1), (rendered.text[start:end], k)):
            piece = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
            ids += piece
            turn_of += [owner] * len(piece)
        cursor = end
    tail = tokenizer(rendered.text[cursor:], add_special_tokens=False)["input_ids"] if rendered.text[cursor:] else []
    return Encoded(tuple(ids + list(tail)), tuple(turn_of + [-1] * len(tail)))
