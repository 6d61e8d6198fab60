"""Typed, frozen configuration: dataclasses with help text and limits per field, loaded from and
saved to TOML, and one validator that reports every problem at once with its key path.

Stdlib only (plus tomli_w for writing): the TUI validates as the user types without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from humanlike_tui.errors import ConfigError
from humanlike_tui.fileio import atomic_write_text

BUILTIN_MODELS = ("builtin:tiny-phi", "builtin:phi-2-random", "builtin:smollm2-135m")
BUILTIN_DATA = ("builtin:sample", "builtin:chat-sample")  # data/sample.jsonl, data/chat_sample.jsonl
QUANT_MODES = ("nf4", "fp4", "int8", "none")
COMPUTE_DTYPES = ("auto", "bf16", "fp16", "fp32")
TEMPLATES = ("auto", "instruct", "chat")
# data.format: what a row looks like (auto = told from each row's fields); see engine/data/conversation.py
DATA_FORMATS = ("auto", "prompt_chosen", "messages", "sharegpt", "preference_messages")
LOSS_ON = ("all_assistant", "last")
METHODS = ("sft", "dpo", "sft+dpo", "orpo", "simpo")
REPORTERS = ("tensorboard", "wandb")  # train.report_to: where step/eval figures go besides metrics.jsonl
SCHEDULERS = ("cosine", "linear", "constant")
# Every number has both limits: NaN, infinity and huge values fail here, with the key and the range,
# never later inside torch (a seed past 2**32 overflowed torch.manual_seed once mixed with the step).
MAX_STEPS = 10_000_000
MAX_COUNT = 1_000_000_000
MAX_SEED = 2**32 - 1


def opt(default: Any, help: str, *, choices: tuple = (), min: float | None = None,
        max: float | None = None, min_exclusive: bool = False) -> Any:
    """A config field with its help text and limits (read by the validator and the UI form)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "min_exclusive": min_exclusive}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    name: str = opt("microsoft/phi-2", "Hub id, local folder, or builtin:tiny-phi / builtin:phi-2-random / "
                                      "builtin:smollm2-135m (a real chat model, offline)")
    revision: str = opt("", "Hub revision (branch, tag or commit); empty = default branch")
    trust_remote_code: bool = opt(False, "Run Python code shipped with the model (only for models you trust)")
    gradient_checkpointing: bool = opt(True, "Recompute activations in backward when a step would not fit "
                                       "otherwise (far less VRAM, ~30% slower); false = never")
    attn_implementation: str = opt("sdpa", "Attention kernel", choices=("sdpa", "eager"))


@dataclass(frozen=True)
class QuantConfig:
    mode: str = opt("nf4", "Base weight quantization (bitsandbytes)", choices=QUANT_MODES)
    double_quant: bool = opt(True, "Quantize the 4-bit scales too (~0.4 bit/param less)")
    compute_dtype: str = opt("auto", "Matmul dtype: auto = bf16 if supported, fp16 on older GPUs, fp32 on CPU",
                             choices=COMPUTE_DTYPES)
    autocast: bool = opt(True, "On a GPU with bf16: run under torch.autocast (true), or keep activations in bf16 "
                               "throughout with the LoRA in fp32 (false: lighter; fp16 always uses autocast)")


@dataclass(frozen=True)
class LoraConfig:
    r: int = opt(16, "LoRA rank", min=1, max=1024)
    alpha: float = opt(32.0, "LoRA alpha (scale = alpha / r)", min=0, max=100_000, min_exclusive=True)
    dropout: float = opt(0.05, "Dropout on the LoRA input", min=0, max=0.9)
    target_modules: tuple[str, ...] = opt((), "Modules to adapt; empty = per architecture (phi: q_proj, k_proj, v_proj, dense)")


