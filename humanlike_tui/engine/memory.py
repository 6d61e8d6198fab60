"""VRAM plan for a config: what the weights, the LoRA state, the activations and the logits will
take at the peak of a training step, a verdict against the free memory, and concrete fixes.

The model of memory is written out in docs/vram-planning.md. In short, the peak of a step is

    fixed     base weights (4-bit packed + scales, or int8, or compute dtype), unquantized weights
              (embeddings, lm_head, norms, biases), LoRA weights + gradients + AdamW state (fp32),
              autocast copies of the LoRA weights, one dequantized weight, cuBLAS workspace
  + dynamic   activations saved for backward (every layer, or one checkpoint per layer plus one
              recomputed layer), the final norm, and the larger of the logits working set and one
              layer's backward temporaries; plus allocator slack
  + context   the CUDA context (not seen by torch's allocator, but taken from the same free memory)

The per-layer activation terms follow what autograd actually saves for phi with bitsandbytes
and peft LoRA; on the CPU path they are checked tensor by tensor in tests/unit/test_memory.py.

Model shapes come from the model's config only (no weights): the model is built on torch's meta
device, so parameter counts and linear shapes are exact for any architecture transformers knows.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from humanlike_tui.config import Config
from humanlike_tui.errors import ModelError

MiB = 2**20
GiB = 2**30

# --- constants of the model of memory (each explained; see docs/vram-planning.md) ------------------
BNB_4BIT_BLOCK = 64  # bitsandbytes 4-bit: one absmax scale per 64 weights
BNB_DQ_BLOCK = 256  # double quant: the 8-bit scales get one fp32 scale per 256 of them
LORA_BYTES = 4  # peft keeps adapter weights in fp32 (autocast_adapter_dtype)
LORA_GRAD_BYTES = 4  # gradients have the parameters' dtype
ADAMW_BYTES = 8  # exp_avg + exp_avg_sq, fp32 each
ANSWER_FRACTION = 0.6  # share of tokens that are answer tokens: the engine computes logits only for those
LOGP_CHUNK = 2048  # the engine applies lm_head in chunks of this many tokens (engine.train.LOGP_CHUNK)
# Per logit element at the chunk's peak (its backward): the saved fp32 log-softmax output, the
# gradient arriving at it, and the gradient it produces (the fused backward kernel needs no temporary).
# The forward is lower: bf16 logits + their fp32 copy + log-softmax = 10.
LOGIT_BYTES = 12
ALLOCATOR_SLACK = 0.10  # torch's caching allocator reserves more than it hands out (block rounding, fragmentation)
CUDA_CONTEXT_BYTES = 400 * MiB  # driver context + kernels of torch, bitsandbytes; typically 300-500 MB
CUDA_WORKSPACE_BYTES = 64 * MiB  # cuBLAS workspaces, rotary tables, masks, optimizer step counters
CPU_RUNTIME_BYTES = 600 * MiB  # on the CPU the peak is the process's RSS: Python, torch, transformers ...
FIT_MARGIN = 0.15  # "fits" needs this much headroom: the estimate aims to be within 15% of the real peak
CHECKPOINTING_SLOWDOWN = "~30% slower"

# Known config.json shapes, used when the hub is unreachable and the config is not cached.
KNOWN_MODELS = ("microsoft/phi-2",)


# --------------------------------------------------------------------------------------------------
# Model shapes
# --------------------------------------------------------------------------------------------------


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
    from humanlike_tui.engine import model as M

    return {"microsoft/phi-2": M.phi2_config}[name]()


def hf_config_for(name: str, revision: str = "", trust_remote_code: bool = False) -> tuple[Any, str]:
    """(transformers config, where it came from) for a model.name, never downloading weights.

    Order for a hub id: the local Hugging Face cache (instant, offline), then the known-shapes table
    (phi-2; an offline machine must not wait ~20 s for the hub to time out), then the hub itself.
    """
    from humanlike_tui.engine import model as M

    name = name.strip()
    if name == "builtin:tiny-phi":
        return M.tiny_phi_config(), "builtin"
    if name == "builtin:phi-2-random":
        return M.phi2_config(), "builtin (phi-2's shapes)"
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"model.name: {path} has no config.json; point it at a saved transformers model")
        return _hub_config(str(path), "", trust_remote_code, local_only=True), f"{path / 'config.json'}"
    try:
        return _hub_config(name, revision, trust_remote_code, local_only=True), "config.json (Hugging Face cache)"
    except (OSError, ValueError):
        pass
    if name in KNOWN_MODELS and not revision:
        return _known_config(name), "known shapes (config.json not cached)"
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
    return shapes_from_hf_config(hf_config, name, source, trust)


def load_model_shapes(cfg: Config) -> ModelShapes:
    """The model's shapes (cached per name and revision). Raises ModelError with the fix."""
    return _cached_shapes(cfg.model.name.strip(), cfg.model.revision, cfg.model.trust_remote_code)


