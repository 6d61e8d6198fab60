"""The VRAM plan: shapes from configs only, the arithmetic against numbers worked out by hand for
phi-2, the verdicts and suggestions, the offline paths, and the activation model checked tensor by
tensor against what autograd really saves (CPU path)."""

from __future__ import annotations

import math

import pytest

from humanlike_tui.config import load_preset
from humanlike_tui.engine import planning as memory
from humanlike_tui.engine.planning.shapes import GiB, MiB
from humanlike_tui.engine.planning.advice import plan_memory
from humanlike_tui.errors import ModelError
from humanlike_tui.engine.models import precision as precision_mod
from humanlike_tui.engine.planning import shapes as shapes_mod

# ---- phi-2, by hand ------------------------------------------------------------------------------
# microsoft/phi-2: vocab V, hidden h, intermediate I, L layers, n heads of 80 dims, every linear has a
# bias, one LayerNorm (weight + bias) per layer and a final one, untied lm_head with a bias.
V, H, I, L, N = 51200, 2560, 10240, 32, 32
R = 16  # lora.r in the presets
EMBED = V * H
PER_LAYER_LINEAR_WEIGHTS = 4 * H * H + 2 * H * I  # q, k, v, dense (h x h); fc1, fc2 (h x I)
PER_LAYER_OTHER = (4 * H + I + H) + 2 * H  # the six biases + LayerNorm
LM_HEAD = H * V + V
TOTAL = EMBED + L * (PER_LAYER_LINEAR_WEIGHTS + PER_LAYER_OTHER) + 2 * H + LM_HEAD
QUANTIZED = L * PER_LAYER_LINEAR_WEIGHTS
# nf4 with double quant, per weight: 4 bits, + one 8-bit scale per 64 weights, + one fp32 scale per
# 256 of those scales. Every phi-2 matrix divides evenly, so no rounding.
NF4_DQ_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
LORA = L * 4 * R * (H + H)  # A and B on q, k, v, dense
BF16 = 2


def phi2_per_token_per_layer(seq: int) -> int:
    """Bytes autograd saves per token in one phi-2 layer, CUDA + bf16 autocast + nf4 + LoRA dropout."""
    norm = 4 * H + 8  # autocast runs LayerNorm in fp32: saves the fp32 input + mean and rstd
    attention = BF16 * 4 * H + 4 * N  # SDPA saves q, k, v, out (bf16) + fp32 log-sum-exp per head
    mask = BF16 * seq  # padded batches: a (seq x seq) bias per layer, i.e. seq per token
    lora = 4 * (1 * H + BF16 * H + BF16 * R)  # per adapter: bool dropout mask, bf16 input copy, A's output
    dropout = 2 * H * 1  # phi's resid_pdrop = 0.1: two bool masks
    mlp = 16 * I  # gelu_new in fp32 (bitsandbytes returns its fp32 input dtype): x, tanh, 0.5x, 1+tanh
    return norm + attention + mask + lora + dropout + mlp


def phi2_expected_peak(seq: int, batch: int, checkpointing: bool) -> int:
    tokens = seq * batch
    fixed = (QUANTIZED * NF4_DQ_BYTES_PER_PARAM  # 4-bit linears
             + (TOTAL - QUANTIZED) * BF16  # embeddings, lm_head, norms, biases stay bf16
             + LORA * (4 + 4 + 8 + BF16)  # fp32 weights, fp32 grads, AdamW m + v, autocast bf16 copy
             + H * I * BF16  # one dequantized weight (the biggest: fc1/fc2)
             + 64 * MiB)  # cuBLAS workspace etc.
    answer = math.ceil(0.6 * tokens)  # logits only for answer tokens (~60%) ...
    logits = min(answer, 2048) * V * 12  # ... in chunks of 2048; 12 bytes per logit at the chunk's peak
    final = (4 * H + 8 + 0.6 * BF16 * H) * tokens  # final LayerNorm input (fp32) + answer hidden states
    backward = (3 * 4 * I + 2 * 4 * H) * tokens  # one layer's fp32 gradients in backward
    if checkpointing:
        kept = 4 * H * tokens * L  # each layer's input, fp32 residual stream
        moment = max(logits + final, phi2_per_token_per_layer(seq) * tokens + backward)
    else:
        kept = phi2_per_token_per_layer(seq) * tokens * L
        moment = max(logits + final, backward)
    dynamic = kept + moment
    return round(fixed + dynamic * 1.10 + 400 * MiB)  # 10% allocator slack, CUDA context


