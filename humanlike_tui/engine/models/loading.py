"""Base model loading (quantized or not) from a builtin, a local folder or the hub; safetensors only."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any
from humanlike_tui.config import Config, remote_code_consent
from humanlike_tui.errors import ModelError
from humanlike_tui.engine.models.builtins import ensure_builtin, quiet_libraries
from humanlike_tui.engine.models.precision import Precision


def resolve_model_path(cfg: Config, log=lambda msg: None) -> str:
    """A local folder, a builtin (made on first use), or the hub id unchanged."""
    name = cfg.model.name.strip()
    if name.startswith("builtin:"):  # builtin:smollm2-135m is fetched and converted, the others are made
        return str(ensure_builtin(name, log))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"model.name: {path} is a folder without config.json; point it at a saved "
                             "transformers model, or use a hub id or builtin:tiny-phi")
        refuse_pickle_only(path)
        return str(path)
    if name.startswith(("/", ".", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelError(f"model.name: local folder {name} does not exist; check the path")
    from humanlike_tui.engine.hub import fail_fast_if_unreachable, offline_mode

    fail_fast_if_unreachable(name, "model", lambda why: hub_error(name, OSError(why)))
    if not offline_mode():
        fetch_with_progress(name, cfg.model.revision or None, log)
    cached = _cached_config_file(name, cfg.model.revision or None)
    if cached is not None:  # the hub's files, as fetched: the same rule as a local folder's
        refuse_index_to_other_files(cached.parent)
    return name


def fetch_with_progress(name: str, revision: str | None, log) -> None:
    """Download (or finish downloading) a hub model before transformers loads it, saying how far it is
    ('downloading microsoft/phi-2: 1.2 of 5.6 GB, 12.3 MB/s, about 6m left') about every 5%. A failure
    here is left to transformers, which reports it in its own words (a gated repo, a wrong name ...)."""
    from humanlike_tui.engine.models.download import DownloadCancelled, download_model
    from humanlike_tui.formatting import size_text

    shown = {"step": -1}

    def report(p) -> None:
        step = int(20 * p.done_bytes / p.total_bytes) if p.total_bytes else 0
        if p.finished or step == shown["step"]:
            return
        shown["step"] = step
        eta = f", about {_eta(p.eta_s)} left" if p.eta_s else ""
        log(f"downloading {name}: {size_text(p.done_bytes)} of {size_text(p.total_bytes)}, "
            f"{size_text(p.bytes_per_s)}/s{eta}")

    try:
        download_model(name, revision, progress=report)
    except DownloadCancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers tries again and says what is wrong
        log(f"could not fetch {name} ahead of loading ({type(exc).__name__}); loading it directly")


def _eta(seconds: float) -> str:
    from humanlike_tui.formatting import duration

    return duration(seconds)


def refuse_pickle_only(path: Path) -> None:
    """Weights load only from safetensors: a pickle can run code when loaded."""
    refuse_index_to_other_files(path)
    if any(path.glob("*.safetensors")):
        return
    pickles = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    if pickles:
        raise ModelError(f"{path}: holds only pickle weights ({', '.join(pickles[:3])}); they can run code when "
                         "loaded, so they are refused. Convert them to safetensors (model.save_pretrained("
                         "dir, safe_serialization=True) in a trusted Python) and point model.name there.")
    raise ModelError(f"{path}: no *.safetensors weights found")


def refuse_index_to_other_files(path: Path) -> None:
    """A sharded model's *.safetensors.index.json names the files transformers then loads, whatever their
    kind: one that points at pytorch_model.bin (or outside the folder) would reach torch.load. Every file an
    index names must be a .safetensors file in the folder itself."""
    for index in sorted(path.glob("*.index.json")):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
            names = sorted({str(v) for v in weight_map.values()})
        except (OSError, ValueError, AttributeError, RecursionError):
            raise ModelError(f"model.name: {index} is unreadable or not a weights index; remove it or copy the model "
                             "again") from None
        bad = [n for n in names if not n.endswith(".safetensors") or Path(n).name != n or n.startswith(".")]
        if bad:
            raise ModelError(f"model.name: {index} names {', '.join(bad[:3])}: weights load only from .safetensors "
                             "files in the model's own folder (a pickle can run code when loaded), so nothing was "
                             "loaded. Convert the weights to safetensors and fix the index")
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise ModelError(f"model.name: {index} names {', '.join(missing[:3])}, which is not in {path}; copy "
                             "the model again")


# What transformers and torch say when a checkpoint's tensors do not have the shapes config.json gives.
SHAPE_MISMATCH_WORDS = ("size mismatch", "ignore_mismatched_sizes", "negative dimension", "shape mismatch")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no details"


def check_model_size(cfg: Config, path: str, precision: Precision, device_index: int = 0) -> None:
    """Refuse (ModelError) a model whose config.json has a shape that is not a positive whole number, or whose
    weights alone are larger than the memory they would be loaded into (the GPU's, or this machine's RAM),
    before transformers allocates any of it. A hub model's config is read from the local cache."""
    from humanlike_tui.engine.models.config_check import check_fits, config_size, machine_ram, read_config_file

    folder = Path(path)
    if folder.is_dir():
        config, source = read_config_file(folder), str(folder / "config.json")
    else:
        cached = _cached_config_file(path, cfg.model.revision or None)
        if cached is None:
            return
        config, source = read_config_file(cached.parent), f"{path}'s config.json"
    size = config_size(config, source)
    if precision.device == "cuda":
        import torch

        memory, where = torch.cuda.get_device_properties(device_index).total_memory, f"GPU {device_index}'s memory"
    else:
        memory, where = machine_ram(), "this machine's memory"
    full = precision.device == "cpu" and cfg.quant.mode == "none"  # made float32 after loading on a CPU
    dtype_bytes = 4 if full else {"bf16": 2, "fp16": 2}.get(precision.compute, 4)
    check_fits(size, source, quant=cfg.quant.mode, dtype_bytes=dtype_bytes, memory_bytes=memory, memory_name=where)