# --------------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything the arithmetic depends on, resolved from a Config and a device."""

    device: str  # cuda | cpu
    compute: str  # bf16 | fp16 | fp32 (resolved, never auto)
    quant: str  # nf4 | fp4 | int8 | none
    double_quant: bool
    lora_r: int
    lora_dropout: float
    lora_targets: tuple[str, ...]
    tokens: int  # tokens in one forward pass (micro-batch)
    seq_len: int  # longest row
    checkpointing: bool
    use_autocast: bool = True  # quant.autocast (false only matters with bf16)

    @property
    def autocast(self) -> bool:
        """The engine runs under torch.autocast on CUDA with bf16/fp16 (bf16 unless quant.autocast is
        off); fp32 and the CPU do not. Mirrors engine.model.resolve_precision."""
        return uses_autocast(self.device, self.compute, self.use_autocast)

    @property
    def dtype_bytes(self) -> int:
        return 4 if self.compute == "fp32" else 2


def uses_autocast(device: str, compute: str, wanted: bool) -> bool:
    """Whether the engine runs its forward passes under torch.autocast: on CUDA with bf16 or fp16,
    unless quant.autocast is off. Off applies to bf16 only: without autocast bitsandbytes and phi keep
    every activation in the weights' dtype, which overflows in fp16."""
    return device == "cuda" and compute != "fp32" and (wanted or compute == "fp16")


def resolve_compute(want: str, device: str, bf16: bool) -> str:
    """Mirror of engine.model.resolve_precision without importing torch."""
    if device == "cpu":
        return "fp32" if want in ("auto", "fp16") else want
    if want == "auto":
        return "bf16" if bf16 else "fp16"
    return want


