"""`adapters export --format gguf`: one .gguf file, read back by readers we did not write.

- llama family (a tiny llama made here, trained 2 steps with nf4 + LoRA on q/k/v/o and the MLP, grouped KV
  heads): transformers' own GGUF loader (`from_pretrained(folder, gguf_file=...)`) loads the model and the
  tokenizer; its logits equal the merged model's within the quantization's tolerance, its token ids and
  chat template equal the chat path's.
- phi (the builtin tiny-phi run): transformers has no `phi2` GGUF reader, so the file is read with the gguf
  package's GGUFReader and dequantizer, the names mapped back with transformers' GGUF name map
  (get_gguf_hf_weights_map) and the tokenizer rebuilt by transformers' GGUF tokenizer reader.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from tiny_run import RUN_NAME, SHARED_CACHE, install_run, tiny_config

IDS = [[5, 17, 99, 230, 7, 1200, 64, 3, 4000, 12]]
# max |logit difference| the quantization may cause on these random tiny models (logits are O(1)-O(10))
TOLERANCE = {"f16": 0.01, "q8_0": 0.1, "q4_0": 1.5}


@contextlib.contextmanager
def private_home(root: Path):
    (root / "data").mkdir(parents=True, exist_ok=True)
    if not (root / "cache").exists():
        (root / "cache").symlink_to(SHARED_CACHE, target_is_directory=True)
    saved = {k: os.environ.get(k) for k in ("HUMANLIKE_TUI_HOME", "HF_HUB_OFFLINE")}
    os.environ.update(HUMANLIKE_TUI_HOME=str(root), HF_HUB_OFFLINE="1")
    try:
        yield root
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def logits(model, ids=IDS):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.float()


def make_tiny_llama(folder: Path) -> Path:
    """A random 2-layer llama (4 query / 2 KV heads, tied embeddings) with the tiny-phi tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from humanlike_tui.engine.models.builtins import ensure_builtin

    tok = AutoTokenizer.from_pretrained(ensure_builtin("builtin:tiny-phi"))
    cfg = LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, initializer_range=0.1, rms_norm_eps=1e-5)
    torch.manual_seed(1)
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory):
    """(home, run name, merged float32 model, chat-path tokenizer) of a 2-step nf4 run on the tiny llama."""
    from humanlike_tui.engine.storage.merge import merged_model
    from humanlike_tui.engine.storage.runs import get_run
    from humanlike_tui.engine.training.run import run_training

    root = tmp_path_factory.mktemp("llama-home")
    with private_home(root):
        folder = make_tiny_llama(root / "tiny-llama")
        cfg = tiny_config().replace(**{
            "model.name": str(folder), "train.max_steps": 2, "train.eval_every": 0, "data.template": "chat",
            "lora.target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]})
        result = run_training(cfg, run_name="llama")
        assert result.status == "finished"
        run = get_run("llama")
        model, tok = merged_model(run.config(), run.adapter_dir)
        yield root, "llama", model, tok


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_0"])
def test_llama_gguf_loads_in_transformers(llama_run, quant, tmp_path):
    """f16 through the command (export_gguf: merge, write, Modelfile); the other types write the merged model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from humanlike_tui import cli
    from humanlike_tui.engine import data as D
    from humanlike_tui.engine.storage import gguf_export as G

    root, name, merged, tok = llama_run
    if quant == "f16":
        with private_home(root):
            assert cli.main(["adapters", "export", name, str(tmp_path / "gguf"), "--format", "gguf", "--quant", "f16"]) == 0
        path = tmp_path / "gguf" / f"{name}-f16.gguf"
        files = {p.name for p in path.parent.iterdir()}
        assert {path.name, "Modelfile", "humanlike_export.json"} <= files and len([f for f in files if ".gguf" in f]) == 1
    else:
        path = tmp_path / f"m-{quant}.gguf"
        G.write_gguf(merged, tok, path, quant=quant, template="chat")
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    assert loaded.config.num_key_value_heads == 2 and loaded.config.tie_word_embeddings
    diff = (logits(loaded) - logits(merged)).abs().max().item()
    print(f"llama {quant}: max |logit difference| {diff:.2e}")
    assert diff < TOLERANCE[quant], diff
    if quant == "f16":  # the tokenizer and template do not depend on the weights' type
        gtok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        for text in ["How was your weekend? 😀", "I   don't  know\n\n 123456 <|endoftext|>"]:
            assert gtok(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
        assert gtok.eos_token == tok.eos_token and gtok.pad_token == tok.pad_token
        assert gtok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                        add_generation_prompt=True) == D.format_prompt("hi", "chat", tok)


def _read_phi_gguf(path: Path, config):
    """The phi2 GGUF's weights as a PhiForCausalLM, read by the gguf package and mapped back to transformers'
    names by transformers' own GGUF name map."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize
    from transformers import PhiForCausalLM
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    model = PhiForCausalLM(config)
    names = get_gguf_hf_weights_map(model, TensorProcessor(), model_type="phi2")
    reader = GGUFReader(str(path))
    state = {names[t.name]: torch.from_numpy(np.copy(dequantize(t.data, t.tensor_type))) for t in reader.tensors}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if "rotary" not in k], (missing, unexpected)
    return model.eval(), reader


@pytest.fixture(scope="module")
def phi_merged(tmp_path_factory):
    """(home, merged model, tokenizer, the run's q8_0 export through export_gguf)."""
    from humanlike_tui.engine.storage import gguf_export as G
    from humanlike_tui.engine.storage.merge import merged_model
    from humanlike_tui.engine.storage.runs import get_run

    root = tmp_path_factory.mktemp("phi-home")
    with private_home(root):
        install_run(root)
        run = get_run(RUN_NAME)
        model, tok = merged_model(run.config(), run.adapter_dir)
        path = G.export_gguf(RUN_NAME, root / "gguf", quant="q8_0")
        yield root, model, tok, path


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_phi_gguf_round_trip(phi_merged, quant, tmp_path):
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf import convert_gguf_tokenizer, get_gguf_tokenizer

    from humanlike_tui.engine.inference.streaming import format_conversation
    from humanlike_tui.engine.storage import gguf_export as G

    root, merged, tok, exported = phi_merged
    if quant == "q8_0":
        path = exported
    else:
        path = tmp_path / f"m-{quant}.gguf"
        G.write_gguf(merged, tok, path, quant=quant, template="instruct")
    loaded, reader = _read_phi_gguf(path, merged.config)
    diff = (logits(loaded) - logits(merged)).abs().max().item()
    print(f"phi {quant}: max |logit difference| {diff:.2e}")
    assert diff < TOLERANCE[quant], diff
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("general.architecture") == "phi2" and field("phi2.rope.dimension_count") == 16
    assert field("phi2.block_count") == 2 and field("tokenizer.ggml.add_bos_token") is False
    arch, tdict, tcfg = get_gguf_tokenizer(str(path))
    gtok = PreTrainedTokenizerFast(tokenizer_object=convert_gguf_tokenizer(arch, tdict)[0],
                                   **{k: tcfg[k] for k in ("eos_token", "pad_token", "chat_template")})
    text = "### Instruct:\nHow was your weekend? 😀\n\n### Output:\n"
    assert gtok(text)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    # the instruct template as a chat template: what llama.cpp / LM Studio write is what training wrote
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey you"},
                    {"role": "user", "content": "how are you?"}]
    assert gtok.apply_chat_template(conversation, tokenize=False) == format_conversation(
        "how are you?", [("hi", "hey you")], "instruct", tok)


