"""A model's shapes (layers, linear sizes, vocabulary) from its config alone: a local folder, the hub's
config.json, or the builtin and known models offline. No weights are loaded."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from humanlike_tui.config import Config, remote_code_consent
from humanlike_tui.errors import ModelError
from humanlike_tui.engine.models.config_check import config_size, read_config_file


MiB = 2**20


GiB = 2**30


# Known config.json shapes, used when the hub is unreachable and the config is not cached.


@dataclass(frozen=True)
class LinearShape:
    """One kind of linear layer (by its leaf name), e.g. every `q_proj`: `count` instances."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    count: int

    @property
    def weight_params(self) -> int:
        return self.in_features * self.out_features * self.count


@dataclass(frozen=True)
class ModelShapes:
    """What the plan needs to know about a model, from its config alone."""

    name: str
    source: str  # where the shapes came from ("builtin", "config.json in the Hugging Face cache", ...)
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_act: str
    resid_pdrop: float
    total_params: int
    linears: tuple[LinearShape, ...]  # every nn.Linear but the output head: what bitsandbytes quantizes

    @property
    def quantized_params(self) -> int:
        return sum(lin.weight_params for lin in self.linears)

    @property
    def unquantized_params(self) -> int:
        """Embeddings, lm_head, norms and every bias: bitsandbytes leaves them in the compute dtype."""
        return self.total_params - self.quantized_params

    @property
    def largest_linear(self) -> int:
        return max((lin.in_features * lin.out_features for lin in self.linears), default=0)

    def linear(self, name: str) -> LinearShape | None:
        return next((lin for lin in self.linears if lin.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["linears"] = [dataclasses.asdict(lin) for lin in self.linears]
        d["quantized_params"] = self.quantized_params
        return d


def _quiet_transformers() -> Any:
    """transformers prints config and init chatter; a plan should not."""
    from transformers.utils import logging as tlog

    return tlog


def shapes_from_hf_config(hf_config: Any, name: str, source: str, trust_remote_code: bool = False) -> ModelShapes:
    """Build the model on the meta device (no memory, no weights) and read its exact shapes."""
    import torch
    from transformers import AutoModelForCausalLM

    tlog = _quiet_transformers()
    old = tlog.get_verbosity()
    tlog.set_verbosity_error()
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_config(hf_config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - unknown architectures raise ValueError/KeyError/ImportError
        raise ModelError(f"model.name: cannot build {name!r} from its config to plan memory "
                         f"({type(exc).__name__}: {exc})") from None
    finally:
        tlog.set_verbosity(old)
    head = model.get_output_embeddings()
    kinds: dict[str, list[int]] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            leaf = module_name.rsplit(".", 1)[-1]
            entry = kinds.setdefault(leaf, [module.in_features, module.out_features, module.bias is not None, 0])
            entry[3] += 1
    c = hf_config
    heads = int(getattr(c, "num_attention_heads", 1))
    hidden = int(c.hidden_size)
    return ModelShapes(
        name=name, source=source, model_type=str(getattr(c, "model_type", "")),
        vocab_size=int(c.vocab_size), hidden_size=hidden,
        intermediate_size=int(getattr(c, "intermediate_size", None) or 4 * hidden),
        num_layers=int(c.num_hidden_layers), num_heads=heads,
        num_kv_heads=int(getattr(c, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(c, "head_dim", None) or hidden // heads),
        hidden_act=str(getattr(c, "hidden_act", "") or getattr(c, "hidden_activation", "") or ""),
        resid_pdrop=float(getattr(c, "resid_pdrop", 0.0) or 0.0),
        total_params=sum(p.numel() for p in model.parameters()),
        linears=tuple(LinearShape(k, v[0], v[1], bool(v[2]), v[3]) for k, v in kinds.items()),
    )


def _hub_config(name: str, revision: str, trust_remote_code: bool, local_only: bool) -> Any:
    from transformers import AutoConfig

    tlog = _quiet_transformers()
    old = tlog.get_verbosity()
    tlog.set_verbosity_error()
    try:
        return AutoConfig.from_pretrained(name, revision=revision or None, trust_remote_code=trust_remote_code,
                                          local_files_only=local_only)
    finally:
        tlog.set_verbosity(old)


def _known_config(name: str) -> Any:
    from humanlike_tui.engine.models.catalogue import find

    entry = find(name)
    return entry.config() if entry else None


def hf_config_for(name: str, revision: str = "", trust_remote_code: bool = False) -> tuple[Any, str]:
    """(transformers config, where it came from) for a model.name, never downloading weights.

    Order for a hub id: the local Hugging Face cache (instant, offline), then the known-shapes table
    (phi-2; an offline machine must not wait ~20 s for the hub to time out), then the hub itself.
    """
    from humanlike_tui.engine import models as M

    name = name.strip()
    if name == "builtin:tiny-phi":
        return M.tiny_phi_config(), "builtin"
    if name == "builtin:phi-2-random":
        return M.phi2_config(), "builtin (phi-2's shapes)"
    if name.startswith("builtin:"):  # a real model made from a package (builtin:smollm2-135m): its known shapes
        return _known_config(name), "known shapes (builtin)"
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"model.name: {path} has no config.json; point it at a saved transformers model")
        # checked before transformers reads it: a config may describe a model too big even to plan
        config_size(read_config_file(path), str(path / "config.json"))
        return _hub_config(str(path), "", trust_remote_code, local_only=True), f"{path / 'config.json'}"
    try:
        return _hub_config(name, revision, trust_remote_code, local_only=True), "config.json (Hugging Face cache)"
    except (OSError, ValueError):
        pass
    known = None if revision else _known_config(name)
    if known is not None:  # the curated models: an offline machine must not wait for the hub to time out
        return known, "known shapes (config.json not cached)"
    try:
        return _hub_config(name, revision, trust_remote_code, local_only=False), "config.json (Hugging Face Hub)"
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"model.name: cannot read config.json of {name!r} to plan memory ({first}). Only config.json is "
            "needed, no weights: connect to the internet once, copy the model folder here and set "
            "model.name to its path, or plan with builtin:phi-2-random (phi-2's shapes).") from None


@functools.lru_cache(maxsize=16)
def _cached_shapes(name: str, revision: str, trust: bool) -> ModelShapes:
    hf_config, source = hf_config_for(name, revision, trust)
    config_size(hf_config.to_dict(), source)  # every layer is a module even on the meta device: bounded first
    return shapes_from_hf_config(hf_config, name, source, trust)


def load_model_shapes(cfg: Config) -> ModelShapes:
    """The model's shapes (cached per name and revision). Raises ModelError with the fix."""
    return _cached_shapes(cfg.model.name.strip(), cfg.model.revision, remote_code_consent(cfg))