@dataclass(frozen=True)
class DataConfig:
    source: str = opt("HumanLLMs/Human-Like-DPO-Dataset", "Hub id, local .json/.jsonl/.parquet/.csv, builtin:sample, "
                      "or picks:NAME (your Chat picks, the newest fifth held out)")
    split: str = opt("train", "Split to read from a hub data set")
    prompt_column: str = opt("prompt", "Column with the user's message")
    chosen_column: str = opt("chosen", "Column with the human-like answer (the one we learn)")
    rejected_column: str = opt("rejected", "Column with the formal answer (DPO's negative); empty for SFT-only data")
    template: str = opt("auto", "auto = the model's chat template if it has one, else instruct; "
                        "instruct = '### Instruct / ### Output / ### End'; chat = the model's chat template",
                        choices=TEMPLATES)
    max_length: int = opt(512, "Longest prompt+answer in tokens; longer rows are dropped and counted", min=16, max=32768)
    eval_fraction: float = opt(0.05, "Share of prompts held out for evaluation", min=0, max=0.5)
    train_on_prompt: bool = opt(False, "Also learn the prompt tokens (the original recipe did; usually worse)")
    max_rows: int = opt(0, "Use at most this many rows (0 = all)", min=0, max=MAX_COUNT)
    format: str = opt("auto", "Row shape: auto (told from each row), prompt_chosen (prompt/chosen/rejected), messages "
                      "(OpenAI role/content list), sharegpt (conversations with from/value), preference_messages "
                      "(messages history + chosen/rejected final answers)", choices=DATA_FORMATS)
    loss_on: str = opt("all_assistant", "In conversations, learn every assistant turn or only the last one "
                       "(never system or user text)", choices=LOSS_ON)
    system_prompt: str = opt("", "Persona: a system message for rows without one, saved with the run and used by "
                             "chat, serve, eval and exports (empty = none)")
    mix: tuple[str, ...] = opt((), "More sources mixed into data.source, each 'SOURCE' or 'SOURCE*WEIGHT' (its rows "
                               "count WEIGHT times), e.g. ['picks:my-picks*4']; same column names as data.source")


@dataclass(frozen=True)
class TrainConfig:
    method: str = opt("sft", "sft = imitate chosen; dpo = prefer chosen over rejected (against a reference: the "
                      "base); sft+dpo = both in turn; orpo = SFT on chosen + an odds-ratio preference term, one "
                      "stage; simpo = prefer chosen by mean log-prob per token with a target margin (orpo and "
                      "simpo need no reference pass: cheaper steps)", choices=METHODS)
    max_steps: int = opt(600, "Optimizer steps in the whole run", min=1, max=MAX_STEPS)
    sft_steps: int = opt(0, "With sft+dpo: SFT steps before DPO (0 = half of max_steps)", min=0, max=MAX_STEPS)
    learning_rate: float = opt(2e-4, "Peak learning rate", min=0, max=1, min_exclusive=True)
    lr_scheduler: str = opt("cosine", "Learning-rate schedule after warm-up", choices=SCHEDULERS)
    warmup_steps: int = opt(10, "Linear warm-up steps", min=0, max=MAX_STEPS)
    weight_decay: float = opt(0.0, "AdamW weight decay on the LoRA weights", min=0, max=1)
    max_grad_norm: float = opt(1.0, "Gradient clipping (0 = off)", min=0, max=1_000_000)
    batch_size: int = opt(8, "Samples per micro-batch group; batch_size x grad_accum samples make one step", min=1, max=4096)
    grad_accum: int = opt(2, "Gradient accumulation: groups per optimizer step", min=1, max=4096)
    micro_batch_tokens: int = opt(0, "Token budget of one forward pass (0 = sized to free VRAM; all at once on CPU)",
                                 min=0, max=MAX_COUNT)
    vram_limit_gib: float = opt(0.0, "GPU memory the engine may plan a step for, GiB (0 = what is free, at most "
                                "7.5 so the defaults suit an 8 GB card; raise it on a bigger card)", min=0, max=4096)
    dpo_beta: float = opt(0.1, "DPO beta: how far the policy may move from the reference", min=0, max=10, min_exclusive=True)
    orpo_lambda: float = opt(0.1, "ORPO lambda: weight of the odds-ratio preference term beside the SFT loss on "
                             "chosen (TRL's default 0.1; the SFT loss covers the prompt too with "
                             "data.train_on_prompt, as TRL's does)", min=0, max=100, min_exclusive=True)
    simpo_beta: float = opt(2.0, "SimPO beta: scale of the mean log-prob margin (the paper's and TRL's SimPO "
                            "recipe: 2.0)", min=0, max=100, min_exclusive=True)
    simpo_gamma: float = opt(1.0, "SimPO gamma: target margin the scaled margin must beat (paper: gamma / beta "
                             "= 0.5)", min=0, max=100)
    eval_every: int = opt(50, "Evaluate every N steps (0 = only at the end)", min=0, max=MAX_STEPS)
    eval_max_rows: int = opt(64, "Evaluate on at most this many held-out rows", min=1, max=MAX_COUNT)
    save_every: int = opt(100, "Checkpoint every N steps (0 = only on stop/pause/end)", min=0, max=MAX_STEPS)
    keep_checkpoints: int = opt(2, "Keep the newest N checkpoints", min=1, max=100)
    sample_prompts: int = opt(2, "Held-out prompts answered at each evaluation, to watch the style change", min=0, max=8)
    seed: int = opt(42, "Seed for data order, LoRA init and dropout", min=0, max=MAX_SEED)
    price_per_kwh: float = opt(0.30, "Electricity price for the energy cost shown while training", min=0,
                              max=1000)
    from_run: str = opt("", "Start the LoRA from this finished run's adapter (a new run; that run is left as it is); "
                        "empty = a fresh LoRA. `train --from RUN` sets it")
    report_to: tuple[str, ...] = opt((), "Also log every step/eval figure to: tensorboard (run folder/tensorboard), "
                                     "wandb (offline unless WANDB_MODE says otherwise); empty = only metrics.jsonl")


