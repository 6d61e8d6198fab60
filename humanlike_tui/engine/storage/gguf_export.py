"""Export to GGUF (llama.cpp, Ollama, LM Studio): the merged model as ONE .gguf file with its tokenizer,
its chat template (the model's own, or our instruct template written as one) and stop strings, plus an
Ollama `Modelfile` beside it.

llama.cpp's convert_hf_to_gguf.py is not on PyPI, so this is our own small converter on top of the
`gguf` package (GGUFWriter, and gguf.quants for the block quantizations). It covers the two families
this workbench trains:

- `phi` (phi-2 and builtin:tiny-phi) -> GGUF architecture `phi2`: separate q/k/v with biases, partial
  rotary (rope.dimension_count = rotary dims per head), LayerNorm with bias, lm_head with bias.
- `llama` (Llama 2/3, SmolLM2, TinyLlama, ...; also `mistral` without sliding window) -> `llama`:
  q and k rows permuted the way llama.cpp's converter does (its rotary pairs are interleaved, HF's are
  split halves), RMSNorm, SwiGLU, grouped KV heads, tied embeddings written once.

Tensor types: 1-D tensors (norms, biases) stay float32, as llama.cpp writes them. With a block
quantization (q8_0, q5_x, q4_x), a 2-D tensor whose rows do not split into 32-value blocks is written
as f16; with q5_x/q4_x the token embedding and the output layer are written as q8_0 (llama.cpp keeps
these two at higher precision too; the K-quants it would use have no quantizer in the gguf package).

The tokenizer is written as llama.cpp's byte-level BPE ("gpt2") vocabulary: tokens by id (padded to
the model's vocabulary size with unused [PADn] tokens), token types (special -> control, added ->
user-defined), merges, bos/eos/pad/unk ids, add_bos = false (training and chat add no BOS), the chat
template. These are the keys transformers' GGUF tokenizer reader and llama.cpp read. Sentencepiece
vocabularies (Llama 2, Mistral) are not converted yet: the export says so instead of writing a file
that tokenizes wrongly.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import InputError, ModelError, StoreError
from humanlike_tui.engine.storage import files
from humanlike_tui.engine.storage.chat_template import INSTRUCT_JINJA, export_chat_template  # noqa: F401 - INSTRUCT_JINJA re-exported
from humanlike_tui.engine.storage.modelfile import (TemplatePieces, modelfile, ollama_template,  # noqa: F401 - re-exported
                                                    template_pieces)

GGUF_QUANTS = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
DEFAULT_QUANT = "q8_0"
ARCHES = {"phi": "phi2", "llama": "llama", "mistral": "llama"}
BLOCK = 32

def end_token_ids(template: str, tokenizer) -> list[int]:
    """Every token id at which an answer ends, EOS first, for the GGUF's end-of-generation ids.

    llama.cpp (and Ollama's own engine) stop only on such tokens and read no stop strings. The model
    ends an answer the way training encoded it (data.encode_answer): for a chat template with its
    turn-end token, which load_tokenizer made EOS; for the instruct template with the text marker
    '\\n### End' (several tokens) and then EOS, or by starting a turn of its own ('### Instruct:').
    A reader stopping at the marker's last token would already have printed '###', so the id taken
    for each marker is its first token that is not whitespace, the one that starts the marker text."""
    from humanlike_tui.engine.inference.streaming import markers_for

    ids: list[int] = []

    def add(i) -> None:
        if i is not None and int(i) not in ids:
            ids.append(int(i))

    add(tokenizer.eos_token_id)
    for marker in markers_for(template):
        add(marker_start_id(tokenizer, marker))
    return ids


def marker_start_id(tokenizer, marker: str) -> int | None:
    """The first non-whitespace token of `marker` as training tokenizes it after an answer ('x\\n' + marker)."""
    before = tokenizer("x\n", add_special_tokens=False)["input_ids"]
    ids = tokenizer("x\n" + marker, add_special_tokens=False)["input_ids"]
    if ids[:len(before)] != before:
        before = before[:-1]  # the newline merged into the marker's first token
    for i in ids[len(before):]:
        if tokenizer.decode([i]).strip():
            return int(i)
    return None


def stop_strings(template: str, tokenizer) -> list[str]:
    """What ends an answer: the EOS token's text, and with the instruct template its end marker and
    the markers of a turn the model might start by itself (as the chat path cuts them)."""
    from humanlike_tui.engine.inference.streaming import markers_for

    stops = list(markers_for(template))
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    return stops


# ---------------------------------------------------------------------------------------------
# tensors


def _phi_names(n_layers: int) -> dict[str, str]:
    names = {"model.embed_tokens.weight": "token_embd.weight",
             "model.final_layernorm.weight": "output_norm.weight", "model.final_layernorm.bias": "output_norm.bias",
             "lm_head.weight": "output.weight", "lm_head.bias": "output.bias"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.dense": "attn_output", "mlp.fc1": "ffn_up",
                 "mlp.fc2": "ffn_down"}
    for i in range(n_layers):
        for hf, gg in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"model.layers.{i}.{hf}.{kind}"] = f"blk.{i}.{gg}.{kind}"
    return names


def _llama_names(n_layers: int) -> dict[str, str]:
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    for i in range(n_layers):
        for hf, gg in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"model.layers.{i}.{hf}.{kind}"] = f"blk.{i}.{gg}.{kind}"
    return names


def llama_permute(w, n_head: int, n_head_kv: int | None = None):
    """llama.cpp's q/k row order: HF rotates the two halves of each head, GGML interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensor_map(model_type: str, n_layers: int) -> dict[str, str]:
    return (_phi_names if ARCHES[model_type] == "phi2" else _llama_names)(n_layers)


def _qtype(name: str):
    from gguf import GGMLQuantizationType as Q

    return {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q5_1": Q.Q5_1, "q5_0": Q.Q5_0,
            "q4_1": Q.Q4_1, "q4_0": Q.Q4_0}[name]


def _file_type(quant: str) -> int:
    from gguf import LlamaFileType as F

    return {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "bf16": getattr(F, "MOSTLY_BF16", 32), "q8_0": F.MOSTLY_Q8_0,
            "q5_1": F.MOSTLY_Q5_1, "q5_0": F.MOSTLY_Q5_0, "q4_1": F.MOSTLY_Q4_1, "q4_0": F.MOSTLY_Q4_0}[quant]


def tensor_quant(gguf_name: str, shape: tuple[int, ...], quant: str) -> str:
    """The type one tensor is written in (see the module docstring)."""
    if len(shape) < 2 or quant == "f32":
        return "f32"
    if quant in ("f16", "bf16"):
        return quant
    if shape[-1] % BLOCK:
        return "f16"
    if quant != "q8_0" and gguf_name in ("token_embd.weight", "output.weight"):
        return "q8_0"
    return quant


def _add_tensor(writer, name: str, data, quant: str) -> None:
    import numpy as np
    from gguf import quants

    if quant == "f32":
        writer.add_tensor(name, data.astype(np.float32))
    elif quant == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    else:
        writer.add_tensor(name, quants.quantize(data.astype(np.float32), _qtype(quant)), raw_dtype=_qtype(quant))


# ---------------------------------------------------------------------------------------------
# metadata


def _cfg(config, *names, default=None):
    for n in names:
        value = getattr(config, n, None)
        if value is not None:
            return value
    rope = getattr(config, "rope_parameters", None) or {}
    for n in names:
        if n in rope:
            return rope[n]
    return default


def _add_model_metadata(writer, arch: str, config) -> None:
    hidden = config.hidden_size
    n_head = config.num_attention_heads
    n_kv = _cfg(config, "num_key_value_heads", default=n_head)
    head_dim = _cfg(config, "head_dim", default=hidden // n_head)
    writer.add_context_length(int(_cfg(config, "max_position_embeddings", "n_positions", default=2048)))
    writer.add_embedding_length(hidden)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(float(_cfg(config, "rope_theta", default=10000.0)))
    if arch == "phi2":
        rot = float(_cfg(config, "partial_rotary_factor", default=1.0))
        writer.add_rope_dimension_count(int(rot * head_dim))
        writer.add_layer_norm_eps(float(_cfg(config, "layer_norm_eps", default=1e-5)))
    else:
        writer.add_rope_dimension_count(head_dim)
        writer.add_layer_norm_rms_eps(float(_cfg(config, "rms_norm_eps", default=1e-6)))
        if head_dim != hidden // n_head:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        if _cfg(config, "rope_type", default="default") not in ("default", None):
            raise ModelError(f"rope scaling {_cfg(config, 'rope_type')!r} is not converted to GGUF yet")
    writer.add_vocab_size(config.vocab_size)


# The same splits as regular expressions, for the key Ollama's own engine reads
# (tokenizer.ggml.pretokenizer: model/models/llama/model.go; without it Ollama assumes Llama 3's split,
# which cuts digits and contractions differently). llama.cpp reads the name in tokenizer.ggml.pre.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
PRETOKENIZER_REGEX = {
    "gpt-2": _GPT2_SPLIT,
    # Digits(individual_digits) first, then GPT-2's split of the text between the digits, as one expression
    "smollm": r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?=\p{N})|\s+(?!\S)|\s+",
    "llama-bpe": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+"),
}


def _pre_tokenizer_name(backend: dict) -> str:
    """llama.cpp's name for how text is split before BPE, from tokenizer.json's pre_tokenizer."""
    pre = backend.get("pre_tokenizer") or {}
    kinds = [p.get("type") for p in pre.get("pretokenizers", [])] if pre.get("type") == "Sequence" else [pre.get("type")]
    if kinds == ["ByteLevel"] and pre.get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"]:
        return "smollm"
    if kinds and kinds[0] == "Split":
        pattern = str((pre["pretokenizers"][0].get("pattern") or {}).get("Regex", ""))
        if "\\p{N}{1,3}" in pattern:
            return "llama-bpe"
    raise ModelError(f"this tokenizer splits text in a way the GGUF export does not know ({kinds}); only "
                     "GPT-2-style, SmolLM and Llama 3 byte-level BPE tokenizers are converted")


def _add_tokenizer(writer, tok, vocab_size: int, chat_template: str, end_ids: list[int]) -> None:
    from gguf import TokenType

    backend = json.loads(tok.backend_tokenizer.to_str())
    model = backend.get("model") or {}
    if model.get("type") != "BPE" or not _is_byte_level(backend):
        raise ModelError("only byte-level BPE tokenizers (GPT-2, phi, Llama 3, SmolLM, Qwen style) are converted to "
                         f"GGUF so far; this one is {model.get('type')!r}")
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    added = {t["id"]: t for t in backend.get("added_tokens") or []}
    by_id = {i: t for t, i in vocab.items()}
    for i, t in added.items():
        by_id[i] = t["content"]
    n = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(n):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(TokenType.CONTROL if added[i].get("special") else TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    writer.add_tokenizer_model("gpt2")
    pre = _pre_tokenizer_name(backend)
    writer.add_tokenizer_pre(pre)
    writer.add_string("tokenizer.ggml.pretokenizer", PRETOKENIZER_REGEX[pre])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for setter, token_id in (("add_bos_token_id", tok.bos_token_id),
                             ("add_pad_token_id", tok.pad_token_id), ("add_unk_token_id", tok.unk_token_id)):
        if token_id is not None:
            getattr(writer, setter)(int(token_id))
    _add_end_tokens(writer, end_ids)
    writer.add_add_bos_token(False)  # as in training and chat: the prompt gets no extra BOS
    writer.add_add_eos_token(False)
    writer.add_chat_template(chat_template)


def _add_end_tokens(writer, end_ids: list[int]) -> None:
    """The ids an answer ends on, where the readers look: llama.cpp's end-of-generation set is built from
    eos, eot and eom (llama-vocab.cpp: special_eog_ids); Ollama's engine reads eos plus the array
    tokenizer.ggml.eos_token_ids."""
    if len(end_ids) > 3:
        raise ModelError(f"an answer ends on {len(end_ids)} different tokens; llama.cpp reads at most three "
                         "(eos, eot, eom)")
    if not end_ids:
        return
    writer.add_eos_token_id(end_ids[0])
    writer.add_eot_token_id(end_ids[1] if len(end_ids) > 1 else end_ids[0])
    if len(end_ids) > 2:
        writer.add_eom_token_id(end_ids[2])
    writer.add_array("tokenizer.ggml.eos_token_ids", [int(i) for i in end_ids])


def _is_byte_level(backend: dict) -> bool:
    text = json.dumps(backend.get("pre_tokenizer")) + json.dumps(backend.get("decoder"))
    return "ByteLevel" in text


# ---------------------------------------------------------------------------------------------
# writing


def write_gguf(model, tok, path: Path, *, quant: str = DEFAULT_QUANT, template: str = "instruct", name: str = "",
               extra: dict[str, str] | None = None, log: Callable[[str], None] = lambda m: None,
               system: str = "") -> dict[str, Any]:
    """Write `model` (a plain float model, phi or llama family) and `tok` to one GGUF file at `path`.
    `template` is the resolved data template (instruct | chat); `system` the run's persona, the chat
    template's default system message. Returns a summary (tensor types, bytes)."""
    import gguf
    import numpy as np
    import torch

    if quant not in GGUF_QUANTS:
        raise InputError(f"quant must be one of {', '.join(GGUF_QUANTS)}, got {quant!r}")
    config = model.config
    model_type = getattr(config, "model_type", "")
    if model_type not in ARCHES:
        raise ModelError(f"GGUF export supports the phi and llama families; this model is {model_type!r}")
    if model_type == "mistral" and getattr(config, "sliding_window", None):
        raise ModelError("Mistral with a sliding window is not converted to GGUF yet")
    arch = ARCHES[model_type]
    chat_template = export_chat_template(template, tok, system)
    if not chat_template:
        raise ModelError("the model has no chat template; export with data.template = 'instruct'")
    names = tensor_map(model_type, config.num_hidden_layers)
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    n_head = config.num_attention_heads
    n_kv = _cfg(config, "num_key_value_heads", default=n_head)

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name or getattr(config, "_name_or_path", "") or arch)
    writer.add_file_type(_file_type(quant))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_model_metadata(writer, arch, config)
    _add_tokenizer(writer, tok, config.vocab_size, chat_template, end_token_ids(template, tok))
    for key, value in (extra or {}).items():
        writer.add_string(key, value)

    types: dict[str, int] = {}
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when there is no output.weight
        if "rotary_emb" in hf_name:
            continue
        if hf_name not in names:
            raise ModelError(f"GGUF export: no GGUF name for tensor {hf_name} of this {model_type} model")
        gg = names[hf_name]
        data = tensor.detach().to("cpu", torch.float32).numpy()
        if arch == "llama" and ".attn_q." in gg:
            data = llama_permute(data, n_head, n_head)
        elif arch == "llama" and ".attn_k." in gg:
            data = llama_permute(data, n_head, n_kv)
        kind = tensor_quant(gg, data.shape, quant)
        types[kind] = types.get(kind, 0) + 1
        _add_tensor(writer, gg, np.ascontiguousarray(data), kind)
    log(f"writing {path.name} ({quant}; tensors: {', '.join(f'{n} {k}' for k, n in sorted(types.items()))})")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"arch": arch, "quant": quant, "tensor_types": types, "bytes": path.stat().st_size}


