"""A model's config.json checked before anything is built or allocated: its shapes must be positive whole
numbers, and the weights they describe must fit in the memory they would be loaded into.

A config that says `hidden_size: 1000000` or `num_hidden_layers: 100000000` otherwise makes transformers
allocate until the kernel kills the process (20 GB and more), and a negative or non-numeric shape ends in a
torch error deep inside the load. Stdlib (and psutil) only: the planner and the loader both ask it before
transformers sees the config. The parameter count is a lower bound (no biases, norms or gated MLP's third
matrix), so a model that fits is never refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from humanlike_tui.errors import ModelError
from humanlike_tui.formatting import size_text


# Each is a count of something a model has; what config.json may leave out is None.
SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim")
# Older configs' names for the same shapes (gpt2, gpt-j, bloom ...).
ALIASES = {"n_embd": "hidden_size", "n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
           "n_inner": "intermediate_size", "n_embed": "hidden_size"}
# Every layer is a module object even on the meta device, so a layer count is bounded before anything is
# built: the deepest real models have ~128 layers; 10,000 is a limit no real model meets.
MAX_LAYERS = 10_000
WEIGHT_BYTES = {"nf4": 0.5, "fp4": 0.5, "int8": 1.0}


@dataclass(frozen=True)
class ConfigSize:
    """What config.json says about a model's size (a lower bound of its parameters)."""

    params: int
    linear_params: int  # quantized by bitsandbytes when quant.mode is nf4/fp4/int8
    shapes: dict[str, int]

    def weight_bytes(self, quant: str, dtype_bytes: int) -> int:
        per = WEIGHT_BYTES.get(quant, dtype_bytes)
        return int(self.linear_params * per + (self.params - self.linear_params) * dtype_bytes)


def read_config_file(path: Path) -> dict[str, Any]:
    """A local model folder's config.json as a dict; ModelError naming the file when it cannot be read
    (never a hub or internet error: the folder is right here)."""
    file = path / "config.json"
    try:
        data = json.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ModelError(f"model.name: cannot read {file} ({exc.strerror or type(exc).__name__}); check that "
                         "the file exists and is readable by you") from None
    except UnicodeDecodeError:
        raise ModelError(f"model.name: {file} is not UTF-8 text, so it is not a transformers config; "
                         "replace it with the model's own config.json") from None
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"model.name: {file} is not valid JSON ({str(exc)[:120]}); replace it with the "
                         "model's own config.json") from None
    if not isinstance(data, dict):
        raise ModelError(f"model.name: {file} holds a {type(data).__name__}, not a JSON object; replace it "
                         "with the model's own config.json")
    return data


def config_size(config: dict[str, Any], source: str) -> ConfigSize | None:
    """The shapes in `config` (a text model's config, or a multimodal one's text_config) checked, and the
    parameters they describe; None when the config names too few shapes to count (left to transformers).
    ModelError, naming the key, for a shape that is not a positive whole number or past MAX_LAYERS."""
    shapes = _shapes(config, source)
    text = config.get("text_config")
    if isinstance(text, dict):
        shapes = {**shapes, **_shapes(text, f"{source} (text_config)")}
    layers = shapes.get("num_hidden_layers")
    if layers is not None and layers > MAX_LAYERS:
        raise ModelError(f"model.name: {source}: num_hidden_layers is {layers:,}, past the limit of "
                         f"{MAX_LAYERS:,} (the deepest real models have ~128); config.json is damaged or not "
                         "a real model's; nothing was loaded")
    if not all(shapes.get(k) for k in ("vocab_size", "hidden_size", "num_hidden_layers")):
        return None
    h, n_layers, vocab = shapes["hidden_size"], shapes["num_hidden_layers"], shapes["vocab_size"]
    heads = shapes.get("num_attention_heads") or 1
    kv = shapes.get("num_key_value_heads") or heads
    head_dim = shapes.get("head_dim") or max(h // heads, 1)
    inner = shapes.get("intermediate_size") or 4 * h
    per_layer = 2 * h * heads * head_dim + 2 * h * kv * head_dim + 2 * h * inner
    linear = n_layers * per_layer
    return ConfigSize(params=linear + vocab * h, linear_params=linear, shapes=shapes)


def _shapes(config: dict[str, Any], source: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in config.items():
        name = ALIASES.get(key, key)
        if name not in SHAPE_KEYS or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelError(f"model.name: {source}: {key} must be a positive whole number, got {value!r}; "
                             "config.json is damaged or not a transformers config; nothing was loaded")
        out.setdefault(name, value)
    return out


def check_fits(size: ConfigSize | None, source: str, *, quant: str, dtype_bytes: int, memory_bytes: int | None,
               memory_name: str) -> None:
    """ModelError with the model's size and the memory it would be loaded into when its weights alone are
    larger (the whole of that memory, not what is free: a model refused here could never load)."""
    if size is None or not memory_bytes:
        return
    need = size.weight_bytes(quant, dtype_bytes)
    if need <= memory_bytes:
        return
    dims = ", ".join(f"{k} {v:,}" for k, v in size.shapes.items()
                     if k in ("hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size"))
    raise ModelError(f"model.name: {source} describes a model of at least {_count(size.params)} parameters "
                     f"({dims}): its weights alone need {size_text(need)} as {quant}, more than {memory_name} "
                     f"({size_text(memory_bytes)}); nothing was loaded. Check config.json, or use a smaller model")


def _count(n: int) -> str:
    for unit, scale in (("trillion", 10**12), ("billion", 10**9), ("million", 10**6)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,}"


def machine_ram() -> int | None:
    """This machine's total RAM in bytes, None if it cannot be asked."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - a sandbox without /proc: no check rather than no load
        return None