@dataclass(frozen=True)
class GenerateConfig:
    max_new_tokens: int = opt(200, "Longest answer in tokens", min=1, max=8192)
    temperature: float = opt(0.7, "Sampling temperature (0 = greedy)", min=0, max=5)
    top_p: float = opt(0.9, "Nucleus sampling", min=0, max=1, min_exclusive=True)
    repetition_penalty: float = opt(1.1, "Penalty on repeated tokens (1 = off)", min=1, max=3)
    seed: int = opt(0, "Sampling seed (same seed, same answer)", min=0, max=MAX_SEED)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _section_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def get(self, path: str) -> Any:
        section, key = _split_path(path)
        return getattr(getattr(self, section), key)

    def replace(self, **values: Any) -> "Config":
        """Copy with values by key path, validated: cfg.replace(**{"train.max_steps": 10})."""
        data = self.to_dict()
        for path, value in values.items():
            section, key = _split_path(path)
            data.setdefault(section, {})[key] = value
        return config_from_dict(data)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]
GROUP_TITLES = {"model": "Model", "quant": "Quantization", "lora": "LoRA", "data": "Data",
                "train": "Training", "generate": "Generation"}


@dataclass(frozen=True)
class FieldSpec:
    """One config field as the UI form and the docs see it."""

    path: str
    type: type
    default: Any
    help: str
    choices: tuple = ()
    min: float | None = None
    max: float | None = None


def field_specs() -> list[FieldSpec]:
    specs = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            m = f.metadata
            specs.append(FieldSpec(f"{section}.{f.name}", _base_type(hints[f.name]), default,
                                   m.get("help", ""), m.get("choices", ()), m.get("min"), m.get("max")))
    return specs


def _split_path(path: str) -> tuple[str, str]:
    section, _, key = path.partition(".")
    if section not in SECTIONS or not key:
        raise ConfigError(f"{path}: unknown key (sections: {', '.join(SECTIONS)})")
    return section, key


def _section_dict(obj: Any) -> dict[str, Any]:
    return {f.name: (list(v) if isinstance(v := getattr(obj, f.name), tuple) else v)
            for f in dataclasses.fields(obj)}


def _base_type(hint: Any) -> type:
    return tuple if typing.get_origin(hint) is tuple else hint


def _type_name(t: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            tuple: "a list of strings"}[t]


def _coerce(value: Any, t: type) -> tuple[bool, Any]:
    """TOML value -> field type. Ints are accepted for floats; nothing else is converted."""
    if t is bool:
        return isinstance(value, bool), value
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if t is str:
        return isinstance(value, str), value
    if t is tuple:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return ok, tuple(value) if ok else value
    return False, value


