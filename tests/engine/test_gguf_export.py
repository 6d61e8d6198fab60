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
    assert 'PARAMETER stop "<|endoftext|>"' in text and "{{ range .Messages }}" in text
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


def _end_of_generation_ids(path: Path) -> set[int]:
    """The ids llama.cpp stops on (llama-vocab.cpp special_eog_ids: eos, eot, eom) and Ollama's engine
    stops on (eos plus tokenizer.ggml.eos_token_ids)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    ids = {int(fields[k].contents()) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                               "tokenizer.ggml.eom_token_id") if k in fields}
    ollama = {int(fields["tokenizer.ggml.eos_token_id"].contents())}
    ollama |= set(fields["tokenizer.ggml.eos_token_ids"].contents()) if "tokenizer.ggml.eos_token_ids" in fields else set()
    assert ids == ollama, (ids, ollama)
    return ids


def _reader_answer(ids: list[int], eog: set[int], tok) -> str:
    """What llama.cpp prints for generated `ids`: every token up to the first end-of-generation one."""
    out = []
    for i in ids:
        if i in eog:
            break
        out.append(i)
    return tok.decode(out, skip_special_tokens=True)


@pytest.mark.parametrize("answer", ["", "hey you", "line one\n\nline two."])
def test_gguf_end_of_generation_ids_cover_every_way_an_answer_ends(phi_merged, llama_run, answer):
    """A reader stopping only on the GGUF's end-of-generation ids prints the answer and no marker text:
    for the instruct template the trained ending (answer, '\\n### End', EOS) and a turn the model starts by
    itself; for a chat template the turn-end token."""
    from humanlike_tui.engine import data as D
    from humanlike_tui.engine.inference.streaming import cut_answer_text

    _, _, tok, path = phi_merged
    eog = _end_of_generation_ids(path)
    trained_end = list(D.encode_answer(tok, answer, "instruct"))
    own_turn = tok(answer + "\n### Instruct:\nand you?", add_special_tokens=False)["input_ids"]
    for ids in (trained_end, own_turn):
        text = _reader_answer(ids, eog, tok)
        assert "#" not in text and text.strip() == cut_answer_text(tok.decode(ids, skip_special_tokens=True),
                                                                   "instruct") == answer
    llama_tok = llama_run[3]
    chat_path = llama_run[0] / "chat.gguf"
    from humanlike_tui.engine.storage import gguf_export as G

    G.write_gguf(llama_run[2], llama_tok, chat_path, quant="f16", template="chat")
    chat_end = list(D.encode_answer(llama_tok, answer, "chat")) + [5, 6, 7]
    assert _reader_answer(chat_end, _end_of_generation_ids(chat_path), llama_tok).strip() == answer


def test_gguf_stops_by_itself_in_llama_cpp(phi_merged):
    """llama.cpp itself (the llama-cpp-python binding) answers the exported run's prompts as `chat` does,
    ending on its own without marker text."""
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (optional: CMAKE_ARGS='-DGGML_NATIVE=OFF "
        "-DGGML_CUDA=OFF' pip install llama-cpp-python builds it from source in ~30 min)")
    from humanlike_tui.engine.inference.streaming import cut_answer_text, format_conversation

    root, merged, tok, path = phi_merged
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False, seed=0)
    for prompt in ["How was your weekend?", "hi"]:
        out = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=48, temperature=0.0)
        text = out["choices"][0]["message"]["content"]
        ids = tok(format_conversation(prompt, [], "instruct", tok), add_special_tokens=False, return_tensors="pt")
        generated = merged.generate(**ids, max_new_tokens=48, do_sample=False, eos_token_id=tok.eos_token_id)
        expected = cut_answer_text(tok.decode(generated[0, ids["input_ids"].shape[1]:], skip_special_tokens=True),
                                   "instruct")
        assert "###" not in text and text.strip() == expected, (text, expected)


@pytest.mark.slow
def test_an_instruct_run_that_ends_its_answers_ends_them_in_llama_cpp(home, tmp_path):
    """Issue 24 item 1, in llama.cpp itself: a demo-preset run (instruct template) taught a short answer ends it
    with '\n### End' and EOS. Exported to GGUF, llama.cpp stops there on its own (finish_reason 'stop', well
    before max_tokens) and prints the answer `chat` gives, with no marker text. Was: '### End' as the answer.
    Slow: it trains a run (~15 s); skipped where llama-cpp-python is not installed."""
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (optional: CMAKE_ARGS='-DGGML_NATIVE=OFF "
        "-DGGML_CUDA=OFF' pip install llama-cpp-python builds it from source in ~30 min)")
    from humanlike_tui.engine.inference.generator import Generator
    from humanlike_tui.engine.storage import gguf_export as G
    from humanlike_tui.engine.training.run import run_training

    prompts = ["hi", "How was your weekend?", "Tell me about your day.", "Do you like pizza?", "What's up?"]
    rows = tmp_path / "short.jsonl"
    rows.write_text("".join(json.dumps({"prompt": p, "chosen": "Pretty good, you?"}) + "\n"
                            for p in prompts * 8), encoding="utf-8")
    cfg = tiny_config().replace(**{"data.source": str(rows), "train.max_steps": 40, "train.eval_every": 0})
    assert run_training(cfg, run_name="short").status == "finished"
    gen = Generator.open("short")
    settings = gen.settings(max_new_tokens=48, temperature=0)
    for quant in ("f16", "q8_0"):
        path = G.export_gguf("short", tmp_path / quant, quant=quant)
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False, seed=0)
        for prompt in ["How was your weekend?", "Tell me a story."]:  # one trained prompt, one new
            expected = gen.answer("adapter", prompt, settings=settings)
            assert expected.finish == "end" and expected.text == "Pretty good, you?"
            out = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=48, temperature=0.0)
            choice = out["choices"][0]
            assert choice["finish_reason"] == "stop" and out["usage"]["completion_tokens"] < 48, out
            assert "#" not in choice["message"]["content"], out
            assert choice["message"]["content"].strip() == expected.text, (quant, out)
    gen.close()


def _go_template(text: str, data: dict) -> str:
    """The subset of Go's text/template that our Modelfile TEMPLATE uses (if/else if/else on .System and
    `eq .Role "..."`, range .Messages, fields, `{{-` trimming), rendered as Ollama renders it."""
    import re

    parts = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", text)
    tokens = []
    for part in parts:
        if part.startswith("{{"):
            if part.startswith("{{-") and tokens and tokens[-1][0] == "text":
                tokens[-1] = ("text", tokens[-1][1].rstrip())
            tokens.append(("action", part.strip("{}- ")))
        elif part:
            tokens.append(("text", part))

    def parse(i, stop=("end",)):
        nodes = []
        while i < len(tokens):
            kind, value = tokens[i]
            if kind == "text" or not (value.startswith(("if ", "range ", "else", "end"))):
                nodes.append((kind, value))
                i += 1
            elif value.startswith(("else", "end")):
                return nodes, i
            elif value.startswith("if "):
                branches, i = [], i
                cond = value[3:]
                while True:
                    body, i = parse(i + 1)
                    branches.append((cond, body))
                    kind, value = tokens[i]
                    if value == "end":
                        break
                    cond = value[8:] if value.startswith("else if ") else "true"
                nodes.append(("if", branches))
                i += 1
            else:
                body, i = parse(i + 1)
                nodes.append(("range", (value[6:], body)))
                i += 1
        return nodes, i

    def value_of(expr, scope):
        if expr == "true":
            return True
        if expr.startswith("eq "):
            field, literal = expr[3:].split(" ", 1)
            return value_of(field, scope) == literal.strip('"')
        return scope.get(expr.lstrip("."), "")

    def run(nodes, scope):
        out = ""
        for kind, value in nodes:
            if kind == "text":
                out += value
            elif kind == "action":
                out += str(value_of(value, scope))
            elif kind == "if":
                for cond, body in value:
                    if value_of(cond, scope):
                        out += run(body, scope)
                        break
            else:
                for item in value_of(value[0], scope):
                    out += run(value[1], {**scope, **item})
        return out

    return run(parse(0)[0], data)


def test_modelfile_keeps_system_messages_and_matches_the_trained_format(phi_merged, llama_run):
    """The Modelfile's TEMPLATE, rendered as Ollama renders it, writes what the export's chat template
    writes: a system message replaces the head (not dropped, no fixed head), and without one the
    conversation is exactly the chat path's."""
    from humanlike_tui.engine.inference.streaming import format_conversation
    from humanlike_tui.engine.storage import gguf_export as G
    from humanlike_tui.engine.storage.chat_template import render_chat
    from humanlike_tui.records import GenSettings

    conversation = [("user", "hi"), ("assistant", "hey you"), ("user", "and you?")]
    messages = [{"role": r, "content": c} for r, c in conversation]
    for template, tok in (("instruct", phi_merged[2]), ("chat", llama_run[3])):
        pieces = G.template_pieces(template, tok)
        text = G.modelfile("m.gguf", pieces, G.stop_strings(template, tok), GenSettings())
        go = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
        ollama = lambda system, turns: _go_template(go, {"System": system, "Messages": [  # noqa: E731
            {"Role": r, "Content": c} for r, c in turns]})
        assert ollama("", conversation) == format_conversation("and you?", [("hi", "hey you")], template, tok)
        with_system = render_chat(template, tok, [{"role": "system", "content": "Be brief."}] + messages[:1])
        assert "Be brief." in with_system and ollama("Be brief.", conversation[:1]) == with_system, template


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (what ByteLevel pre-tokenizers show)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = dict(zip(keep, map(chr, keep))), 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "llama-bpe"])
def test_gguf_pretokenizer_regex_splits_as_the_tokenizer(pre):
    """tokenizer.ggml.pretokenizer (the key Ollama's engine reads) splits text as the HF tokenizer does."""
    import regex
    from tokenizers import pre_tokenizers as P
    from tokenizers import Regex

    from humanlike_tui.engine.storage import gguf_export as G

    tokenizer_pre = {
        "gpt-2": P.ByteLevel(add_prefix_space=False),
        "smollm": P.Sequence([P.Digits(individual_digits=True), P.ByteLevel(add_prefix_space=False)]),
        "llama-bpe": P.Sequence([P.Split(Regex(G.PRETOKENIZER_REGEX["llama-bpe"]), behavior="isolated"),
                                 P.ByteLevel(add_prefix_space=False, use_regex=False)]),
    }[pre]
    byte_char = _bytes_to_unicode()
    for text in ["How was your weekend? 😀 I don't know", "I   don't  know\n\n 123456 ok", "a  12 b1c 2023!\n\tx",
                 "It's 3.14, they'll SAY 'no'"]:
        want = [piece for piece, _ in tokenizer_pre.pre_tokenize_str(text)]
        got = ["".join(byte_char[b] for b in piece.encode()) for piece in regex.findall(G.PRETOKENIZER_REGEX[pre], text)]
        assert got == want, (pre, text)
