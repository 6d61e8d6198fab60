"""Base model loading (quantized or not), LoRA attach, adapter load/save, and the builtin models.

The builtin models let everything run offline: `builtin:tiny-phi` (a small Phi with random weights
and a byte-level BPE tokenizer trained on the builtin sample) and `builtin:phi-2-random` (phi-2's
exact shapes, for benchmarks). Both are made deterministically on first use and cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from humanlike_tui.config import Config
from humanlike_tui.errors import ModelError
from humanlike_tui.paths import cache_dir

BUILTIN_VERSION = "v1"  # bump when the recipe below changes, so old caches are not reused
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
TINY_VOCAB = 4096
DEFAULT_TARGETS = {
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen3": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "phi3": ("qkv_proj", "o_proj"),
    "gpt2": ("c_attn", "c_proj"),
    "gpt_neox": ("query_key_value", "dense"),
}
# A tiny chat template, so the `chat` data template can be exercised offline on the builtin model.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def quiet_libraries() -> None:
    """Progress bars and notices from transformers/bitsandbytes would tear our own progress display."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*kernels.*")


def tiny_phi_config(vocab_size: int = TINY_VOCAB):
    from transformers import PhiConfig

    return PhiConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                     partial_rotary_factor=0.5, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0,
                     tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=1,
                     initializer_range=0.1)  # wider than the usual 0.02: a final LayerNorm in front of a
    # random 0.02 head caps every logit near 2.6, and LoRA could not show a falling loss on it


def phi2_config():
    """microsoft/phi-2's config.json, so the random model has its exact shapes."""
    from transformers import PhiConfig

    return PhiConfig(vocab_size=51200, hidden_size=2560, intermediate_size=10240, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, partial_rotary_factor=0.4,
                     rope_theta=10000.0, max_position_embeddings=2048, layer_norm_eps=1e-5, resid_pdrop=0.1,
                     embd_pdrop=0.0, attention_dropout=0.0, hidden_act="gelu_new", tie_word_embeddings=False,
                     bos_token_id=0, eos_token_id=0, pad_token_id=1)


# --- builtin models -------------------------------------------------------------------------------

def _sample_corpus() -> list[str]:
    from importlib import resources

    text = resources.files("humanlike_tui.data").joinpath("sample.jsonl").read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            out += [row["prompt"], row["chosen"], row["rejected"]]
    # The template words, so formatting tokens are single tokens.
    out += ["### Instruct:\n", "\n\n### Output:\n", "\n### End"] * 20
    return out


def build_tokenizer(corpus: list[str]):
    """A byte-level BPE trained on `corpus`: every string (emoji included) encodes, nothing is <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=[EOS_TOKEN, PAD_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
                                   bos_token=EOS_TOKEN, unk_token=None)
    fast.chat_template = TINY_CHAT_TEMPLATE
    fast.model_max_length = 1024
    return fast


def _builtin_dir(name: str) -> Path:
    """Keyed by recipe version and the tokenizer corpus, so a changed sample never reuses a stale cache."""
    from importlib import resources

    corpus = resources.files("humanlike_tui.data").joinpath("sample.jsonl").read_bytes()
    tag = hashlib.sha256(corpus).hexdigest()[:8]
    return cache_dir() / "models" / f"{name.removeprefix('builtin:')}-{BUILTIN_VERSION}-{tag}"


def ensure_builtin(name: str, log=lambda msg: None) -> Path:
    """Make the builtin model on first use (deterministically: fixed corpus, fixed seed) and cache it."""
    target = _builtin_dir(name)
    if (target / "COMPLETE").exists():
        return target
    import torch
    from transformers import PhiForCausalLM

    quiet_libraries()
    log(f"making {name} in {target} (first use only)")
    tokenizer = build_tokenizer(_sample_corpus())
    cfg = tiny_phi_config() if name == "builtin:tiny-phi" else phi2_config()
    cfg.eos_token_id = cfg.bos_token_id = tokenizer.eos_token_id
    cfg.pad_token_id = tokenizer.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        torch.manual_seed(0)
        device = "cuda" if torch.cuda.is_available() and name != "builtin:tiny-phi" else "cpu"
        with torch.device(device):
            model = PhiForCausalLM(cfg)
        if name != "builtin:tiny-phi":
            model = model.to(torch.float16)  # like the hub's phi-2 checkpoint (5.6 GB on disk)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "COMPLETE").write_text(BUILTIN_VERSION)
        _install_builtin(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _install_builtin(tmp: Path, target: Path) -> None:
    """Move a finished build into place. Two processes may build at once (the TUI and a CLI run):
    the builds are identical, so the first one in wins and later ones are discarded; a complete
    copy is never deleted, only an incomplete leftover is moved aside."""
    if (target / "COMPLETE").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if target.exists():
        stale = target.with_name(f".stale-{target.name}-{os.getpid()}")
        with contextlib.suppress(OSError):
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not (target / "COMPLETE").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first


# --- resolving and loading ------------------------------------------------------------------------

@dataclass(frozen=True)
class Precision:
    device: str  # cuda | cpu
    compute: str  # bf16 | fp16 | fp32
    needs_scaler: bool  # fp16 needs loss scaling
    autocast: bool = False  # forward passes under torch.autocast (CUDA with bf16/fp16 unless turned off)

    @property
    def torch_dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.compute]

    def autocast_context(self):
        """torch.autocast for the forward passes, or a no-op (CPU, fp32, or quant.autocast = false)."""
        import contextlib

        import torch

        return torch.autocast("cuda", dtype=self.torch_dtype) if self.autocast else contextlib.nullcontext()


def resolve_precision(cfg: Config, device: str | None = None) -> Precision:
    """`auto` = bf16 where the GPU supports it, fp16 on older GPUs (Turing), fp32 on the CPU."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    want = cfg.quant.compute_dtype
    if device == "cpu":
        compute = "fp32" if want in ("auto", "fp16") else want  # fp16 matmuls on CPU are slow and lossy
    elif want == "auto":
        compute = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        compute = want
    from humanlike_tui.engine.memory import uses_autocast

    return Precision(device, compute, device == "cuda" and compute == "fp16",
                     uses_autocast(device, compute, cfg.quant.autocast))