# Bytes per weight of each GGUF type, at least (blocks add a scale): the free-space check before the model loads.
QUANT_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "q8_0": 1, "q5_1": 0.625, "q5_0": 0.625, "q4_1": 0.5, "q4_0": 0.5}


def gguf_file_name(run_id: str, quant: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', run_id)}-{quant}.gguf"


def export_gguf(run: S.Run | str, out_dir: str | Path, *, quant: str = DEFAULT_QUANT, merge_into: str = "trained",
                overwrite: bool = False, log: Callable[[str], None] = lambda message: None) -> Path:
    """The run's adapter merged into its base (see storage/merge.py), as one .gguf file in the new
    folder `out_dir`, with an Ollama Modelfile beside it. Returns the .gguf path. The folder appears
    complete or not at all."""
    from humanlike_tui.engine import data as D
    from humanlike_tui.engine import models as M
    from humanlike_tui.engine.storage.export import (EXPORT_MARKER, check_export_target, check_room, export_size,
                                                     write_failure)
    from humanlike_tui.engine.storage.merge import MERGE_INTO, merged_model
    from humanlike_tui.records import GenSettings

    if quant not in GGUF_QUANTS:
        raise InputError(f"--quant must be one of {', '.join(GGUF_QUANTS)}, got {quant!r}")
    if merge_into not in MERGE_INTO:
        raise InputError(f"merge_into must be one of {', '.join(MERGE_INTO)}, got {merge_into!r}")
    run = S.get_run(run) if isinstance(run, str) else run
    if not S.is_complete(run.adapter_dir):
        raise StoreError(f"run {run.run_id} has no finished adapter to export (it is {run.status()}); resume it "
                         f"(humanlike-tui train --resume {run.run_id}) or export a finished run")
    out = Path(out_dir).expanduser().resolve()
    check_export_target(out, overwrite)
    cfg = run.config()
    need = export_size(M.resolve_model_path(cfg, log), QUANT_BYTES.get(quant, 0.5))
    check_room(out, need, f"the GGUF file ({quant})")  # before the model loads
    model, tok = merged_model(cfg, run.adapter_dir, merge_into, log)
    template = D.resolve_template(cfg.data.template, tok)
    pieces = template_pieces(template, tok)
    stops = stop_strings(template, tok)
    name = gguf_file_name(run.run_id, quant)
    try:
        with files.atomic_dir(out, manifest=True) as tmp:
            summary = write_gguf(model, tok, tmp / name, quant=quant, template=template, name=run.run_id,
                                 extra={"humanlike.base_model": cfg.model.name, "humanlike.merge_into": merge_into,
                                        "humanlike.stop": json.dumps(stops, ensure_ascii=False)}, log=log,
                                 system=cfg.data.system_prompt)
            (tmp / "Modelfile").write_text(modelfile(name, pieces, stops, GenSettings.from_config(cfg),
                                                     cfg.data.system_prompt), encoding="utf-8")
            S.write_json(tmp / EXPORT_MARKER, {
                "run": run.run_id, "base_model": cfg.model.name, "format": "gguf", "file": name, "quant": quant,
                "merge_into": merge_into, "template": template, "stop": stops, "exported": time.time(), **summary})
    except OSError as exc:
        raise write_failure(out, exc) from None
    return out / name
