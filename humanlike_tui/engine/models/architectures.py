"""What we know of each model family without loading it: the LoRA target layers. Imports no torch
(a leaf: the planner, the loader and the UI all read it)."""

from __future__ import annotations


# The attention projections of each model_type (the seed recipe's choice, and the cheapest LoRA that moves
# style); `lora.target_modules` overrides it. Phi-3 and Phi-4-mini fuse q/k/v into qkv_proj.
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
DEFAULT_TARGETS = {
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen3": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma3_text": ATTENTION,  # Gemma 3 1B
    "gemma3": ATTENTION,
    "olmo2": ATTENTION,
    "granite": ATTENTION,
    "smollm3": ATTENTION,
    "phi3": ("qkv_proj", "o_proj"),
    "gpt2": ("c_attn", "c_proj"),
    "gpt_neox": ("query_key_value", "dense"),
}