def phi2_cfg(seq: int, batch: int, checkpointing: bool = True, **more):
    values = {"data.max_length": seq, "train.batch_size": batch, "model.gradient_checkpointing": checkpointing}
    values.update(more)
    return load_preset("gaming-8gb").replace(**values)


@pytest.fixture(scope="module")
def phi2_shapes():
    # builtin:phi-2-random has phi-2's exact shapes and needs no network.
    return memory.load_model_shapes(load_preset("gaming-8gb").replace(**{"model.name": "builtin:phi-2-random"}))


def test_phi2_shapes_match_the_architecture(phi2_shapes):
    assert phi2_shapes.total_params == TOTAL == 2_779_683_840  # phi-2's published 2.78B
    assert phi2_shapes.quantized_params == QUANTIZED
    assert phi2_shapes.unquantized_params == TOTAL - QUANTIZED  # lm_head stays unquantized
    assert {lin.name: (lin.in_features, lin.out_features, lin.count) for lin in phi2_shapes.linears} == {
        "q_proj": (H, H, L), "k_proj": (H, H, L), "v_proj": (H, H, L), "dense": (H, H, L),
        "fc1": (H, I, L), "fc2": (I, H, L)}
    assert phi2_shapes.head_dim == 80 and phi2_shapes.hidden_act == "gelu_new"


def test_weight_bytes_by_quantization(phi2_shapes):
    q = memory.quantized_weight_bytes
    assert q(phi2_shapes, "nf4", True, 2) == QUANTIZED * NF4_DQ_BYTES_PER_PARAM  # ~0.516 byte/param
    assert q(phi2_shapes, "nf4", False, 2) == QUANTIZED * (0.5 + 4 / 64)  # fp32 scale per 64 weights
    rows = L * (4 * H + I + H)  # output rows of q, k, v, dense, fc1, fc2
    assert q(phi2_shapes, "int8", False, 2) == QUANTIZED + 4 * rows  # int8 + one fp32 scale per row
    assert q(phi2_shapes, "none", False, 2) == QUANTIZED * 2


@pytest.mark.parametrize("seq,checkpointing", [(256, True), (256, False), (1024, True), (1024, False)])
def test_phi2_nf4_peak_matches_the_hand_computation(phi2_shapes, seq, checkpointing):
    plan = plan_memory(phi2_cfg(seq, 4, checkpointing), device="cuda", bf16=True, shapes=phi2_shapes)
    assert plan.compute_dtype == "bf16" and plan.tokens == 4 * seq
    assert plan.trainable_params == LORA == 10_485_760
    assert plan.peak_bytes == pytest.approx(phi2_expected_peak(seq, 4, checkpointing), abs=4)
    assert sum(it.bytes for it in plan.items) == plan.peak_bytes
    assert plan.peak_torch_bytes == plan.peak_bytes - 400 * MiB  # what torch.cuda.max_memory_reserved sees


def test_which_moment_is_the_peak(phi2_shapes):
    # 1,024 tokens: the logits chunk (615 answer tokens) outweighs one recomputed layer ...
    short = plan_memory(phi2_cfg(256, 4), shapes=phi2_shapes)
    assert short.item("logits") == 615 * V * 12 and short.item("recompute") == 0
    # ... at 4,096 tokens the chunk is capped at 2,048 tokens and the recomputed layer wins.
    long = plan_memory(phi2_cfg(1024, 4), shapes=phi2_shapes)
    assert long.item("logits") == 0 and long.item("recompute") > 2048 * V * 12


def test_checkpointing_saves_most_activation_memory(phi2_shapes):
    on = plan_memory(phi2_cfg(512, 8, True), shapes=phi2_shapes)
    off = plan_memory(phi2_cfg(512, 8, False), shapes=phi2_shapes)
    assert on.item("activations") * 20 < off.item("activations")
    assert on.peak_bytes < 7 * GiB < off.peak_bytes


def test_micro_batch_tokens_and_dpo():
    cfg = phi2_cfg(512, 8)
    assert memory.micro_batch_tokens(cfg) == 8 * 512
    assert memory.micro_batch_tokens(cfg.replace(**{"train.micro_batch_tokens": 1024})) == 1024
    # never below one row: the engine always fits the longest row
    assert memory.micro_batch_tokens(cfg.replace(**{"train.micro_batch_tokens": 100})) == 512
    dpo = cfg.replace(**{"train.method": "dpo"})
    assert memory.micro_batch_tokens(dpo) == 2 * 8 * 512  # chosen + rejected in one batch
    # the engine on the CPU runs the whole step (batch_size x grad_accum rows) in one pass
    assert memory.micro_batch_tokens(cfg, device="cpu") == 8 * 2 * 512