def _check_field(path: str, value: Any, f: dataclasses.Field, t: type) -> list[str]:
    m = f.metadata
    texts = value if t is tuple else (value,) if t is str else ()
    if not all(_is_utf8(v) for v in texts):
        return [f"{path}: must be valid UTF-8 text, got {value!r}; undecodable bytes (e.g. from a file name "
                "in another encoding) cannot be saved in a config; rename the file or retype the value"]
    if m.get("choices") and value not in m["choices"]:
        return [f"{path}: must be one of {', '.join(map(str, m['choices']))}, got {value!r}"]
    if t in (int, float):
        lo, hi = m.get("min"), m.get("max")
        if t is float and not math.isfinite(value):  # every comparison with NaN is False: check first
            return [f"{path}: must be a finite number in {_range_text(m)}, got {value}"]
        if lo is not None and (value <= lo if m.get("min_exclusive") else value < lo):
            return [f"{path}: must be {'>' if m.get('min_exclusive') else '>='} {_num(lo)}, got {_num(value)}"]
        if hi is not None and value > hi:
            return [f"{path}: must be <= {_num(hi)}, got {_num(value)}"]
    return []


def _range_text(m: Any) -> str:
    """'(0, 1]', '[0, 4294967295]': the allowed interval of a numeric field."""
    lo, hi = m.get("min"), m.get("max")
    left = "(" if m.get("min_exclusive") else "["
    return f"{left}{_num(lo) if lo is not None else '-inf'}, {_num(hi) if hi is not None else 'inf'}]"


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")  # lone surrogates (an undecodable command-line byte, a JSON "\\ud800") fail
    except UnicodeEncodeError:
        return False
    return True