def resolve_model_path(cfg: Config, log=lambda msg: None) -> str:
    """A local folder, a builtin (made on first use), or the hub id unchanged."""
    name = cfg.model.name.strip()
    if name.startswith("builtin:"):
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
    from humanlike_tui.engine.hub import fail_fast_if_unreachable

    fail_fast_if_unreachable(name, "model", lambda why: hub_error(name, OSError(why)))
    return name


def refuse_pickle_only(path: Path) -> None:
    """Weights load only from safetensors: a pickle can run code when loaded."""
    if any(path.glob("*.safetensors")):
        return
    pickles = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    if pickles:
        raise ModelError(f"{path}: holds only pickle weights ({', '.join(pickles[:3])}); they can run code when "
                         "loaded, so they are refused. Convert them to safetensors (model.save_pretrained("
                         "dir, safe_serialization=True) in a trusted Python) and point model.name there.")
    raise ModelError(f"{path}: no *.safetensors weights found")


def hub_error(name: str, exc: BaseException) -> ModelError:
    return ModelError(
        f"model.name: could not load {name!r} from the Hugging Face Hub ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0][:200] if str(exc) else 'no details'}). Check the name and your internet "
        "connection (a gated model also needs `huggingface-cli login`), or work offline with a local folder "
        "(model.name = '/path/to/model') or the builtin models: builtin:tiny-phi (preset demo) or "
        "builtin:phi-2-random.")


def load_tokenizer(cfg: Config, path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=cfg.model.revision or None,
                                            trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise hub_error(path, exc) from None
    if tok.eos_token is None:
        raise ModelError(f"{path}: the tokenizer has no EOS token, so answers could not learn to stop")
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        # The original recipe's bug: pad = EOS, then EOS got masked out with the padding and the
        # model never learned to stop. We mask padding by position, never by token id, and give the
        # tokenizer a distinct pad token where one exists in the vocabulary (else reuse EOS safely).
        tok.pad_token = tok.unk_token if tok.unk_token and tok.unk_token != tok.eos_token else tok.eos_token
    tok.padding_side = "right"
    return tok


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

    quiet_libraries()
    path = resolve_model_path(cfg, log)
    tokenizer = load_tokenizer(cfg, path)
    kwargs: dict[str, Any] = dict(
        dtype=precision.torch_dtype, attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code, use_safetensors=True,
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


def target_modules(cfg: Config, model) -> list[str]:
    if cfg.lora.target_modules:
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = [t for t in cfg.lora.target_modules if t not in names]
        if missing:
            raise ModelError(f"lora.target_modules: {', '.join(missing)} not found in {cfg.model.name}; "
                             f"linear layers there include: {', '.join(sorted(_linear_names(model))[:12])}")
        return list(cfg.lora.target_modules)
    arch = getattr(model.config, "model_type", "")
    if arch in DEFAULT_TARGETS:
        return list(DEFAULT_TARGETS[arch])
    return "all-linear"  # type: ignore[return-value]  # peft picks every linear layer but the head


def _linear_names(model) -> set[str]:
    import torch

    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) or "Linear" in type(m).__name__}


def attach_lora(cfg: Config, model, gradient_checkpointing: bool | None = None):
    """Wrap the frozen base in a peft LoRA model. LoRA weights stay fp32 (peft's autocast_adapter_dtype)."""
    from peft import LoraConfig, get_peft_model

    ckpt = cfg.model.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    if ckpt:
        # Non-reentrant checkpointing needs no input-grad hack and works with frozen embeddings.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=target_modules(cfg, model), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total), counting 4-bit packed weights at their real element count."""
    trainable, total = model.get_nb_trainable_parameters()
    return int(trainable), int(total)


def load_adapter(model, adapter_dir: str | os.PathLike, base_name: str):
    """Put a saved adapter on a loaded base model (safetensors only, checked against its base)."""
    from peft import PeftModel

    adir = Path(adapter_dir)
    check_adapter_dir(adir, base_name)
    return PeftModel.from_pretrained(model, str(adir), is_trainable=False)


def check_adapter_dir(adir: Path, base_name: str | None = None) -> dict:
    if not adir.is_dir():
        raise ModelError(f"{adir}: adapter folder not found")
    cfg_file = adir / "adapter_config.json"
    weights = adir / "adapter_model.safetensors"
    if not cfg_file.exists() or not weights.exists():
        pickles = list(adir.glob("adapter_model.bin"))
        if pickles:
            raise ModelError(f"{adir}: adapter weights are a pickle (adapter_model.bin), which can run code when "
                             "loaded; they are refused. Re-save the adapter with safetensors.")
        missing = [p.name for p in (cfg_file, weights) if not p.exists()]
        raise ModelError(f"{adir}: incomplete adapter, missing {', '.join(missing)}; resume or retrain the run")
    try:
        acfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{adir}/adapter_config.json: unreadable ({exc})") from None
    made_for = (adir / "base_model.txt").read_text(encoding="utf-8").strip() if (adir / "base_model.txt").exists() else None
    if base_name and made_for and made_for != base_name:
        raise ModelError(f"{adir}: this adapter was trained on {made_for!r}, not {base_name!r}; "
                         f"set model.name = {made_for!r} to use it")
    return acfg


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
