"""Every family people use, offline: a tiny random-weight model of each (llama/SmolLM, Qwen2, Qwen3, Gemma 3,
Mistral, Phi-3/4) with its family's chat template and special tokens trains 3 steps with the default
`data.template = "auto"` (= the chat template), saves, and chats; the LoRA targets come from the
architecture table and the memory plan from the model's config."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest

from humanlike_tui.config import load_preset
from humanlike_tui.engine import planning
from humanlike_tui.engine.inference.generator import Generator
from humanlike_tui.engine.models import architectures
from humanlike_tui.engine.models.builtins import _sample_corpus, build_tokenizer
from humanlike_tui.engine.models.loading import load_tokenizer
from humanlike_tui.engine.training.run import run_training

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
GEMMA = ("<bos>{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
         "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
MISTRAL = ("<s>{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
           "{% else %}{{ m['content'] }}</s>{% endif %}{% endfor %}")
PHI3 = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

# family: (config class, extra config, template, special tokens, eos, pad, the answer's end token)
FAMILIES = {
    "llama3": ("LlamaConfig", {}, LLAMA3, ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
               "<|eot_id|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"], "<|end_of_text|>", None, "<|eot_id|>"),
    "smollm2": ("LlamaConfig", {}, CHATML, ["<|im_start|>", "<|im_end|>"], "<|im_end|>", "<|im_end|>", "<|im_end|>"),
    "qwen2": ("Qwen2Config", {}, CHATML, ["<|im_start|>", "<|im_end|>"], "<|im_end|>", "<|endoftext|>", "<|im_end|>"),
    "qwen3": ("Qwen3Config", {"head_dim": 16}, CHATML, ["<|im_start|>", "<|im_end|>"], "<|im_end|>", "<|endoftext|>",
              "<|im_end|>"),
    "gemma3": ("Gemma3TextConfig", {"head_dim": 16}, GEMMA, ["<bos>", "<eos>", "<pad>", "<start_of_turn>",
               "<end_of_turn>"], "<eos>", "<pad>", "<end_of_turn>"),
    "mistral": ("MistralConfig", {}, MISTRAL, ["<s>", "</s>", "[INST]", "[/INST]"], "</s>", None, "</s>"),
    "phi3": ("Phi3Config", {}, PHI3, ["<|user|>", "<|assistant|>", "<|end|>"], "<|endoftext|>", None, "<|end|>"),
}


@functools.lru_cache(maxsize=1)
def base_tokenizer():
    return build_tokenizer(_sample_corpus())  # trained once per session (a second or two)


def make_model(folder: Path, family: str) -> Path:
    """A tiny random model of the family, saved as a normal transformers folder (safetensors)."""
    import torch
    import transformers

    cls_name, extra, template, specials, eos, pad, _ = FAMILIES[family]
    tok = copy.deepcopy(base_tokenizer())
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.eos_token, tok.pad_token = eos, pad or eos
    if pad is None:
        tok.pad_token = None
    tok.chat_template = template
    config = getattr(transformers, cls_name)(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id, **extra)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def family_config(folder: Path):
    return load_preset("demo").replace(**{
        "model.name": str(folder), "quant.mode": "none", "lora.target_modules": (), "data.template": "auto",
        "train.max_steps": 3, "train.eval_every": 0, "train.sample_prompts": 0, "train.learning_rate": 5e-3,
        "data.max_rows": 48, "train.eval_max_rows": 4, "train.batch_size": 4, "train.grad_accum": 1,
        "generate.max_new_tokens": 6})


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_trains_saves_and_chats(family, tmp_path):
    folder = make_model(tmp_path / family, family)
    cfg = family_config(folder)
    end = FAMILIES[family][6]

    tok = load_tokenizer(cfg, str(folder))
    assert tok.eos_token == end  # the chat template's turn end closes every answer, and generation stops on it
    assert tok.pad_token_id != tok.eos_token_id or end == "</s>" and FAMILIES[family][5] is None

    plan = planning.plan_memory(cfg, device="cuda", available_bytes=8 * 2**30)
    assert plan.trainable_params > 0 and not any("not found" in n for n in plan.notes)

    result = run_training(cfg)
    assert result.status == "finished"
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").exists()

    gen = Generator.open(result.run_id)
    try:
        assert gen.template == "chat"
        exchange = gen.answer_both("How was your weekend?")
        for side in ("base", "adapter"):
            answer = exchange.answers[side]
            assert answer.finish in ("end", "length") and answer.tokens > 0
    finally:
        gen.close()


def test_architecture_table_knows_the_families():
    for model_type in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi", "phi3"):
        assert architectures.DEFAULT_TARGETS[model_type]