def _num(x: float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


# ---- picks (the Chat screen's preferences) as training data: names and the data.mix syntax ----------------
PICKS_PREFIX = "picks:"
DEFAULT_PICKS = "my-picks"
MAX_MIX_WEIGHT = 1000.0


def picks_name_problem(name: str) -> str:
    """Why `name` cannot name a picks collection ('' when it can): it becomes a file name."""
    if not name:
        return f"a picks collection needs a name, e.g. {PICKS_PREFIX}{DEFAULT_PICKS}"
    if len(name) > 100 or not (name[0].isascii() and name[0].isalnum()) or \
            not all(c.isascii() and (c.isalnum() or c in "._-") for c in name):
        return ("a picks collection name is 1-100 letters, digits, '.', '_' or '-', starting with a letter or "
                f"digit, e.g. {DEFAULT_PICKS}")
    return ""


def parse_mix_entry(entry: str) -> tuple[str, float]:
    """'picks:my-picks*4' -> ('picks:my-picks', 4.0); 'rows.jsonl' -> ('rows.jsonl', 1.0). ConfigError when
    the weight is not a positive number."""
    source, star, weight = entry.strip().rpartition("*")
    if not star:
        return entry.strip(), 1.0
    try:
        value = float(weight)
    except ValueError:
        raise ConfigError(f"data.mix: {entry!r}: the weight after '*' must be a number, e.g. "
                          f"'{source.strip() or 'picks:my-picks'}*4'") from None
    if not math.isfinite(value) or not 0 < value <= MAX_MIX_WEIGHT:
        raise ConfigError(f"data.mix: {entry!r}: the weight must be > 0 and <= {_num(MAX_MIX_WEIGHT)}, "
                          f"got {weight.strip()}")
    return source.strip(), value


def mix_problems(entries: tuple[str, ...]) -> list[str]:
    problems = []
    for entry in entries:
        try:
            source, _ = parse_mix_entry(entry)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if not source:
            problems.append(f"data.mix: {entry!r}: name a source before '*', e.g. 'picks:my-picks*4'")
        elif source.startswith(PICKS_PREFIX) and picks_name_problem(source[len(PICKS_PREFIX):]):
            problems.append(f"data.mix: {entry!r}: {picks_name_problem(source[len(PICKS_PREFIX):])}")
        elif source.startswith("builtin:") and source not in BUILTIN_DATA:
            problems.append(f"data.mix: {entry!r}: unknown builtin data set; choose {' or '.join(BUILTIN_DATA)}")
    return problems


def _cross_checks(cfg: Config) -> list[str]:
    """Choices that are fine alone but not together."""
    problems = []
    name = cfg.model.name.strip()
    if not name:
        problems.append("model.name: must not be empty (a hub id, a local folder, or builtin:tiny-phi)")
    elif name.startswith("builtin:") and name not in BUILTIN_MODELS:
        problems.append(f"model.name: unknown builtin model {name!r}; choose {' or '.join(BUILTIN_MODELS)}")
    source = cfg.data.source.strip()
    if not source:
        problems.append("data.source: must not be empty (a hub id, a local file, or builtin:sample)")
    elif source.startswith("builtin:") and source not in BUILTIN_DATA:
        problems.append(f"data.source: unknown builtin data set {source!r}; choose {' or '.join(BUILTIN_DATA)}")
    elif source.startswith(PICKS_PREFIX) and picks_name_problem(source[len(PICKS_PREFIX):]):
        problems.append(f"data.source: {source!r}: {picks_name_problem(source[len(PICKS_PREFIX):])}")
    problems += mix_problems(cfg.data.mix)
    for key, value in (("model.name", name), ("data.source", source)):
        problem = _name_too_long(value)
        if problem:
            problems.append(f"{key}: {problem}")
    for key in ("prompt_column", "chosen_column"):
        if not getattr(cfg.data, key).strip():
            problems.append(f"data.{key}: must name a column")
    if cfg.train.method != "sft" and not cfg.data.rejected_column.strip():
        problems.append(f"data.rejected_column: train.method = {cfg.train.method!r} needs the rejected answers; "
                        "name the column or set train.method = 'sft'")
    if cfg.train.method == "sft+dpo" and cfg.train.sft_steps >= cfg.train.max_steps:
        problems.append(f"train.sft_steps: must be < train.max_steps ({cfg.train.max_steps}) so DPO gets steps, "
                        f"got {cfg.train.sft_steps}")
    if cfg.quant.double_quant and cfg.quant.mode == "int8":
        problems.append("quant.double_quant: only applies to 4-bit modes (nf4, fp4); set it to false or use nf4")
    if cfg.train.eval_every > 0 and cfg.data.eval_fraction == 0:
        problems.append("train.eval_every: evaluation needs held-out rows; set data.eval_fraction > 0 "
                        "or train.eval_every = 0")
    if cfg.quant.mode == "none" and cfg.quant.compute_dtype == "fp16":
        problems.append("quant.compute_dtype: fp16 weights without quantization train unstably; use auto or bf16")
    if any(not m.strip() for m in cfg.lora.target_modules):
        problems.append("lora.target_modules: names must not be empty")
    unknown = [r for r in cfg.train.report_to if r not in REPORTERS]
    if unknown:
        problems.append(f"train.report_to: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(REPORTERS)}")
    elif len(set(cfg.train.report_to)) != len(cfg.train.report_to):
        problems.append("train.report_to: each reporter at most once")
    return problems


MAX_NAME_BYTES = 255  # one file or folder name (ext4, NTFS, APFS); a hub id is far shorter
MAX_PATH_BYTES = 4096


def _name_too_long(value: str) -> str:
    """Model names and data sources are paths or hub ids: a part past the file-system limit made the
    OS raise ENAMETOOLONG wherever it was first looked up (a traceback in `hw`)."""
    try:
        size = len(value.encode("utf-8"))
        parts = [len(p.encode("utf-8")) for p in value.replace("\\", "/").split("/")]
    except UnicodeEncodeError:
        return ""  # reported by the UTF-8 check
    if size > MAX_PATH_BYTES or max(parts, default=0) > MAX_NAME_BYTES:
        return (f"too long ({size} bytes; a file or folder name can have at most {MAX_NAME_BYTES} bytes, "
                f"a path {MAX_PATH_BYTES}); give the path of an existing file or folder, or a hub id")
    return ""


def validate_dict(data: Any) -> tuple[Config | None, list[str]]:
    """Check a TOML-shaped dict. Returns the config (None if any field is unusable) and every problem."""
    if not isinstance(data, dict):
        return None, [f"config: must be a table of sections, got {type(data).__name__}"]
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for section in data:
        if section not in SECTIONS:
            problems.append(f"{section}: unknown section (known: {', '.join(SECTIONS)})")
    for section, cls in SECTIONS.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            problems.append(f"{section}: must be a table ([{section}]), got {type(raw).__name__}")
            raw = {}
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in raw.items():
            path = f"{section}.{key}"
            if key not in fields:
                close = [k for k in fields if k.startswith(key[:3])]
                hint = f"; did you mean {section}.{close[0]}?" if close else ""
                problems.append(f"{path}: unknown key{hint}")
                continue
            t = _base_type(hints[key])
            ok, coerced = _coerce(value, t)
            if not ok:
                problems.append(f"{path}: must be {_type_name(t)}, got {value!r} ({type(value).__name__})")
                continue
            field_problems = _check_field(path, coerced, fields[key], t)
            problems += field_problems
            if not field_problems:
                values[key] = coerced
        sections[section] = cls(**values)
    cfg = Config(**sections)
    problems += _cross_checks(cfg)
    return (cfg if not problems else None), problems


def config_from_dict(data: Any) -> Config:
    cfg, problems = validate_dict(data)
    if problems:
        raise ConfigError(problems)
    assert cfg is not None
    return cfg


def parse_toml(text: str, where: str = "config") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc}); fix the syntax, e.g. strings need quotes") from None


