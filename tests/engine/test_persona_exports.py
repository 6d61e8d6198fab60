"""The persona (data.system_prompt) in every export (issue 22.4): the chat template an export carries (GGUF
metadata, the merged folder's tokenizer) writes it as the default system message exactly as training and the
chat path did, folded into the first user turn for a template with no system role (Gemma); the Ollama
Modelfile has it as its SYSTEM line and its TEMPLATE writes it the same way."""

from __future__ import annotations

import pytest

from humanlike_tui.engine.inference.streaming import format_conversation
from humanlike_tui.engine.storage import gguf_export as G
from humanlike_tui.engine.storage.chat_template import export_chat_template
from humanlike_tui.records import GenSettings

from test_conversation_templates import FAMILIES, family_tokenizer

PERSONA = "You are Robin: cheerful, a bit cheeky, never formal."
HISTORY = [("hey!", "hiya :) what's up?")]


@pytest.mark.parametrize("family, template", [("chatml", "chat"), ("gemma", "chat"), ("llama3", "chat"),
                                              ("chatml", "instruct")])
def test_the_export_template_writes_the_persona_as_training_did(family, template):
    tok = family_tokenizer(FAMILIES[family][0])
    jinja = export_chat_template(template, tok, PERSONA)
    messages = [{"role": "user", "content": "hey!"}, {"role": "assistant", "content": "hiya :) what's up?"},
                {"role": "user", "content": "bored"}]
    exported = tok.apply_chat_template(messages, chat_template=jinja, tokenize=False, add_generation_prompt=True)
    assert exported == format_conversation("bored", HISTORY, template, tok, system=PERSONA)
    own = [{"role": "system", "content": "Be terse."}] + messages  # a client's own system message wins
    exported = tok.apply_chat_template(own, chat_template=jinja, tokenize=False, add_generation_prompt=True)
    assert exported == format_conversation("bored", HISTORY, template, tok, system="Be terse.")
    assert PERSONA not in exported


def test_the_modelfile_has_the_persona_and_its_template_writes_it():
    tok = family_tokenizer(FAMILIES["chatml"][0])
    pieces = G.template_pieces("chat", tok)
    text = G.modelfile("m.gguf", pieces, G.stop_strings("chat", tok), GenSettings(), PERSONA)
    assert f'SYSTEM """{PERSONA}"""' in text and "{{ .System }}" in text
    rendered = pieces.render([("user", "hey!"), ("assistant", "hiya :) what's up?"), ("user", "bored")], PERSONA)
    assert rendered == format_conversation("bored", HISTORY, "chat", tok, system=PERSONA)
    assert "SYSTEM" not in G.modelfile("m.gguf", pieces, G.stop_strings("chat", tok), GenSettings())