def test_compute_dtype_resolution():
    assert precision_mod.resolve_compute("auto", "cuda", bf16=True) == "bf16"
    assert precision_mod.resolve_compute("auto", "cuda", bf16=False) == "fp16"  # Turing
    assert precision_mod.resolve_compute("auto", "cpu", bf16=True) == "fp32"
    assert precision_mod.resolve_compute("bf16", "cpu", bf16=False) == "bf16"


def test_autocast_off_keeps_phi2_activations_in_bf16(phi2_shapes):
    # Under autocast, LayerNorm runs in fp32 and bitsandbytes hands back its input's dtype, so phi's
    # MLP and residual stream run in fp32; quant.autocast = false keeps them in bf16.
    on = plan_memory(phi2_cfg(512, 8, False), shapes=phi2_shapes)
    off = plan_memory(phi2_cfg(512, 8, False, **{"quant.autocast": False}), shapes=phi2_shapes)
    assert off.item("activations") < 0.75 * on.item("activations")
    # fp16 always runs under autocast (its activations would overflow): the flag changes nothing there.
    fp16_on = plan_memory(phi2_cfg(512, 8, False, **{"quant.compute_dtype": "fp16"}), shapes=phi2_shapes)
    fp16_off = plan_memory(phi2_cfg(512, 8, False, **{"quant.compute_dtype": "fp16", "quant.autocast": False}),
                           shapes=phi2_shapes)
    assert fp16_off.peak_bytes == fp16_on.peak_bytes


def test_precision_resolution_mirrors_the_memory_plan():
    from humanlike_tui.engine.models.precision import resolve_precision

    cfg = load_preset("gaming-8gb")
    bf16 = cfg.replace(**{"quant.compute_dtype": "bf16"})
    assert resolve_precision(bf16, "cuda").autocast
    assert not resolve_precision(bf16.replace(**{"quant.autocast": False}), "cuda").autocast
    fp16 = cfg.replace(**{"quant.compute_dtype": "fp16", "quant.autocast": False})
    assert resolve_precision(fp16, "cuda").autocast and resolve_precision(fp16, "cuda").needs_scaler
    assert not resolve_precision(bf16, "cpu").autocast  # the CPU never uses autocast
    for c in (bf16, bf16.replace(**{"quant.autocast": False}), fp16):
        s = memory.settings_for(c, memory.load_model_shapes(c.replace(**{"model.name": "builtin:phi-2-random"})))
        assert s.autocast == resolve_precision(c, "cuda").autocast


# ---- verdicts and suggestions --------------------------------------------------------------------


def test_verdict_thresholds():
    assert memory.verdict_for(100, None) == "unknown"
    assert memory.verdict_for(100, 115) == "fits"  # 15% headroom: the estimate's error goal
    assert memory.verdict_for(100, 114) == "tight"
    assert memory.verdict_for(100, 100) == "tight"
    assert memory.verdict_for(101, 100) == "does not fit"


def test_does_not_fit_suggests_checkpointing_and_each_suggestion_is_true(phi2_shapes):
    cfg = phi2_cfg(512, 8, checkpointing=False)
    plan = plan_memory(cfg, available_bytes=8 * GiB, shapes=phi2_shapes)
    assert plan.verdict == "does not fit"
    assert "model.gradient_checkpointing" in plan.suggestions[0].changes
    for sg in plan.suggestions:
        if not sg.changes:
            continue
        after = plan_memory(cfg.replace(**sg.changes), available_bytes=8 * GiB, shapes=phi2_shapes)
        assert after.peak_bytes == sg.peak_bytes  # the suggestion states the real new peak
        assert after.verdict == "fits", sg.text


