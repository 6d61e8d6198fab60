"""Conversations in every family's template (issue 22, items 2 and 5), offline: each family's tokenizer (the
tiny BPE with the family's special tokens) with the family's real chat template as TRL ships it.

- Templates that mark assistant output ({% generation %}): our labels equal transformers'
  `apply_chat_template(..., return_assistant_tokens_mask=True)` token for token.
- The others (llama3, SmolLM2, Qwen3, Gemma 3, Gemma 1, Mistral, Phi-3, our instruct template): exactly the
  assistant turns, each with its end token, carry labels; never a system or user token.
- The Chat path (Generator) renders a three-turn conversation to the same token ids as the training
  formatter, persona included.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from humanlike_tui.config import DataConfig
from humanlike_tui.engine import data as D
from humanlike_tui.engine.models.loading import use_turn_end_as_eos

from test_families import CHATML, MISTRAL, base_tokenizer

TRL_TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"
SPECIALS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<think>",
            "</think>", "<start_of_turn>", "<end_of_turn>", "[INST]", "[/INST]", "</s>", "<|system|>", "<|user|>",
            "<|assistant|>", "<|end|>"]
# SmolLM2's own template: ChatML with a default system message when the conversation brings none.
SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
           "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MISTRAL_NO_SYSTEM = MISTRAL.replace("{% for m in messages %}", "{% for m in messages %}{% if m['role'] == 'system' %}"
                                    "{{ raise_exception('no system role') }}{% endif %}")


def trl_template(name: str) -> str:
    return (TRL_TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def family_tokenizer(template: str, eos: str = "<|endoftext|>"):
    tok = copy.deepcopy(base_tokenizer())
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    tok.eos_token = eos
    tok.chat_template = template
    use_turn_end_as_eos(tok, "auto")  # as load_tokenizer does: the template's turn end becomes EOS
    return tok


PERSONA = "You are Sam: warm, curious, brief."
TURNS = [("user", "hi there!"), ("assistant", "hey :) how's your day going?"), ("user", "long. my cat was sick."),
         ("assistant", "oh no, poor thing. is she feeling better now?"), ("user", "yes, she ate dinner"),
         ("assistant", "that's such a relief! give her a scratch from me.")]
ANSWERS = [text for role, text in TURNS if role == "assistant"]


def example(tok, turns, template="auto", loss_on="all_assistant", system_prompt=""):
    """The conversation through the training path: a Row as the loader makes it, tokenize_rows, sft_tensors."""
    row = D.Row(turns[-2][1], turns[-1][1], None, tuple(turns[:-1]), "messages")
    dcfg = DataConfig(source="x.jsonl", template=template, loss_on=loss_on, system_prompt=system_prompt,
                      max_length=4096, eval_fraction=0)
    (ex,) = D.tokenize_rows([row], tok, dcfg, D.DataCounts("x"), need_rejected=False)
    return ex


def labelled_runs(tok, ex) -> list[str]:
    ids, labels = D.sft_tensors(ex, False)
    runs, current = [], []
    for i, lab in zip(ids + [None], labels + [D.IGNORE]):
        if lab != D.IGNORE:
            current.append(i)
        elif current:
            runs.append(tok.decode(current))
            current = []
    return runs


# family: (template, the text after each answer that carries loss, text before the final answer's words)
FAMILIES = {
    "llama3": (trl_template("llama3"), "<|eot_id|>", ""),
    "smollm2": (SMOLLM2, "<|im_end|>", ""),
    "qwen3": (trl_template("qwen3"), "<|im_end|>", "<think>\n\n</think>\n\n"),  # its template's empty thought
    "gemma3": (trl_template("gemma3"), "<end_of_turn>", ""),
    "gemma": (trl_template("gemma"), "<end_of_turn>", ""),  # no system role: the persona opens the first turn
    "mistral": (MISTRAL_NO_SYSTEM, "</s>", ""),
    "phi3": (trl_template("phi3"), "<|end|>", ""),
    "chatml": (CHATML, "<|im_end|>", ""),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exactly_the_assistant_turns_carry_labels(family):
    template, end, final_head = FAMILIES[family]
    tok = family_tokenizer(template)
    assert tok.eos_token == end
    ex = example(tok, [("system", PERSONA)] + TURNS)
    runs = labelled_runs(tok, ex)
    assert runs == [a + end for a in ANSWERS[:-1]] + [final_head + ANSWERS[-1] + end]
    assert labelled_runs(tok, example(tok, [("system", PERSONA)] + TURNS, loss_on="last")) == runs[-1:]
    # The persona is in the text, untrained: as a system turn, or folded into the first user turn.
    text = tok.decode(list(ex.prompt_ids))
    assert PERSONA in text and not any(PERSONA in r for r in runs)
    if family in ("gemma", "mistral"):
        assert f"{PERSONA}\n\nhi there!" in text


def test_instruct_template_labels_each_answer_with_its_end_marker():
    tok = family_tokenizer(CHATML)
    ex = example(tok, [("system", PERSONA)] + TURNS, template="instruct")
    assert labelled_runs(tok, ex) == [a + D.INSTRUCT_END + tok.eos_token for a in ANSWERS]
    assert tok.decode(list(ex.prompt_ids)).startswith(f"### System:\n{PERSONA}\n\n### Instruct:\nhi there!")


@pytest.mark.parametrize("name", ["llama3_training", "qwen3_training", "gemma3_training", "phi3_training"])
def test_labels_equal_transformers_assistant_mask(name):
    tok = family_tokenizer(trl_template(name))
    turns = [("system", PERSONA)] + TURNS
    ex = example(tok, turns)
    ids, labels = D.sft_tensors(ex, False)
    hf = tok.apply_chat_template([{"role": r, "content": c} for r, c in turns], tokenize=True, return_dict=True,
                                 return_assistant_tokens_mask=True)
    assert ids == hf["input_ids"][:len(ids)]  # ours ends with the last answer's final token
    assert [int(t != D.IGNORE) for t in labels] == hf["assistant_masks"][:len(ids)]
    assert sum(hf["assistant_masks"][len(ids):]) == 0


def test_our_span_rule_agrees_with_the_generation_marks_where_they_mark_the_same():
    """llama3's plain template and its generation-marked twin render the same text and mark the answer
    and its <|eot_id|>: the plain one's labels (found by our rule) equal the marked one's mask."""
    turns = [("system", PERSONA)] + TURNS
    plain = D.sft_tensors(example(family_tokenizer(trl_template("llama3")), turns), False)
    marked = family_tokenizer(trl_template("llama3_training")).apply_chat_template(
        [{"role": r, "content": c} for r, c in turns], tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True)
    assert plain[0] == marked["input_ids"]
    assert [int(t != D.IGNORE) for t in plain[1]] == marked["assistant_masks"]


class _Config:
    max_position_embeddings = 4096


class _Model:
    config = _Config()


@pytest.mark.parametrize("family, template", [("qwen3", "auto"), ("gemma", "auto"), ("llama3", "auto"),
                                              ("chatml", "instruct")])
def test_chat_renders_history_exactly_as_training(family, template):
    """Three turns through the Chat path (Generator's encoding of the history and the new prompt) and
    through the training formatter: the chat's prompt is the training text up to the third answer."""
    from humanlike_tui.config import load_preset
    from humanlike_tui.engine.inference.generator import Generator
    from humanlike_tui.records import Turn

    tok = family_tokenizer(FAMILIES[family][0])
    cfg = load_preset("demo").replace(**{"data.template": template, "data.system_prompt": PERSONA})
    gen = Generator(_Model(), tok, cfg)
    history = [Turn(TURNS[0][1], adapter=TURNS[1][1]), Turn(TURNS[2][1], adapter=TURNS[3][1])]
    ids, kept, _ = gen._encode("adapter", TURNS[4][1], history, gen.default_settings, gen.system_prompt)
    ex = example(tok, TURNS, template=template, system_prompt=PERSONA)
    assert kept == 2 and ids == list(ex.prompt_ids)


@pytest.mark.slow  # imports trl (several seconds); CI runs it: .ci/run -m slow
def test_sft_loss_on_a_conversation_equals_trl_assistant_only_loss(tmp_path):
    """The same conversation, the same tiny llama: our SFT loss (every assistant turn, normalised by the
    labelled tokens as a training step does) equals TRL's SFTTrainer with assistant_only_loss=True."""
    import torch
    import transformers
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from humanlike_tui.engine import logprobs as L
    from humanlike_tui.engine.training.steps import sft_normaliser

    tok = family_tokenizer(trl_template("llama3"))
    tok.pad_token = "<|endoftext|>"
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512)).float()
    model.get_base_model = lambda: model  # answer_logprobs takes the PEFT model training holds
    turns = [("system", PERSONA)] + TURNS

    ex = example(tok, turns)
    ids, labels = D.sft_tensors(ex, False)
    batch = D.pad_batch([(ids, labels)], tok.pad_token_id)
    with torch.no_grad():
        logp, _ = L.answer_logprobs(model, *batch, "cpu")
    ours = float(-logp.sum() / sft_normaliser(ex, False))

    data = Dataset.from_list([{"messages": [{"role": r, "content": c} for r, c in turns]}])
    args = SFTConfig(output_dir=str(tmp_path / "trl"), assistant_only_loss=True, report_to=[], max_length=None,
                     per_device_train_batch_size=1, use_cpu=True, bf16=False, fp16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    inputs = trainer.data_collator([trainer.train_dataset[0]])
    with torch.no_grad():
        theirs = float(trainer.compute_loss(model, inputs))
    assert sum(int(t != D.IGNORE) for t in labels) == int((inputs["labels"] != -100).sum())
    assert abs(ours - theirs) < 1e-5, (ours, theirs)
