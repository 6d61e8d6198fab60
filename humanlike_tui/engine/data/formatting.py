"""Prompt templates: the text a row becomes, exactly as trained (instruct or the tokenizer's chat template)."""

from __future__ import annotations

from humanlike_tui.engine.data.loading import Row
from humanlike_tui.errors import DataError

INSTRUCT_PROMPT = "### Instruct:\n{prompt}\n\n### Output:\n"


INSTRUCT_END = "\n### End"


def resolve_template(template: str, tokenizer=None) -> str:
    """`auto` (the default) is the model's own chat template when its tokenizer has one, else instruct."""
    if template != "auto":
        return template
    return "chat" if getattr(tokenizer, "chat_template", None) else "instruct"


def chat_turn_end(tokenizer) -> str | None:
    """The token that closes an assistant turn in the tokenizer's chat template ('<|im_end|>',
    '<end_of_turn>', '<|eot_id|>', '<|end|>' ...), read off the template itself; None if it adds nothing."""
    marker = "\u2063answer\u2063"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render this is treated as having no end token
        return None
    tail = text.split(marker, 1)[1].strip() if marker in text else ""
    if not tail:
        return None
    first = tail.split()[0]
    ids = tokenizer(first, add_special_tokens=False)["input_ids"]
    return first if len(ids) == 1 else None


def format_prompt(prompt: str, template: str, tokenizer=None) -> str:
    """The text the model sees before its answer, exactly as in training and in chat."""
    template = resolve_template(template, tokenizer)
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