def lora_targets(cfg: Config, shapes: ModelShapes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(targets found, targets missing), following engine.model.target_modules."""
    from humanlike_tui.engine.model import DEFAULT_TARGETS

    if cfg.lora.target_modules:
        wanted = tuple(cfg.lora.target_modules)
    elif shapes.model_type in DEFAULT_TARGETS:
        wanted = tuple(DEFAULT_TARGETS[shapes.model_type])
    else:
        wanted = tuple(lin.name for lin in shapes.linears)  # peft's "all-linear"
    found = tuple(t for t in wanted if shapes.linear(t) is not None)
    return found, tuple(t for t in wanted if t not in found)


def micro_batch_tokens(cfg: Config, device: str = "cuda") -> int:
    """Tokens in one forward pass: train.micro_batch_tokens if set; else on a GPU the batch at full
    length (batch_size x max_length), and on the CPU the whole step at once, as the engine does there
    (batch_size x grad_accum rows). DPO runs chosen and rejected as one batch of 2n rows: x2."""
    rows_factor = 1 if cfg.train.method == "sft" else 2
    one_row = cfg.data.max_length * rows_factor
    if cfg.train.micro_batch_tokens > 0:
        return max(cfg.train.micro_batch_tokens, one_row)  # the engine always fits at least the longest row
    rows = cfg.train.batch_size * (cfg.train.grad_accum if device == "cpu" else 1)
    return rows * one_row


def settings_for(cfg: Config, shapes: ModelShapes, device: str = "cuda", bf16: bool = True) -> Settings:
    targets, _ = lora_targets(cfg, shapes)
    return Settings(
        device=device, compute=resolve_compute(cfg.quant.compute_dtype, device, bf16),
        quant=cfg.quant.mode, double_quant=cfg.quant.double_quant and cfg.quant.mode in ("nf4", "fp4"),
        lora_r=cfg.lora.r, lora_dropout=cfg.lora.dropout, lora_targets=targets,
        tokens=micro_batch_tokens(cfg, device), seq_len=cfg.data.max_length,
        checkpointing=cfg.model.gradient_checkpointing, use_autocast=cfg.quant.autocast)


# --- fixed memory ---------------------------------------------------------------------------------


def quantized_weight_bytes(shapes: ModelShapes, quant: str, double_quant: bool, dtype_bytes: int) -> int:
    """Bytes of every quantized linear weight (biases are counted with the unquantized weights)."""
    total = 0
    for lin in shapes.linears:
        n = lin.in_features * lin.out_features
        if quant in ("nf4", "fp4"):
            blocks = math.ceil(n / BNB_4BIT_BLOCK)
            if double_quant:  # 8-bit scales + one fp32 scale per 256 of them
                scales = blocks + 4 * math.ceil(blocks / BNB_DQ_BLOCK)
            else:  # one fp32 scale per block
                scales = 4 * blocks
            per = math.ceil(n / 2) + scales  # two 4-bit weights per byte
        elif quant == "int8":
            per = n + 4 * lin.out_features  # int8 weights + one fp32 scale per output row (LLM.int8)
        else:
            per = n * dtype_bytes
        total += per * lin.count
    return total


def lora_params(shapes: ModelShapes, targets: tuple[str, ...], r: int) -> int:
    """A (r x in) and B (out x r) for every targeted linear."""
    total = 0
    for t in targets:
        lin = shapes.linear(t)
        if lin is not None:
            total += r * (lin.in_features + lin.out_features) * lin.count
    return total


# --- activations ----------------------------------------------------------------------------------

# Which tensor feeds each linear: LoRA and int8 save their input, and inputs that share a tensor are
# saved once. "ln" = the (first) norm's output, "ln2" = the second norm's, "attn" = attention output,
# "act" = the MLP activation's output.
_INPUT_SOURCE = {"q_proj": "ln", "k_proj": "ln", "v_proj": "ln", "qkv_proj": "ln", "query_key_value": "ln",
                 "c_attn": "ln", "dense": "attn", "o_proj": "attn", "out_proj": "attn",
                 "fc1": "ln", "gate_proj": "ln2", "up_proj": "ln2", "gate_up_proj": "ln2", "c_fc": "ln2",
                 "fc2": "act", "down_proj": "act", "c_proj": "act"}


def _is_phi(shapes: ModelShapes) -> bool:
    return shapes.model_type == "phi"


def _gated_mlp(shapes: ModelShapes) -> bool:
    return any(lin.name in ("gate_proj", "gate_up_proj") for lin in shapes.linears)


def _mlp_bytes_per_i(shapes: ModelShapes, s: Settings, fp32_stream: bool) -> float:
    """Bytes saved per intermediate unit by the MLP activation.

    gelu_new (phi) is written in Python: pow saves its input, tanh its output, and the final product
    saves 0.5*x and (1+tanh): four I-sized tensors. Under autocast pow runs in fp32, so they are fp32,
    except 0.5*x which stays in the input's dtype (bf16 without bitsandbytes, fp32 with it, because
    bitsandbytes returns the fp32 dtype of its LayerNorm input). A fused gelu saves only its input;
    a gated SiLU saves gate, silu(gate) and up.
    """
    b = s.dtype_bytes
    act = shapes.hidden_act
    if _gated_mlp(shapes):
        return 3 * b
    if act in ("gelu_new", "gelu_fast"):
        if not s.autocast:
            return 4 * b
        return 3 * 4 + (4 if fp32_stream else b)
    if act in ("gelu", "gelu_pytorch_tanh", "relu", "silu", "quick_gelu"):
        return 4 if (s.autocast and fp32_stream) else b
    return 4 * (4 if s.autocast else b)  # unknown activation: assume the python-gelu worst case


def activation_terms(shapes: ModelShapes, s: Settings) -> dict[str, float]:
    """Bytes saved for backward per token and per decoder layer, by what saves them.

    This is the whole layer kept until backward (no checkpointing), or the one layer recomputed in
    backward (with checkpointing). Terms, with h = hidden, I = intermediate, n = heads, r = LoRA rank,
    b = compute dtype bytes:
      norm        LayerNorm saves its input; autocast runs it in fp32 (4h) plus mean and rstd (2 x fp32)
      attention   SDPA saves q, k, v and its output in the compute dtype, and a fp32 log-sum-exp per head
      mask        right-padded batches give SDPA a mask, turned into a (seq x seq) bias per layer
      lora        per adapted linear: its dropout mask (bool on CUDA, a float noise tensor on the CPU),
                  the input lora_A saves, and lora_A's output lora_B saves
      int8 inputs LLM.int8 saves the input of each quantized linear (4-bit saves nothing)
      dropout     phi's residual dropout: a mask for the attention and the MLP output
      mlp         the activation function's saved tensors (see _mlp_bytes_per_i)
    """
    h, i, n = shapes.hidden_size, shapes.intermediate_size, shapes.num_heads
    b = s.dtype_bytes
    phi = _is_phi(shapes)
    quantized = s.quant != "none"
    # With bitsandbytes, phi's linears return the dtype of their fp32 (autocast LayerNorm) input,
    # so the residual stream and the MLP run in fp32 under autocast.
    fp32_stream = s.autocast and phi and quantized
    mask_byte = 1 if s.device == "cuda" else None  # CUDA dropout keeps a bool mask; CPU a noise tensor
    terms: dict[str, float] = {}

    if phi:
        terms["norm"] = (4 * h + 8) if s.autocast else (b * h + 2 * b)
    else:  # RMSNorm-style: two norms, computed in fp32 (saves the fp32 input and the rsqrt)
        terms["norm"] = 2 * (4 * h + 8)

    q_dim = n * shapes.head_dim
    kv_dim = shapes.num_kv_heads * shapes.head_dim
    terms["attention"] = b * (2 * q_dim + 2 * kv_dim) + 4 * n
    seq_pad = math.ceil(min(s.seq_len, s.tokens) / 16) * 16  # SDPA pads the bias's last dim to 16
    terms["mask"] = b * seq_pad

    terms["lora"] = _lora_terms(shapes, s, mask_byte)
    if s.quant == "int8":
        terms["int8 inputs"] = _int8_input_terms(shapes, s)

    if phi and shapes.resid_pdrop > 0:
        per = mask_byte if mask_byte is not None else (4 if fp32_stream else b)
        terms["dropout"] = 2 * h * per

    terms["mlp"] = _mlp_bytes_per_i(shapes, s, fp32_stream) * i
    return terms


def _source_bytes(source: str, shapes: ModelShapes, s: Settings, fp32_stream: bool) -> int:
    """Bytes per element of a linear's input tensor, without any cast."""
    if not s.autocast:
        return s.dtype_bytes
    if source in ("ln", "ln2"):
        return 4 if _is_phi(shapes) else s.dtype_bytes  # autocast LayerNorm outputs fp32; RMSNorm casts back
    if source == "act":
        return 4 if fp32_stream else s.dtype_bytes
    return s.dtype_bytes  # attention output