def test_smaller_micro_batch_is_suggested_when_checkpointing_is_not_enough(phi2_shapes):
    cfg = phi2_cfg(512, 8, checkpointing=True)
    plan = plan_memory(cfg, available_bytes=5 * GiB, shapes=phi2_shapes)
    assert plan.verdict != "fits"
    keys = [tuple(sorted(sg.changes)) for sg in plan.suggestions]
    assert ("train.batch_size", "train.grad_accum") in keys and ("train.micro_batch_tokens",) in keys
    for sg in plan.suggestions:
        after = plan_memory(cfg.replace(**sg.changes), available_bytes=5 * GiB, shapes=phi2_shapes)
        assert after.verdict == "fits"
        if "train.batch_size" in sg.changes:  # about the same samples per optimizer step
            assert sg.changes["train.batch_size"] * sg.changes["train.grad_accum"] >= 16


def test_int8_suggests_nf4(phi2_shapes):
    cfg = phi2_cfg(512, 8, **{"quant.mode": "int8", "quant.double_quant": False})
    plan = plan_memory(cfg, available_bytes=6 * GiB, shapes=phi2_shapes)
    nf4 = [sg for sg in plan.suggestions if sg.changes.get("quant.mode") == "nf4"]
    assert nf4 and nf4[0].peak_bytes < plan.peak_bytes


def test_too_long_rows_suggest_a_shorter_max_length(phi2_shapes):
    cfg = phi2_cfg(4096, 1, checkpointing=True)
    plan = plan_memory(cfg, available_bytes=int(3.2 * GiB), shapes=phi2_shapes)
    (sg,) = [sg for sg in plan.suggestions if "data.max_length" in sg.changes]
    assert 16 <= sg.changes["data.max_length"] < 4096
    assert plan_memory(cfg.replace(**sg.changes), available_bytes=int(3.2 * GiB), shapes=phi2_shapes).verdict == "fits"


def test_roomy_gpu_offers_turning_checkpointing_off(phi2_shapes):
    plan = plan_memory(phi2_cfg(256, 4), available_bytes=80 * GiB, shapes=phi2_shapes)
    assert plan.verdict == "fits"
    assert plan.suggestions[0].changes == {"model.gradient_checkpointing": False}


def test_plan_to_dict_is_json_ready(phi2_shapes):
    import json

    d = json.loads(json.dumps(plan_memory(phi2_cfg(256, 4), available_bytes=8 * GiB, shapes=phi2_shapes).to_dict()))
    assert {"peak_bytes", "peak_torch_bytes", "verdict", "items", "suggestions", "notes"} <= d.keys()


# ---- shapes from configs, offline ----------------------------------------------------------------


def test_tiny_phi_shapes_come_from_the_engine():
    shapes = memory.load_model_shapes(load_preset("demo"))
    assert shapes.source == "builtin"
    assert (shapes.vocab_size, shapes.hidden_size, shapes.intermediate_size, shapes.num_layers) == (4096, 128, 512, 2)
    plan = plan_memory(load_preset("demo"), device="cpu", available_bytes=8 * GiB, shapes=shapes)
    assert plan.verdict == "fits" and plan.compute_dtype == "fp32"


def test_phi2_offline_uses_known_shapes_without_the_network(monkeypatch):
    calls = []

    def no_hub(name, revision, trust, local_only):
        calls.append(local_only)
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(shapes_mod, "_hub_config", no_hub)
    hf_config, source = memory.hf_config_for("microsoft/phi-2")
    assert "known shapes" in source and hf_config.hidden_size == H and hf_config.vocab_size == V
    assert calls == [True]  # only the cache was asked: an offline machine does not wait for the hub


def test_unknown_hub_model_offline_names_the_problem_and_the_fix(monkeypatch):
    def no_hub(name, revision, trust, local_only):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(shapes_mod, "_hub_config", no_hub)
    with pytest.raises(ModelError) as err:
        memory.hf_config_for("someone/some-model")
    text = str(err.value)
    assert "someone/some-model" in text and "couldn't connect" in text
    assert "builtin:phi-2-random" in text and "model.name" in text


def test_local_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        memory.hf_config_for(str(tmp_path))


def test_unknown_lora_target_is_a_note_not_a_crash(phi2_shapes):
    cfg = phi2_cfg(256, 4, **{"lora.target_modules": ["q_proj", "o_proj"]})
    plan = plan_memory(cfg, shapes=phi2_shapes)
    assert plan.trainable_params == L * R * (H + H)  # q_proj only
    assert any("o_proj" in n for n in plan.notes)


