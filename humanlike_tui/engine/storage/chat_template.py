"""The chat template an export carries: the format the run was trained on, so a reader that formats a
conversation itself (transformers' apply_chat_template, llama.cpp, LM Studio) writes the prompt
training wrote. One place for both exports (merged folder and GGUF), so a later training option
(a persona's system prompt, another template) changes what every export carries at once."""

from __future__ import annotations

import json

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


# For a chat template with no system role (Gemma 1/2): a system message opens the first user turn, as
# training folds it (data.conversation.fold_system: 'system\n\nuser').
FOLD_SYSTEM_JINJA = (
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- if messages | length > 1 and messages[1]['role'] == 'user' %}"
    "{%- set messages = [{'role': 'user', 'content': messages[0]['content'] | trim + '\\n\\n' + "
    "messages[1]['content'] | trim}] + messages[2:] %}"
    "{%- else %}{%- set messages = [{'role': 'user', 'content': messages[0]['content']}] + messages[1:] %}"
    "{%- endif %}{%- endif %}"
)


def default_system_jinja(system: str) -> str:
    """Jinja that makes `system` (the run's persona, data.system_prompt) the system message of a
    conversation that brings none, as training gave it to rows without one."""
    literal = json.dumps(system.strip())  # ASCII with \uXXXX escapes: a valid Jinja string literal
    return ("{%- if not messages or messages[0]['role'] != 'system' %}"
            "{%- set messages = [{'role': 'system', 'content': " + literal + "}] + messages %}{%- endif %}")


def export_chat_template(template: str, tokenizer, system: str = "") -> str | None:
    """The Jinja chat template for an export of a run trained with the resolved data `template`
    (instruct | chat): ours for instruct, the model's own for chat (None if it has none); with the run's
    persona (`system`) as the default system message, folded into the first user turn where the model's
    template has no system role."""
    from humanlike_tui.engine.data.conversation import supports_system

    jinja = INSTRUCT_JINJA if template == "instruct" else getattr(tokenizer, "chat_template", None) or None
    if jinja is None:
        return None
    if template == "chat" and not supports_system(tokenizer):
        jinja = FOLD_SYSTEM_JINJA + jinja
    return (default_system_jinja(system) + jinja) if system.strip() else jinja


def render_chat(template: str, tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """`messages` as the export's chat template writes them (what a reader of the export formats)."""
    jinja = export_chat_template(template, tokenizer)
    return tokenizer.apply_chat_template(messages, chat_template=jinja, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)
