"""The memory model of one training step: weights, LoRA, optimizer, activations, logits, per token.
Pure arithmetic on ModelShapes and Settings; `humanlike-tui hw` and the engine's pass planner share it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any
from humanlike_tui.config import Config
from humanlike_tui.engine.planning.shapes import MiB, ModelShapes
from humanlike_tui.engine.models.precision import resolve_compute, uses_autocast


# --- constants of the model of memory (each explained; see docs/vram-planning.md) ------------------
BNB_4BIT_BLOCK = 64  # bitsandbytes 4-bit: one absmax scale per 64 weights


BNB_DQ_BLOCK = 256  # double quant: the 8-bit scales get one fp32 scale per 256 of them


LORA_BYTES = 4  # peft keeps adapter weights in fp32 (autocast_adapter_dtype)


LORA_GRAD_BYTES = 4  # gradients have the parameters' dtype


ADAMW_BYTES = 8  # exp_avg + exp_avg_sq, fp32 each


ANSWER_FRACTION = 0.6  # share of tokens that are answer tokens: the engine computes logits only for those


LOGP_CHUNK = 2048  # the engine applies lm_head in chunks of at most this many tokens (engine/logprobs.py)
# ... and of at most this many bytes of fp32 logits per chunk: a 150k-262k vocabulary (Qwen, Gemma) would
# otherwise hold 1.2-2 GiB per chunk (x3 with backward); phi-2's 51k vocabulary keeps 2048 tokens.
LOGP_CHUNK_BYTES = 512 * 2**20


def logits_chunk_tokens(vocab_size: int) -> int:
    """Tokens per lm_head chunk for this vocabulary: LOGP_CHUNK, fewer for a large vocabulary."""
    return max(64, min(LOGP_CHUNK, LOGP_CHUNK_BYTES // (4 * max(1, vocab_size))))


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
        off); fp32 and the CPU do not. Mirrors models.precision.resolve_precision."""
        return uses_autocast(self.device, self.compute, self.use_autocast)

    @property
    def dtype_bytes(self) -> int:
        return 4 if self.compute == "fp32" else 2


def lora_targets(cfg: Config, shapes: ModelShapes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(targets found, targets missing), following models.lora.target_modules."""
    from humanlike_tui.engine.models.architectures import DEFAULT_TARGETS

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
    """Logits exist only for answer tokens, one chunk (logits_chunk_tokens) at a time."""
    answer_tokens = math.ceil(ANSWER_FRACTION * s.tokens)
    return min(answer_tokens, logits_chunk_tokens(shapes.vocab_size)) * shapes.vocab_size * LOGIT_BYTES


@dataclass(frozen=True)
class PlanItem:
    key: str
    label: str
    bytes: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
                              f"{min(math.ceil(ANSWER_FRACTION * t), logits_chunk_tokens(shapes.vocab_size)):,} tokens x "
                              f"{shapes.vocab_size:,}"))
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