def test_logits_chunk_matches_the_engine_and_bounds_big_vocabularies(monkeypatch):
    import torch

    from humanlike_tui.engine.planning import estimate
    from humanlike_tui.engine import logprobs

    # One rule for the planner and the engine: phi-2's 51k vocabulary keeps 2048-token chunks; a 152k (Qwen)
    # or 262k (Gemma) vocabulary gets fewer tokens per chunk, so one chunk's fp32 logits stay <= 512 MiB.
    assert estimate.logits_chunk_tokens(51200) == estimate.LOGP_CHUNK == 2048
    for vocab in (151936, 262144):
        assert estimate.logits_chunk_tokens(vocab) * vocab * 4 <= estimate.LOGP_CHUNK_BYTES
    # The engine cuts the head where the planner says: count the chunk sizes it computes.
    seen = []
    real = logprobs._chunk_logp
    monkeypatch.setattr(logprobs, "LOGITS_KEEP_BYTES", 0)
    monkeypatch.setattr(logprobs, "_chunk_logp", lambda h, *a: seen.append(h.shape[0]) or real(h, *a))
    head = torch.nn.Linear(8, 151936, bias=False)
    logprobs.token_logprobs(torch.randn(2000, 8), head, torch.zeros(2000, dtype=torch.long))
    assert max(seen) == estimate.logits_chunk_tokens(151936) and sum(seen) == 2000


# ---- the activation model against autograd (CPU: no autocast) -------------------------------------


def _saved_bytes_per_layer(model, input_ids, attention_mask):
    """Bytes of the distinct tensors autograd saves for backward in decoder layer 1, via saved-tensor
    hooks (parameters excluded). Layer 0 is skipped: its input needs no gradient, so it saves less."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    where = ["embed"]
    decoder = model.get_base_model().model
    for i, layer in enumerate(decoder.layers):
        layer.register_forward_pre_hook(lambda mod, args, i=i: where.__setitem__(0, i))
    decoder.final_layernorm.register_forward_pre_hook(lambda *a: where.__setitem__(0, "final"))
    seen: dict[int, tuple] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen[ptr] = (where[0], t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=input_ids, attention_mask=attention_mask)
    return sum(n for w, n in seen.values() if w == 1)


# bf16 + dropout: masks and fp32 casts per adapter; fp32 + no dropout: adapters share one saved input;
# bf16 + no dropout: each adapter saves its own fp32 cast.
@pytest.mark.parametrize("compute,dropout", [("bf16", 0.05), ("fp32", 0.0), ("bf16", 0.0)])
def test_activation_terms_equal_what_autograd_saves_on_cpu(compute, dropout):
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import PhiConfig, PhiForCausalLM

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[compute]
    # phi's layout at a small size: head_dim 80 and partial rotary 0.4 as in phi-2, residual dropout on.
    hf = PhiConfig(vocab_size=256, hidden_size=160, intermediate_size=640, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=2, partial_rotary_factor=0.4, resid_pdrop=0.1,
                   hidden_act="gelu_new", tie_word_embeddings=False)
    torch.manual_seed(0)
    model = PhiForCausalLM(hf).to(dtype)
    for parent in list(model.modules()):  # what transformers' bitsandbytes integration does: nf4 linears
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and name != "lm_head":
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=True, compute_dtype=dtype,
                                      quant_type="nf4", compress_statistics=True)
                q.weight = bnb.nn.Params4bit(child.weight.data.float(), requires_grad=False, quant_type="nf4")
                q.weight = q.weight._quantize("cpu")
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(parent, name, q)
    model.requires_grad_(False)
    targets = ("q_proj", "k_proj", "v_proj", "dense")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules=list(targets)))
    model.train()
    batch, seq = 2, 32
    ids = torch.randint(0, 256, (batch, seq))
    attention = torch.ones(batch, seq, dtype=torch.long)
    attention[1, 20:] = 0  # right padding, as the engine's batches have
    measured = _saved_bytes_per_layer(model, ids, attention)

    shapes = memory.shapes_from_hf_config(hf, "test-phi", "test")
    s = memory.Settings(device="cpu", compute=compute, quant="nf4", double_quant=True, lora_r=8, lora_dropout=dropout,
                        lora_targets=targets, tokens=batch * seq, seq_len=seq, checkpointing=False)
    estimated = sum(memory.activation_terms(shapes, s).values()) * batch * seq
    assert estimated == measured


def test_zero_free_memory_still_gets_suggestions(phi2_shapes):
    plan = plan_memory(phi2_cfg(256, 4), available_bytes=0, shapes=phi2_shapes)
    assert plan.verdict == "does not fit" and plan.suggestions
    assert "does not fit here" in plan.suggestions[-1].text