def test_modelfile_and_template_pieces(phi_merged, llama_run, tmp_path):
    from humanlike_tui.engine.inference.streaming import format_conversation
    from humanlike_tui.engine.storage import gguf_export as G

    root, _, tok, path = phi_merged
    text = (path.parent / "Modelfile").read_text()
    assert f"FROM ./{path.name}" in text and 'PARAMETER stop "### End"' in text
    assert 'PARAMETER stop "<|endoftext|>"' in text and "TEMPLATE \"\"\"{{- range $i, $m := .Messages }}" in text
    marker = json.loads((path.parent / "humanlike_export.json").read_text())
    assert marker["format"] == "gguf" and marker["quant"] == "q8_0" and marker["template"] == "instruct"
    for template, tokenizer in (("instruct", tok), ("chat", llama_run[3])):
        pieces = G.template_pieces(template, tokenizer)
        assert pieces.multi_turn
        turns = [("user", "hi"), ("assistant", "hey you"), ("user", "and you?"), ("assistant", "fine"),
                 ("user", "good")]
        assert pieces.render(turns) == format_conversation("good", [("hi", "hey you"), ("and you?", "fine")],
                                                           template, tokenizer)
    with private_home(root):  # an earlier export is replaced only with overwrite; bad types are refused
        with pytest.raises(Exception, match="--force"):
            G.export_gguf(RUN_NAME, path.parent, quant="q8_0")
        with pytest.raises(Exception, match="quant"):
            G.export_gguf(RUN_NAME, tmp_path / "other", quant="q3_k")