def _cached_config_file(repo_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - an id the hub library refuses: transformers says why
        return None
    return Path(found) if isinstance(found, str) else None


def hub_error(name: str, exc: BaseException) -> ModelError:
    return ModelError(
        f"model.name: could not load {name!r} from the Hugging Face Hub ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0][:200] if str(exc) else 'no details'}). Check the name and your internet "
        "connection (a gated model also needs `huggingface-cli login`), or work offline with a local folder "
        "(model.name = '/path/to/model') or the builtin models: builtin:smollm2-135m (a real chat model, preset "
        "smol-cpu), builtin:tiny-phi (preset demo) or builtin:phi-2-random.")


def load_tokenizer(cfg: Config, path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=cfg.model.revision or None,
                                            trust_remote_code=remote_code_consent(cfg))
    except (OSError, ValueError) as exc:
        if Path(path).is_dir():  # a local folder: a file of it is unreadable or damaged, not the internet
            raise ModelError(f"model.name: cannot read the tokenizer in {path} ({type(exc).__name__}: "
                             f"{_first_line(exc)}); a file of the folder (tokenizer.json, tokenizer_config.json, "
                             "...) is unreadable or damaged: check its permissions, or copy the model again") from None
        raise hub_error(path, exc) from None
    if tok.eos_token is None:
        raise ModelError(f"{path}: the tokenizer has no EOS token, so answers could not learn to stop")
    use_turn_end_as_eos(tok, cfg.data.template)
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        # The original recipe's bug: pad = EOS, then EOS got masked out with the padding and the
        # model never learned to stop. We mask padding by position, never by token id, and give the
        # tokenizer a distinct pad token where one exists in the vocabulary (else reuse EOS safely).
        tok.pad_token = distinct_pad_token(tok)
    tok.padding_side = "right"
    return tok


PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<|endoftext|>")


def distinct_pad_token(tok) -> str:
    """A pad token other than EOS from the vocabulary (Llama 3's reserved pad, <pad>, <|endoftext|> when EOS
    is a turn-end token, or UNK), else EOS itself, which is safe because padding is masked by position."""
    vocab = tok.get_vocab()
    for candidate in PAD_CANDIDATES + ((tok.unk_token,) if tok.unk_token else ()):
        if candidate and candidate != tok.eos_token and candidate in vocab:
            return candidate
    return tok.eos_token


def use_turn_end_as_eos(tok, template: str) -> None:
    """With a chat template, an answer ends where the template closes the assistant's turn ('<|im_end|>',
    '<end_of_turn>', '<|eot_id|>' ...). Make that token EOS, so training appends it to every answer and
    generation stops on it, for every family alike."""
    from humanlike_tui.engine.data.formatting import chat_turn_end, resolve_template

    if resolve_template(template, tok) != "chat":
        return
    end = chat_turn_end(tok)
    if end and end != tok.eos_token:
        tok.eos_token = end


def quantization_config(cfg: Config, precision: Precision):
    from transformers import BitsAndBytesConfig

    mode = cfg.quant.mode
    if mode in ("nf4", "fp4"):
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=mode,
                                  bnb_4bit_compute_dtype=precision.torch_dtype,
                                  bnb_4bit_use_double_quant=cfg.quant.double_quant,
                                  bnb_4bit_quant_storage="uint8")
    if mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_base_model(cfg: Config, precision: Precision, device_index: int = 0, log=lambda msg: None):
    """The frozen base model, quantized per `quant.*`, on the device, with SDPA attention."""
    import torch
    from transformers import AutoModelForCausalLM

    remote_code_consent(cfg)  # refused before any file of the model is read
    quiet_libraries()
    path = resolve_model_path(cfg, log)
    check_model_size(cfg, path, precision, device_index)  # before transformers allocates anything
    tokenizer = load_tokenizer(cfg, path)
    kwargs: dict[str, Any] = dict(
        dtype=precision.torch_dtype, attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=remote_code_consent(cfg), use_safetensors=True,
        revision=cfg.model.revision or None)
    qcfg = quantization_config(cfg, precision)
    if qcfg is not None:
        kwargs["quantization_config"] = qcfg
    if precision.device == "cuda":
        kwargs["device_map"] = {"": device_index}
    log(f"loading {cfg.model.name} ({cfg.quant.mode}, {precision.compute} compute, {precision.device})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as exc:
            if Path(path).exists():
                raise ModelError(f"model.name: cannot load {path}: {exc}") from None
            raise hub_error(path, exc) from None
        except RuntimeError as exc:
            if not any(w in str(exc) for w in SHAPE_MISMATCH_WORDS):
                raise
            raise ModelError(f"model.name: the weights of {path} do not match its config.json "
                             f"({_first_line(exc)}); the folder's config.json is damaged or belongs to another "
                             "model") from None
        except ImportError as exc:
            raise ModelError(f"quant.mode = {cfg.quant.mode!r} needs bitsandbytes working here ({exc}); "
                             "install it (pip install bitsandbytes) or set quant.mode = 'none'") from None
    if precision.device == "cpu" and qcfg is None:
        model = model.to(torch.float32)
    model.config.use_cache = False
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    for p in model.parameters():
        p.requires_grad_(False)
    keep_cpu_4bit_layout(model)
    use_fused_gelu(model)
    return model, tokenizer


def use_fused_gelu(model) -> int:
    """Swap the Python tanh-GELU (phi's `gelu_new`: pow, mul, add, tanh, ... about eight kernels, each
    keeping an intermediate-sized tensor for backward) for torch's one-kernel GELU with the same tanh
    formula. Same function up to rounding; on phi-2 its MLP runs in fp32 under bitsandbytes, so those
    eight passes over 10240 values per token are a large share of a step. Returns how many it swapped."""
    from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(module, name, GELUTanh())
                swapped += 1
    return swapped


def keep_cpu_4bit_layout(model) -> None:
    """bitsandbytes 0.50 repacks 4-bit weights for AVX512-BF16 CPUs the first time a layer runs in eval
    mode; after that, training on the same layer fails ('a view of a leaf Variable ... in-place').
    We switch evaluation and training on one model, so keep the portable layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
