"""The Ollama Modelfile written beside a GGUF export: the chat path's conversation format cut into pieces
(TemplatePieces), an Ollama (Go text/template) TEMPLATE that writes them, and the Modelfile itself (FROM,
TEMPLATE, SYSTEM, stop strings, sampling)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from humanlike_tui.errors import ModelError


@dataclass(frozen=True)
class TemplatePieces:
    """A conversation's text as: head + (user + after_user | assistant + after_assistant)...; the text
    after the last user message is `after_user` (the generation prompt). With a system message the head
    is system_head + system + after_system instead. Read off the chat path's own formatting with
    placeholder messages, so an Ollama TEMPLATE reproduces it."""

    head: str
    after_user: str
    after_assistant: str
    multi_turn: bool  # False: only single prompts reproduce exactly (the template is not of this shape)
    system_head: str | None = None  # None: the template writes no system message
    after_system: str = ""

    def render(self, messages: list[tuple[str, str]], system: str = "") -> str:
        """messages: (role, content) pairs, user first, alternating; what the Ollama template writes."""
        if system and self.system_head is not None:
            out = self.system_head + system + self.after_system
        else:
            out = self.head
        for role, content in messages:
            out += content + (self.after_user if role == "user" else self.after_assistant)
        return out


def template_pieces(template: str, tokenizer) -> TemplatePieces:
    """The chat path's conversation format (streaming.format_conversation) cut into pieces."""
    from humanlike_tui.engine.inference.streaming import format_conversation

    u1, a1, u2 = "\u2063U1\u2063", "\u2063A1\u2063", "\u2063U2\u2063"
    one = format_conversation(u1, [], template, tokenizer)
    two = format_conversation(u2, [(u1, a1)], template, tokenizer)
    head, after_u1 = one.split(u1, 1)
    system_head, after_system = _system_pieces(template, tokenizer, u1, after_u1)
    try:
        head2, rest = two.split(u1, 1)
        mid_ua, rest = rest.split(a1, 1)
        mid_au, tail = rest.split(u2, 1)
    except ValueError:
        return TemplatePieces(head, after_u1, "", False, system_head, after_system)
    return TemplatePieces(head, after_u1, mid_au, head2 == head and mid_ua == after_u1 and tail == after_u1,
                          system_head, after_system)


def _system_pieces(template: str, tokenizer, u1: str, after_u1: str) -> tuple[str | None, str]:
    """(text before a system message, text between it and the first user message), as the export's
    chat template writes a conversation that starts with one; (None, '') if it writes none."""
    from humanlike_tui.engine.storage.chat_template import render_chat

    s1 = "\u2063S1\u2063"
    try:
        text = render_chat(template, tokenizer, [{"role": "system", "content": s1}, {"role": "user", "content": u1}])
        system_head, rest = text.split(s1, 1)
        after_system, tail = rest.split(u1, 1)
    except Exception:  # noqa: BLE001 - a template that rejects a system role, or drops it
        return None, ""
    return (system_head, after_system) if tail == after_u1 else (None, "")


def ollama_template(pieces: TemplatePieces) -> str:
    """An Ollama (Go text/template) TEMPLATE writing `pieces`. Ollama hands a template its system
    messages joined in .System; they replace the head (a model's default system prompt, if any, is
    part of the head), so a system message is kept, not dropped. Message text is not trimmed as the chat
    path trims it: Ollama's templates have Go's text/template builtins and `json`, no string functions."""
    texts = [pieces.head, pieces.after_user, pieces.after_assistant, pieces.system_head or "", pieces.after_system]
    for text in texts:
        if "{{" in text or '"""' in text:
            raise ModelError("the chat template's text contains '{{' or '\"\"\"', which an Ollama Modelfile "
                             "cannot hold literally")
    head = pieces.head
    if pieces.system_head is not None:
        head = ("{{ if .System }}" + pieces.system_head + "{{ .System }}" + pieces.after_system + "{{ else }}"
                + pieces.head + "{{ end }}")
    if not pieces.multi_turn:
        return head + "{{ .Prompt }}" + pieces.after_user
    return (head + "{{ range .Messages }}"
            "{{ if eq .Role \"user\" }}{{ .Content }}" + pieces.after_user +
            "{{ else if eq .Role \"assistant\" }}{{ .Content }}" + pieces.after_assistant + "{{ end }}{{ end }}")


def modelfile(gguf_name: str, pieces: TemplatePieces, stops: list[str], settings, system: str = "") -> str:
    """An Ollama Modelfile for the file beside it: FROM, TEMPLATE, the persona (SYSTEM, the run's
    data.system_prompt), stop strings, the run's sampling."""
    lines = ["# Ollama: ollama create my-model -f Modelfile && ollama run my-model",
             f"FROM ./{gguf_name}", f'TEMPLATE """{ollama_template(pieces)}"""']
    if system.strip():
        if '"""' in system:
            raise ModelError('data.system_prompt contains \'"""\', which an Ollama Modelfile cannot hold; '
                             "rephrase it without three quotes in a row")
        lines.append(f'SYSTEM """{system.strip()}"""')
    for s in stops:
        lines.append(f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}")
    lines += [f"PARAMETER temperature {settings.temperature}", f"PARAMETER top_p {settings.top_p}",
              f"PARAMETER repeat_penalty {settings.repetition_penalty}",
              f"PARAMETER num_predict {settings.max_new_tokens}"]
    return "\n".join(lines) + "\n"
