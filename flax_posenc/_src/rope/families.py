"""Model-family tables: what transformers does per ``model_type``.

Read by `config.rope_config_from_hf`; a new family is an entry here.
"""

from __future__ import annotations

from typing import Any

# Model types whose transformers implementation pairs features (2i, 2i + 1).
# DeepSeek-V2/V3 rotate interleaved pairs but return them de-interleaved (see
# rope_config_from_hf); DeepSeek-V3 with rope_interleave false pairs halves.
INTERLEAVED = frozenset(
    {
        "gptj",
        "llama4_text",
        "deepseek_v2",
        "deepseek_v3",
        "kimi_k2",
        "cohere",
        "cohere2",
        "cohere2_moe",
        "glm",
        "glm4",
        "helium",
        "ernie4_5",
        "ernie4_5_moe",
    }
)
# Model types whose config's rope_interleave (default true) chooses the layout.
ROPE_INTERLEAVE = frozenset({"deepseek_v3", "kimi_k2"})
# Model types known to pair halves (i, i + r/2), as transformers' rotate_half.
# Any other model type is read as halves too, with a warning naming the layout.
HALVES = frozenset(
    {
        "apertus",
        "arcee",
        "bitnet",
        "dbrx",
        "dots1",
        "exaone4",
        "falcon",
        "gemma",
        "gemma2",
        "gemma3_text",
        "gemma4_text",
        "glm4_moe",
        "gpt_neox",
        "gpt_oss",
        "granite",
        "hunyuan_v1_dense",
        "hunyuan_v1_moe",
        "jetmoe",
        "lfm2",
        "llama",
        "minimax",
        "ministral",
        "ministral3",
        "mistral",
        "mixtral",
        "modernbert",
        "nemotron",
        "olmo",
        "olmo2",
        "olmo3",
        "olmoe",
        "persimmon",
        "phi",
        "phi3",
        "phimoe",
        "qwen2",
        "qwen2_moe",
        "qwen2_vl",
        "qwen2_vl_text",
        "qwen2_5_vl",
        "qwen2_5_vl_text",
        "qwen3",
        "qwen3_moe",
        "qwen3_next",
        "qwen3_vl_text",
        "seed_oss",
        "smollm3",
        "stablelm",
        "starcoder2",
    }
)
# Families whose layers without RoPE (NoPE) are named by a layer type.
NOPE_LAYER_TYPES = {
    "llama4_text": (
        "full_attention",
        "Llama 4's full_attention layers (every no_rope_layer_interval-th layer, 0 "
        "in no_rope_layers) use no rotary embedding (NoPE); its chunked_attention "
        "layers rotate.",
    ),
    "cohere2": (
        "full_attention",
        "Cohere2's full_attention layers use no rotary embedding (NoPE); its "
        "sliding_attention layers rotate.",
    ),
}
# Top-level keys whose values change the rotation: a config key one edit from
# one of them (when it is absent) is a typo, not another setting.
READ_KEYS = (
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "rope_local_base_freq",
    "rope_interleave",
    "rotary_emb_base",
    "rotary_pct",
    "partial_rotary_factor",
    "max_position_embeddings",
    "original_max_position_embeddings",
    "qk_rope_head_dim",
    "global_head_dim",
    "mrope_section",
    "no_rope_layers",
    "global_rope_theta",
    "local_rope_theta",
    "num_attention_heads",
)

# Values transformers' config classes fill in when a config.json leaves them
# out, for what the rotation reads (transformers 5.24). Gemma 3's published
# config.json files name few keys: gemma-3-4b-it gives no head_dim, rope_theta
# or rope_local_base_freq.
QWEN2_VL = {"rope_theta": 1_000_000.0, "mrope_section": (16, 24, 24)}
DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma2": {"head_dim": 256},
    "persimmon": {"partial_rotary_factor": 0.5},
    "gemma3_text": {
        "head_dim": 256,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "max_position_embeddings": 131_072,
    },
    "gemma4_text": {
        "head_dim": 256,
        "global_head_dim": 512,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {
                "rope_type": "proportional",
                "partial_rotary_factor": 0.25,
                "rope_theta": 1_000_000.0,
            },
        },
    },
    "llama4_text": {"head_dim": 128, "rope_theta": 500_000.0},
    "modernbert": {"global_rope_theta": 160_000.0, "local_rope_theta": 10_000.0},
    "olmo3": {"rope_theta": 500_000.0},
    "gpt_oss": {"head_dim": 64},
    "cohere": {"rope_theta": 500_000.0},
    "qwen3": {"head_dim": 128},
    "qwen2_vl": QWEN2_VL,
    "qwen2_vl_text": QWEN2_VL,
    "qwen2_5_vl": QWEN2_VL,
    "qwen2_5_vl_text": QWEN2_VL,
    "qwen3_vl_text": {
        "head_dim": 128,
        "rope_theta": 500_000.0,
        "mrope_section": (24, 20, 20),
    },
    "gpt_neox": {"rotary_pct": 0.25},
    "phi": {"partial_rotary_factor": 0.5},
    "stablelm": {"partial_rotary_factor": 0.25},
    "glm": {"head_dim": 128, "partial_rotary_factor": 0.5},
    "glm4": {"head_dim": 128, "partial_rotary_factor": 0.5},
    "glm4_moe": {"partial_rotary_factor": 0.5},
    "gptj": {"rotary_dim": 64},
}
# The text model's type when a multimodal config.json's text_config omits it.
TEXT_MODEL_TYPES = {
    "gemma3": "gemma3_text",
    "gemma4": "gemma4_text",
    "llama4": "llama4_text",
    "qwen3_vl": "qwen3_vl_text",
}
# Families whose RoPE differs per layer type even when the config does not nest
# it (Gemma 3 in transformers 4: rope_local_base_freq for sliding layers;
# Cohere2: NoPE full-attention layers; ModernBERT: a base per layer type).
PER_LAYER_FAMILIES = frozenset({"gemma3_text", "gemma4_text", "cohere2", "modernbert"})
# Configs without a nested rope dict (transformers 4 form) whose layer types
# rotate with different bases: the key of each layer type's base.
LAYER_THETA_KEYS = {
    "gemma3_text": {
        "full_attention": "rope_theta",
        "sliding_attention": "rope_local_base_freq",
    },
    "modernbert": {
        "full_attention": "global_rope_theta",
        "sliding_attention": "local_rope_theta",
    },
}
# ... and the layer types that the config's rope_scaling does not scale:
# transformers 4 gave Gemma 3's and OLMo 3's sliding layers plain RoPE.
UNSCALED_LAYER_TYPES = {
    "gemma3_text": frozenset({"sliding_attention"}),
    "olmo3": frozenset({"sliding_attention"}),
}
# Layer type names transformers uses, for configs that list none.
LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")
# Qwen3-VL assigns M-RoPE bands interleaved whatever its config says.
MROPE_INTERLEAVED = frozenset({"qwen3_vl_text"})