def _lora_terms(shapes: ModelShapes, s: Settings, mask_byte: int | None) -> float:
    """Per token: what each LoRA adapter saves (see activation_terms).

    Under autocast peft feeds x straight to lora_A, whose linear saves an autocast copy in the compute
    dtype. Without autocast peft first casts x to the adapter's fp32: a new tensor per adapter when x is
    not fp32 already; when it is, adapters that share an input share one saved tensor (the attention
    output reaches dense as a fresh contiguous copy, so it is not shared with what SDPA saves).
    """
    r = s.lora_r
    total = 0.0
    shared: set[str] = set()
    for t in s.lora_targets:
        lin = shapes.linear(t)
        if lin is None:
            continue
        k = lin.in_features
        source = _INPUT_SOURCE.get(t, t)
        if s.autocast:
            saved_in = s.dtype_bytes * k
            if s.lora_dropout > 0:
                saved_in += (mask_byte or 1) * k
            total += saved_in + s.dtype_bytes * r
            continue
        if s.lora_dropout > 0:
            noise = mask_byte * k if mask_byte is not None else LORA_BYTES * k
            total += noise + LORA_BYTES * k + LORA_BYTES * r
        elif s.dtype_bytes != LORA_BYTES:
            total += LORA_BYTES * k + LORA_BYTES * r
        else:
            if source not in shared:
                total += LORA_BYTES * k
            shared.add(source)
            total += LORA_BYTES * r
    return total


def _int8_input_terms(shapes: ModelShapes, s: Settings) -> float:
    fp32_stream = s.autocast and _is_phi(shapes)
    seen: dict[str, int] = {}
    for lin in shapes.linears:
        source = _INPUT_SOURCE.get(lin.name, lin.name)
        seen[source] = max(seen.get(source, 0), lin.in_features * _source_bytes(source, shapes, s, fp32_stream))
    return float(sum(seen.values()))


def checkpoint_bytes_per_token(shapes: ModelShapes, s: Settings) -> int:
    """With checkpointing each layer keeps only its input: the residual stream (fp32 for phi with
    bitsandbytes under autocast, else the compute dtype)."""
    fp32_stream = s.autocast and _is_phi(shapes) and s.quant != "none"
    return shapes.hidden_size * (4 if fp32_stream else s.dtype_bytes)


def backward_temp_bytes_per_token(shapes: ModelShapes, s: Settings) -> int:
    """Gradients alive while one layer runs backward: about three I-sized fp32 tensors in the MLP
    activation's backward and two h-sized ones for the norm and the residual."""
    b = 4 if s.autocast else s.dtype_bytes
    return 3 * b * shapes.intermediate_size + 2 * b * shapes.hidden_size


def final_bytes_per_token(shapes: ModelShapes, s: Settings) -> float:
    """The final norm's saved input, and the answer tokens' hidden states gathered for the head."""
    norm = (4 * shapes.hidden_size + 8) if s.autocast else (s.dtype_bytes * shapes.hidden_size + 2 * s.dtype_bytes)
    return norm + ANSWER_FRACTION * s.dtype_bytes * shapes.hidden_size


def logits_bytes(shapes: ModelShapes, s: Settings) -> int:
    """Logits exist only for answer tokens, one chunk of at most LOGP_CHUNK tokens at a time."""
    answer_tokens = math.ceil(ANSWER_FRACTION * s.tokens)
    return min(answer_tokens, LOGP_CHUNK) * shapes.vocab_size * LOGIT_BYTES


