"""The template rules every formatter shares: the instruct template's markers, what `auto` means, and the
token that closes an assistant turn in a chat template. A leaf: formatting.py and conversation.py read it."""

from __future__ import annotations

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
