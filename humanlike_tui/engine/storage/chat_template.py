"""The chat template an export carries: the format the run was trained on, so a reader that formats a
conversation itself (transformers' apply_chat_template, llama.cpp, LM Studio) writes the prompt
training wrote. One place for both exports (merged folder and GGUF), so a later training option
(a persona's system prompt, another template) changes what every export carries at once."""

from __future__ import annotations

# Our instruct template (data.formatting: '### Instruct:\n{prompt}\n\n### Output:\n' ... '\n### End<eos>'),
# as a Jinja chat template. Contents are trimmed as the chat path trims them; a user message always ends
# with the answer's head, which is the generation prompt (the template has no other). A system message
# (a persona, data.system_prompt) is written as training writes it: data.conversation.INSTRUCT_SYSTEM,
# '### System:\n{system}\n\n' before the first '### Instruct:'.
INSTRUCT_JINJA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '### System:\\n' + message['content'] | trim + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruct:\\n' + message['content'] | trim + '\\n\\n### Output:\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] | trim + '\\n### End' + eos_token }}"
    "{% endif %}{% endfor %}"
)


def export_chat_template(template: str, tokenizer) -> str | None:
    """The Jinja chat template for an export of a run trained with the resolved data `template`
    (instruct | chat): ours for instruct, the model's own for chat (None if it has none)."""
    if template == "instruct":
        return INSTRUCT_JINJA
    return getattr(tokenizer, "chat_template", None) or None


def render_chat(template: str, tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """`messages` as the export's chat template writes them (what a reader of the export formats)."""
    jinja = export_chat_template(template, tokenizer)
    return tokenizer.apply_chat_template(messages, chat_template=jinja, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)
