"""A short, curated list of current small chat models, with what a person choosing one needs to know (size,
licence, whether the hub gates it) and their config.json shapes, so the memory plan works offline before a
single byte is downloaded. Imports no torch; transformers only to build a config object on request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CatalogueModel:
    hub_id: str
    label: str
    params_b: float  # billions of parameters
    licence: str
    gated: bool  # the hub asks you to accept terms (and `hf auth login`) before downloading
    model_type: str
    shapes: dict[str, Any] = field(default_factory=dict)  # config.json fields that decide memory
    builtin: str = ""  # a builtin name that gives the same model offline

    def config(self):
        """A transformers config with these shapes (no download)."""
        from transformers import AutoConfig

        return AutoConfig.for_model(self.model_type, **self.shapes)


def _llama(h, inter, layers, heads, kv, vocab, tie=True, max_pos=8192, **extra) -> dict[str, Any]:
    return dict(hidden_size=h, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv, vocab_size=vocab, tie_word_embeddings=tie, max_position_embeddings=max_pos,
                **extra)


CATALOGUE = (
    CatalogueModel("microsoft/phi-2", "Phi-2 2.7B (the original recipe's model)", 2.78, "MIT", False, "phi",
                   dict(vocab_size=51200, hidden_size=2560, intermediate_size=10240, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=32, partial_rotary_factor=0.4,
                        max_position_embeddings=2048, tie_word_embeddings=False)),
    CatalogueModel("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2 135M Instruct", 0.135, "Apache-2.0", False,
                   "llama", _llama(576, 1536, 30, 9, 3, 49152, rope_theta=100000.0), builtin="builtin:smollm2-135m"),
    CatalogueModel("HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2 360M Instruct", 0.36, "Apache-2.0", False,
                   "llama", _llama(960, 2560, 32, 15, 5, 49152, rope_theta=100000.0)),
    CatalogueModel("HuggingFaceTB/SmolLM2-1.7B-Instruct", "SmolLM2 1.7B Instruct", 1.71, "Apache-2.0", False,
                   "llama", _llama(2048, 8192, 24, 32, 32, 49152, rope_theta=130000.0)),
    CatalogueModel("Qwen/Qwen3-0.6B", "Qwen3 0.6B", 0.6, "Apache-2.0", False, "qwen3",
                   _llama(1024, 3072, 28, 16, 8, 151936, max_pos=40960, head_dim=128)),
    CatalogueModel("Qwen/Qwen3-1.7B", "Qwen3 1.7B", 1.7, "Apache-2.0", False, "qwen3",
                   _llama(2048, 6144, 28, 16, 8, 151936, max_pos=40960, head_dim=128)),
    CatalogueModel("Qwen/Qwen3-4B", "Qwen3 4B", 4.0, "Apache-2.0", False, "qwen3",
                   _llama(2560, 9728, 36, 32, 8, 151936, max_pos=40960, head_dim=128)),
    CatalogueModel("meta-llama/Llama-3.2-1B-Instruct", "Llama 3.2 1B Instruct", 1.24, "Llama 3.2 Community", True,
                   "llama", _llama(2048, 8192, 16, 32, 8, 128256, max_pos=131072, head_dim=64)),
    CatalogueModel("meta-llama/Llama-3.2-3B-Instruct", "Llama 3.2 3B Instruct", 3.21, "Llama 3.2 Community", True,
                   "llama", _llama(3072, 8192, 28, 24, 8, 128256, max_pos=131072, head_dim=128)),
    CatalogueModel("google/gemma-3-1b-it", "Gemma 3 1B IT", 1.0, "Gemma Terms of Use", True, "gemma3_text",
                   _llama(1152, 6912, 26, 4, 1, 262144, max_pos=32768, head_dim=256)),
    CatalogueModel("microsoft/Phi-4-mini-instruct", "Phi-4-mini 3.8B Instruct", 3.84, "MIT", False, "phi3",
                   _llama(3072, 8192, 32, 24, 8, 200064, max_pos=131072, partial_rotary_factor=0.75)),
)


def find(name: str) -> CatalogueModel | None:
    """The catalogue entry for a hub id or its builtin name, or None."""
    name = name.strip()
    return next((m for m in CATALOGUE if name in (m.hub_id, m.builtin)), None)