# --- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanItem:
    key: str
    label: str
    bytes: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Suggestion:
    """A concrete change (config key paths -> values) and the peak it would give."""

    changes: dict[str, Any]
    text: str
    peak_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    shapes_source: str
    device: str
    compute_dtype: str
    quant: str
    gradient_checkpointing: bool
    tokens: int  # per forward pass
    seq_len: int
    total_params: int
    quantized_params: int
    trainable_params: int
    items: tuple[PlanItem, ...]  # sum(items) == peak_bytes
    peak_torch_bytes: int  # comparable with torch.cuda.max_memory_reserved() (no CUDA context)
    peak_bytes: int  # what the process needs from the device (with the CUDA context), or RAM on the CPU
    available_bytes: int | None
    available_source: str
    verdict: str  # fits | tight | does not fit | unknown
    suggestions: tuple[Suggestion, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def headroom_bytes(self) -> int | None:
        return None if self.available_bytes is None else self.available_bytes - self.peak_bytes

    def item(self, key: str) -> int:
        return next((it.bytes for it in self.items if it.key == key), 0)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["items"] = [it.to_dict() for it in self.items]
        d["suggestions"] = [sg.to_dict() for sg in self.suggestions]
        d["notes"] = list(self.notes)
        d["headroom_bytes"] = self.headroom_bytes
        return d


def estimate_items(shapes: ModelShapes, s: Settings) -> list[PlanItem]:
    """The peak of one training step, item by item (sum = peak)."""
    b = s.dtype_bytes
    cuda = s.device == "cuda"
    p_lora = lora_params(shapes, s.lora_targets, s.lora_r)
    layers = shapes.num_layers
    t = s.tokens
    items = [
        PlanItem("base_weights", f"base weights ({s.quant})",
                 quantized_weight_bytes(shapes, s.quant, s.double_quant, b),
                 f"{shapes.quantized_params:,} linear weights"),
        PlanItem("unquantized_weights", f"embeddings, lm_head, norms, biases ({s.compute})",
                 shapes.unquantized_params * b, f"{shapes.unquantized_params:,} params"),
        PlanItem("lora_weights", "LoRA weights (fp32)", p_lora * LORA_BYTES, f"{p_lora:,} params"),
        PlanItem("lora_grads", "LoRA gradients (fp32)", p_lora * LORA_GRAD_BYTES),
        PlanItem("optimizer", "AdamW state (fp32 m and v)", p_lora * ADAMW_BYTES),
    ]
    if s.autocast:
        items.append(PlanItem("lora_autocast", f"LoRA weights cast to {s.compute} (autocast cache)", p_lora * b))
    if s.quant != "none":
        items.append(PlanItem("dequant_buffer", "one dequantized weight (matmul/backward)",
                              shapes.largest_linear * b))
    if cuda:
        items.append(PlanItem("workspace", "cuBLAS workspace, masks, rotary tables", CUDA_WORKSPACE_BYTES))

    per_layer = sum(activation_terms(shapes, s).values())
    final = round(final_bytes_per_token(shapes, s) * t)
    logits = logits_bytes(shapes, s)
    # After the forward pass, backward first runs the head (logits chunk, with the final norm's input
    # still saved), then the layers from the last (one layer's gradients; with checkpointing also that
    # layer recomputed). The step's peak is the larger of the two moments on top of what layers keep.
    if s.checkpointing:
        kept = PlanItem("activations", f"layer checkpoints ({layers} layers x {t:,} tokens)",
                        round(checkpoint_bytes_per_token(shapes, s) * t * layers))
        layer_moment = PlanItem("recompute", "one layer recomputed in backward + its gradients",
                                round(per_layer * t + backward_temp_bytes_per_token(shapes, s) * t))
    else:
        kept = PlanItem("activations", f"saved activations ({layers} layers x {t:,} tokens)",
                        round(per_layer * t * layers))
        layer_moment = PlanItem("backward", "gradients of one layer in backward",
                                round(backward_temp_bytes_per_token(shapes, s) * t))
    items.append(kept)
    if logits + final >= layer_moment.bytes:
        items.append(PlanItem("logits", "logits of one answer chunk (fp32, forward + backward)", logits,
                              f"{min(math.ceil(ANSWER_FRACTION * t), LOGP_CHUNK):,} tokens x {shapes.vocab_size:,}"))
        items.append(PlanItem("final", "final norm input, answer hidden states", final))
    else:
        items.append(dataclasses.replace(layer_moment, note=f"larger than the logits chunk ({logits / MiB:,.0f} MiB)"))
    dynamic = sum(it.bytes for it in items if it.key in ("activations", "logits", "recompute", "backward", "final"))
    if cuda:
        items.append(PlanItem("slack", f"allocator slack ({ALLOCATOR_SLACK:.0%} of the activations)",
                              round(ALLOCATOR_SLACK * dynamic)))
        items.append(PlanItem("cuda_context", "CUDA context (outside torch's allocator)", CUDA_CONTEXT_BYTES))
    else:
        items.append(PlanItem("runtime", "Python, torch, transformers (process memory)", CPU_RUNTIME_BYTES))
    return items


def peak_of(shapes: ModelShapes, s: Settings) -> int:
    return sum(it.bytes for it in estimate_items(shapes, s))


def verdict_for(peak: int, available: int | None) -> str:
    if available is None:
        return "unknown"
    if peak * (1 + FIT_MARGIN) <= available:
        return "fits"
    if peak <= available:
        return "tight"
    return "does not fit"


def plan_memory(cfg: Config, *, device: str = "cuda", available_bytes: int | None = None, bf16: bool = True,
                available_source: str = "", shapes: ModelShapes | None = None) -> MemoryPlan:
    """The memory plan for `cfg` on `device` (cuda or cpu).

    available_bytes: free device memory (the driver's view, before our process starts), or free RAM on
    the CPU; None gives verdict "unknown" and no suggestions. bf16: whether the GPU supports it (decides
    quant.compute_dtype = auto). shapes: pass to avoid re-reading the model's config.
    """
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    shapes = shapes or load_model_shapes(cfg)
    s = settings_for(cfg, shapes, device, bf16)
    items = estimate_items(shapes, s)
    peak = sum(it.bytes for it in items)
    verdict = verdict_for(peak, available_bytes)
    _, missing = lora_targets(cfg, shapes)
    notes = _notes(cfg, shapes, s, missing)
    suggestions = (tuple(_suggestions(cfg, shapes, s, peak, available_bytes, verdict))
                   if available_bytes is not None else ())
    context = next((it.bytes for it in items if it.key in ("cuda_context", "runtime")), 0)
    return MemoryPlan(
        model=cfg.model.name, shapes_source=shapes.source, device=device, compute_dtype=s.compute,
        quant=s.quant, gradient_checkpointing=s.checkpointing, tokens=s.tokens, seq_len=s.seq_len,
        total_params=shapes.total_params, quantized_params=shapes.quantized_params if s.quant != "none" else 0,
        trainable_params=lora_params(shapes, s.lora_targets, s.lora_r),
        items=tuple(items), peak_torch_bytes=peak - context, peak_bytes=peak,
        available_bytes=available_bytes, available_source=available_source, verdict=verdict,
        suggestions=suggestions, notes=notes)


def plan_for_hardware(cfg: Config, report: Any, gpu_index: int = 0, vram_bytes: int | None = None,
                      shapes: ModelShapes | None = None) -> MemoryPlan:
    """Plan against what the hardware report found: GPU `gpu_index`'s free memory when torch can use
    CUDA, else the CPU and its available RAM. `vram_bytes` plans for a GPU of that size instead (e.g.
    "would this fit on my 8 GB card?" from a machine without one); bf16 is then assumed."""
    if vram_bytes is not None:
        return plan_memory(cfg, device="cuda", available_bytes=vram_bytes, bf16=True, shapes=shapes,
                           available_source=f"a GPU with {vram_bytes / GiB:.1f} GiB free (--vram)")
    if report.cuda_available:
        free = report.free_memory(gpu_index)
        name = next((g.name for g in report.gpus if g.index == gpu_index), f"GPU {gpu_index}")
        source = f"GPU {gpu_index} ({name}) free memory, driver's view"
        if free is None:  # NVML could not tell (no NVML in some containers): ask CUDA itself
            free, source = _cuda_free(gpu_index), f"GPU {gpu_index} free memory, CUDA's view"
        return plan_memory(cfg, device="cuda", available_bytes=free, bf16=report.bf16, shapes=shapes,
                           available_source=source)
    return plan_memory(cfg, device="cpu", available_bytes=report.system.ram_available, shapes=shapes,
                       available_source="available RAM (no usable GPU: training runs on the CPU)")


def _cuda_free(index: int) -> int | None:
    """Free bytes from the CUDA runtime. This creates our CUDA context, so its ~400 MB are already
    taken from what it reports; acceptable here because training would create it anyway."""
    try:
        import torch

        free, _total = torch.cuda.mem_get_info(index)
        return int(free) + CUDA_CONTEXT_BYTES
    except Exception:  # noqa: BLE001 - an index that does not exist, a driver error
        return None


def _notes(cfg: Config, shapes: ModelShapes, s: Settings, missing: tuple[str, ...]) -> tuple[str, ...]:
    if cfg.train.micro_batch_tokens:
        source = "train.micro_batch_tokens"
    elif s.device == "cpu":
        source = "train.batch_size x train.grad_accum x data.max_length: the CPU takes a whole step at once"
    else:
        source = "train.batch_size x data.max_length"
    notes = [f"Shapes from {shapes.source}; one forward pass = {s.tokens:,} tokens ({source}"
             f"{', x2 for chosen + rejected' if cfg.train.method != 'sft' else ''}), rows up to {s.seq_len} tokens."]
    if cfg.train.micro_batch_tokens == 0 and s.device == "cuda":
        limit = (f"train.vram_limit_gib = {cfg.train.vram_limit_gib:g} GiB" if cfg.train.vram_limit_gib
                 else "at most 7.5 GiB; raise train.vram_limit_gib on a bigger card")
        notes.append("train.micro_batch_tokens = 0: the engine sizes the forward pass to the free VRAM when it "
                     f"starts ({limit}); this plan assumes the whole batch in one pass (the worst case).")
    if missing:
        notes.append(f"lora.target_modules: {', '.join(missing)} not found in this model; not counted "
                     "(training would stop with an error).")
    if shapes.model_type != "phi":
        notes.append(f"Activation terms are checked for phi models; for {shapes.model_type or 'this model'} "
                     "they are an approximation.")
    if s.quant == "int8":
        notes.append("int8 (LLM.int8) saves the input of every quantized linear and is slower than nf4.")
    if s.device == "cpu":
        notes.append("CPU: compared with available RAM; the engine computes in fp32 on the CPU.")
    return tuple(notes)


# --- suggestions ------------------------------------------------------------------------------------


def _fits(peak: int, available: int) -> bool:
    return peak * (1 + FIT_MARGIN) <= available


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """Largest x in [lo, hi] with ok(x), for ok monotone (true up to a point); None if ok(lo) fails."""
    if not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def _suggestions(cfg: Config, shapes: ModelShapes, s: Settings, peak: int, available: int,
                 verdict: str) -> list[Suggestion]:
    """Fixes in the order people should try them: checkpointing, nf4, then fewer tokens per pass,
    then shorter rows. Each later fix builds on the earlier ones that were not enough on their own."""
    out: list[Suggestion] = []
    if verdict == "fits":
        if s.checkpointing and s.device == "cuda":
            alt = peak_of(shapes, dataclasses.replace(s, checkpointing=False))
            if _fits(alt, available):
                out.append(Suggestion({"model.gradient_checkpointing": False},
                                      f"Room to spare: model.gradient_checkpointing = false would also fit "
                                      f"({_gib(alt)}) and train faster.", alt))
        return out
    base, base_changes = s, {}
    if not s.checkpointing:
        base = dataclasses.replace(s, checkpointing=True)
        base_changes = {"model.gradient_checkpointing": True}
        alt = peak_of(shapes, base)
        out.append(Suggestion(dict(base_changes), f"Turn on model.gradient_checkpointing: peak {_gib(peak)} -> "
                                                  f"{_gib(alt)} ({CHECKPOINTING_SLOWDOWN}).", alt))
        if _fits(alt, available):
            # Enough alone; fewer tokens per pass is the alternative that keeps the speed.
            out += _token_suggestions(cfg, shapes, s, available, {}, allow_shorter_rows=False)
            return out
    if s.quant in ("int8", "none"):
        changes = {**base_changes, "quant.mode": "nf4", "quant.double_quant": True}
        base = dataclasses.replace(base, quant="nf4", double_quant=True)
        alt = peak_of(shapes, base)
        also = " with checkpointing on" if base_changes else ""
        out.append(Suggestion(changes, f"Use quant.mode = 'nf4' instead of {s.quant!r}{also}: peak {_gib(peak)} -> "
                                       f"{_gib(alt)}.", alt))
        base_changes = changes
        if _fits(alt, available):
            return out
    out += _token_suggestions(cfg, shapes, base, available, base_changes, allow_shorter_rows=True)
    return out


def _token_suggestions(cfg: Config, shapes: ModelShapes, s: Settings, available: int, changes: dict[str, Any],
                       allow_shorter_rows: bool) -> list[Suggestion]:
    """Fewer tokens per forward pass (same maths: the engine accumulates), or else shorter rows;
    `changes` are earlier fixes these build on."""
    rows_factor = 1 if cfg.train.method == "sft" else 2
    one_row = s.seq_len * rows_factor
    first = "Together with the change above, " if changes else ""
    out: list[Suggestion] = []

    def fits_tokens(tokens: int) -> bool:
        return _fits(peak_of(shapes, dataclasses.replace(s, tokens=tokens)), available)

    best = _largest(one_row, max(one_row, s.tokens - 1), fits_tokens)
    if best is not None:
        rows = best // one_row
        if cfg.train.micro_batch_tokens == 0 and rows < cfg.train.batch_size:
            samples = cfg.train.batch_size * cfg.train.grad_accum
            accum = math.ceil(samples / rows)
            alt = peak_of(shapes, dataclasses.replace(s, tokens=rows * one_row))
            out.append(Suggestion({**changes, "train.batch_size": rows, "train.grad_accum": accum},
                                  f"{first}{'l' if first else 'L'}ower train.batch_size to {rows} and raise "
                                  f"train.grad_accum to {accum} (about the same samples per step): "
                                  f"peak -> {_gib(alt)}.", alt))
        best = max(one_row, best // 64 * 64)  # a round number; still fits (peak grows with tokens)
        alt = peak_of(shapes, dataclasses.replace(s, tokens=best))
        out.append(Suggestion({**changes, "train.micro_batch_tokens": best},
                              f"{first}{'s' if first else 'S'}et train.micro_batch_tokens = {best} (each step is split "
                              f"into passes of at most that many tokens; the maths stays the same): "
                              f"peak -> {_gib(alt)}.", alt))
        return out
    if not allow_shorter_rows:
        return out

    # Not even one row of data.max_length fits: shorten the rows.
    def fits_length(length: int) -> bool:
        return _fits(peak_of(shapes, dataclasses.replace(s, seq_len=length, tokens=length * rows_factor)), available)

    length = _largest(16, s.seq_len - 1, fits_length) if s.seq_len > 16 else None
    if length is not None:
        alt = peak_of(shapes, dataclasses.replace(s, seq_len=length, tokens=length * rows_factor))
        out.append(Suggestion({**changes, "data.max_length": length, "train.micro_batch_tokens": length * rows_factor},
                              f"{first}{'l' if first else 'L'}ower data.max_length to {length} (longer rows are "
                              f"dropped), one row per pass: peak -> {_gib(alt)}.", alt))
    else:
        smallest = peak_of(shapes, dataclasses.replace(s, seq_len=16, tokens=16 * rows_factor))
        out.append(Suggestion({}, f"Even 16-token rows need {_gib(smallest)}: this model does not fit here; "
                                  "choose a smaller model or a GPU with more memory.", smallest))
    return out


# --------------------------------------------------------------------------------------------------
# Measured check
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeakCheck:
    """A few real training steps next to the estimate for exactly the passes they ran."""

    device: str
    steps: int
    measured_bytes: int  # CUDA: torch.cuda.max_memory_reserved(); CPU: the process's peak RSS
    estimated_bytes: int  # the comparable estimate: torch's share on CUDA, the whole process on the CPU
    seq_len: int  # longest row in the data (what the estimate used)
    tokens: int  # tokens per pass the estimate used (the engine's budget, or less if the steps hold less)
    budget_reduced: bool  # the engine ran out of memory and halved its budget
    run_id: str

    @property
    def error(self) -> float:
        """measured / estimated - 1: +0.10 means the real peak was 10% above the estimate."""
        return self.measured_bytes / max(1, self.estimated_bytes) - 1

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "error": round(self.error, 4)}


def measurement_config(cfg: Config, steps: int, device: str) -> Config:
    """The config for a memory check: a few steps, no evaluation, samples or periodic checkpoints, the
    token budget fixed to the plan's (so estimate and engine agree on the pass size), and the DPO
    phase of sft+dpo (its passes hold chosen + rejected: the larger peak)."""
    values: dict[str, Any] = {
        "train.max_steps": steps, "train.warmup_steps": 0, "train.eval_every": 0, "train.sample_prompts": 0,
        "train.save_every": 0, "data.eval_fraction": 0.0, "train.micro_batch_tokens": micro_batch_tokens(cfg, device)}
    if cfg.train.method == "sft+dpo":
        values["train.method"] = "dpo"
        values["train.micro_batch_tokens"] = micro_batch_tokens(cfg.replace(**{"train.method": "dpo"}), device)
    return cfg.replace(**values)


def measure_peak(cfg: Config, steps: int = 3, *, emit: Callable[[Any], None] | None = None,
                 stop: Any = None, keep_run: bool = False) -> PeakCheck:
    """Run `steps` real optimizer steps through the engine and compare its peak with the estimate.

    Loads the model for real (minutes for a hub model). The run is deleted afterwards unless
    keep_run. Raises what run_training raises (InputError for bad input, TrainingError otherwise).
    """
    import torch

    from humanlike_tui.engine import store
    from humanlike_tui.engine.train import run_training
    from humanlike_tui.events import BatchReduced, DataReport, RunStarted

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    mcfg = measurement_config(cfg, steps, device)
    seen: dict[str, Any] = {"budget": mcfg.train.micro_batch_tokens, "reduced": False, "run_id": "", "longest": 0}

    def listen(event: Any) -> None:
        if isinstance(event, RunStarted):
            seen["run_id"] = event.run_id
        elif isinstance(event, DataReport):
            seen["longest"] = event.tokens_max
        elif isinstance(event, BatchReduced):
            seen["budget"], seen["reduced"] = event.new_tokens, True
        if emit is not None:
            emit(event)

    try:
        result = run_training(mcfg, listen, stop)
    finally:
        if seen["run_id"] and not keep_run:
            _delete_quietly(store, seen["run_id"])
    measured = int(result.summary.get("peak_memory_bytes", 0))
    shapes = load_model_shapes(mcfg)
    rows_factor = 1 if mcfg.train.method == "sft" else 2
    seq = max(1, min(seen["longest"] or mcfg.data.max_length, mcfg.data.max_length))
    rows_per_step = mcfg.train.batch_size * mcfg.train.grad_accum
    tokens = min(seen["budget"], rows_per_step * seq * rows_factor)
    s = dataclasses.replace(settings_for(mcfg, shapes, device, bf16), seq_len=seq, tokens=tokens)
    items = estimate_items(shapes, s)
    context = sum(it.bytes for it in items if it.key == "cuda_context")
    return PeakCheck(device=device, steps=int(result.summary.get("steps", steps)), measured_bytes=measured,
                     estimated_bytes=sum(it.bytes for it in items) - context, seq_len=seq, tokens=tokens,
                     budget_reduced=seen["reduced"], run_id=result.run_id)


def _delete_quietly(store: Any, run_id: str) -> None:
    """A leftover check run is clutter, not an error worth hiding the measurement for."""
    try:
        store.delete_run(run_id)
    except Exception:  # noqa: BLE001
        pass
