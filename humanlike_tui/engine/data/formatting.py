"""Prompt templates: the text a row becomes, exactly as trained (instruct or the tokenizer's chat template)."""

from __future__ import annotations

from humanlike_tui.engine.data.loading import Row
# The template rules live in templates.py (below this module and conversation.py); re-exported here.
from humanlike_tui.engine.data.templates import INSTRUCT_END, INSTRUCT_PROMPT, chat_turn_end, resolve_template  # noqa: F401
from humanlike_tui.errors import DataError


def format_prompt(prompt: str, template: str, tokenizer=None, system: str = "") -> str:
    """The text the model sees before its answer, exactly as in training and in chat; with a persona
    (data.system_prompt) the system message comes first (folded into the prompt where the template has
    no system role)."""
    template = resolve_template(template, tokenizer)
    if system.strip():
        from humanlike_tui.engine.data.conversation import SYSTEM, USER, render

        return render([(SYSTEM, system), (USER, prompt)], template, tokenizer, generation_prompt=True).text
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise DataError("data.template: 'chat' needs a model with a chat template; this one has none, "
                            "use data.template = 'instruct'")
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt.strip()}], tokenize=False,
                                             add_generation_prompt=True)
    return INSTRUCT_PROMPT.format(prompt=prompt.strip())


def answer_suffix(template: str) -> str:
    return INSTRUCT_END if template == "instruct" else ""


def format_example(row: Row, template: str, tokenizer=None, eos: str = "<|endoftext|>") -> str:
    """The whole training text for a row, for previews."""
    template = resolve_template(template, tokenizer)
    return format_prompt(row.prompt, template, tokenizer) + row.chosen.strip() + answer_suffix(template) + eos


def encode_answer(tokenizer, text: str, template: str) -> tuple[int, ...]:
    """The answer's ids and the EOS that teaches the model to stop (for chat templates, load_tokenizer made
    EOS the template's turn-end token)."""
    template = resolve_template(template, tokenizer)
    ids = tokenizer(text.strip() + answer_suffix(template), add_special_tokens=False)["input_ids"]
    return tuple(ids) + (tokenizer.eos_token_id,)