def load_config(path: str | os.PathLike) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark some Windows editors put first
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found; check the path or use --preset demo") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the config file ({exc})") from None
    return config_from_dict(parse_toml(text, str(p)))


DEFAULT_PRESET = "gaming-8gb"  # what `train` and `hw` use when neither --config nor --preset is given


def preset_names() -> list[str]:
    return sorted(r.name.removesuffix(".toml") for r in resources.files("humanlike_tui.presets").iterdir()
                  if r.name.endswith(".toml"))


def preset_text(name: str) -> str:
    if name not in preset_names():
        raise ConfigError(f"preset {name!r} does not exist; choose one of: {', '.join(preset_names())}")
    return resources.files("humanlike_tui.presets").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def load_preset(name: str) -> Config:
    return config_from_dict(parse_toml(preset_text(name), f"preset {name}"))


def parse_override(item: str) -> tuple[str, Any]:
    """'train.max_steps=10' -> ('train.max_steps', 10); values are TOML, bare words are strings."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or "." not in key:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.max_steps=100")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(cfg: Config, items: list[str]) -> Config:
    data = cfg.to_dict()
    for item in items:
        key, value = parse_override(item)
        section, _, name = key.partition(".")
        if not isinstance(data.get(section), dict):
            data[section] = {}
        data[section][name] = value
    return config_from_dict(data)


def to_toml(cfg: Config, header: str = "") -> str:
    import tomli_w

    text = tomli_w.dumps(cfg.to_dict())
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    return ("\n".join(lines) + "\n\n" if lines else "") + text




# --- consent to run a model's own Python code ------------------------------------------------------------
# `model.trust_remote_code = true` in a config only ASKS to run the Python files shipped with a model
# (auto_map). A config can come from anywhere (a run folder someone sent, a downloaded TOML), so it never
# says yes on its own: the person does, for this command (--trust-remote-code) or in the TUI (a confirm
# dialog), naming the model. The engine asks `remote_code_consent(cfg)` before every load that could run
# such code; without consent nothing is imported and the load fails with how to give it.

_REMOTE_CODE_CONSENT: set[str] = set()


def allow_remote_code(model_name: str) -> None:
    """The person agreed to run `model_name`'s own code in this process."""
    _REMOTE_CODE_CONSENT.add(model_name.strip())


def forget_remote_code_consent() -> None:
    _REMOTE_CODE_CONSENT.clear()


def remote_code_allowed(cfg: Config) -> bool:
    return cfg.model.name.strip() in _REMOTE_CODE_CONSENT


def remote_code_consent(cfg: Config) -> bool:
    """What to pass as trust_remote_code: False when the config does not ask, True when it asks and the
    person agreed; raises ModelError (exit 2) when it asks and nobody agreed."""
    if not cfg.model.trust_remote_code:
        return False
    if remote_code_allowed(cfg):
        return True
    from humanlike_tui.errors import RemoteCodeRefused

    raise RemoteCodeRefused(f"model.trust_remote_code is on for {cfg.model.name!r}: loading it would run the Python "
                            "code shipped with the model; nothing was run. If you trust that code, pass "
                            "--trust-remote-code (in the workbench: confirm when asked); else set "
                            "model.trust_remote_code = false.", cfg.model.name.strip())


def remote_code_warning(cfg: Config) -> str:
    return (f"warning: model.trust_remote_code is on and allowed: the Python code shipped with "
            f"{cfg.model.name!r} will run in this process")








def save_config(cfg: Config, path: str | os.PathLike, header: str = "humanlike-tui config") -> Path:
    atomic_write_text(path, to_toml(cfg, header))
    return Path(path)
