"""`adapters export --merge-into trained|original`: the default export computes what `chat` showed."""

from __future__ import annotations

import json

import pytest

from tiny_run import RUN_NAME, install_run

IDS = [[5, 17, 99, 230, 7, 1200, 64, 3]]


def _logits(model, ids=IDS):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.float()


@pytest.fixture(scope="module")
def chat_logits(tmp_path_factory):
    """The adapter side of the chat path (Generator.open: the nf4 base as trained, the LoRA on it)."""
    import os

    from humanlike_tui.engine.inference.generator import Generator

    home = tmp_path_factory.mktemp("chat-home")
    (home / "data").mkdir()
    from tiny_run import SHARED_CACHE

    (home / "cache").symlink_to(SHARED_CACHE, target_is_directory=True)
    old = os.environ.get("HUMANLIKE_TUI_HOME")
    os.environ["HUMANLIKE_TUI_HOME"] = str(home)
    try:
        install_run(home)
        gen = Generator.open(RUN_NAME, device="cpu")
        try:
            return _logits(gen.model)
        finally:
            gen.close()
    finally:
        if old is None:
            os.environ.pop("HUMANLIKE_TUI_HOME", None)
        else:
            os.environ["HUMANLIKE_TUI_HOME"] = old


def test_default_export_equals_chat(home, tmp_path, chat_logits):
    from transformers import AutoModelForCausalLM

    from humanlike_tui.engine.storage import export as E

    install_run(home)
    out = E.export_merged(RUN_NAME, tmp_path / "merged")
    marker = json.loads((out / E.EXPORT_MARKER).read_text())
    assert marker["merge_into"] == "trained" and marker["quant"] == "nf4"
    merged = AutoModelForCausalLM.from_pretrained(out)
    diff = (_logits(merged) - chat_logits).abs().max().item()
    assert diff < 1e-4, diff
    _assert_trained_chat_template(out)


def _assert_trained_chat_template(out) -> None:
    """The export's tokenizer formats a conversation as training did (the demo run: the instruct template),
    not with the base tokenizer's own '<|user|>' template."""
    from transformers import AutoTokenizer

    from humanlike_tui.engine.inference.streaming import format_conversation

    tok = AutoTokenizer.from_pretrained(out)
    one = [{"role": "user", "content": " How was your weekend? "}]
    assert tok.apply_chat_template(one, tokenize=False, add_generation_prompt=True) == \
        "### Instruct:\nHow was your weekend?\n\n### Output:\n"
    two = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey you"},
           {"role": "user", "content": "and you?"}]
    assert tok.apply_chat_template(two, tokenize=False, add_generation_prompt=True) == format_conversation(
        "and you?", [("hi", "hey you")], "instruct", tok)


def test_original_export_differs_from_chat_by_the_quantization(home, tmp_path, chat_logits):
    from transformers import AutoModelForCausalLM

    from humanlike_tui import cli
    from humanlike_tui.engine.storage import export as E

    install_run(home)
    assert cli.main(["adapters", "export", RUN_NAME, str(tmp_path / "orig"), "--merge-into", "original"]) == 0
    assert json.loads((tmp_path / "orig" / E.EXPORT_MARKER).read_text())["merge_into"] == "original"
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "orig")
    assert (_logits(merged) - chat_logits).abs().max().item() > 1e-2  # the nf4 rounding the adapter was trained on
    with pytest.raises(Exception, match="merge_into"):
        E.export_merged(RUN_NAME, tmp_path / "x", merge_into="halfway")
