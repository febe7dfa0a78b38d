"""Makes the golden fixtures under examples/fixtures/ with transformers.

Not run by the tests, and never imported by them: torch and transformers are
not test dependencies. Run it in a scratch environment outside the
repository::

    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install torch transformers safetensors numpy
    /tmp/fixtures-venv/bin/python examples/make_fixtures.py

For each family it builds a tiny model with random weights (fixed seed), saves
it as transformers does (``config.json``, ``model.safetensors``), and writes
``reference.npz``: prompts (a left-padded batch), their logits, and the greedy
continuation, from prompts whose top-2 logit margin exceeds 1e-3 at every
greedy step (so that float32 rounding cannot flip a token). For the RoPE
family ``llama`` it also writes the logits of one prompt at positions offset
by 10^5, computed in float64.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import numpy as np
import torch
import transformers

HERE = pathlib.Path(__file__).resolve().parent / "fixtures"
SMALL = {
    "vocab_size": 96,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
FAMILIES = {
    # Larger weights than the default 0.02: attention sharp enough that the
    # angles at 10^5 show in the logits.
    "llama": {
        "model_type": "llama",
        "tie_word_embeddings": True,
        "initializer_range": 0.5,
    },
    "qwen2": {"model_type": "qwen2"},
    "qwen3": {"model_type": "qwen3", "head_dim": 8},
    "mistral": {"model_type": "mistral", "sliding_window": 4},
    "smollm3": {
        "model_type": "smollm3",
        "num_hidden_layers": 4,
        "no_rope_layer_interval": 2,
    },
    "olmo2": {"model_type": "olmo2"},
    "olmo3": {"model_type": "olmo3", "num_hidden_layers": 4, "sliding_window": 4},
    "ministral3": {
        "model_type": "ministral3",
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 4,
            "rope_theta": 10000.0,
            "llama_4_scaling_beta": 0.5,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
        },
    },
    "phi3": {"model_type": "phi3", "sliding_window": 5},
    # Phi-4-mini's form: part of each head rotates, tied head.
    "phi4_mini": {
        "model_type": "phi3",
        "partial_rotary_factor": 0.75,
        "head_dim": 8,
        "tie_word_embeddings": True,
    },
    # Layers 1 and 3 mixtures of experts (top 1 of 4, the shared expert).
    "llama4": {
        "model_type": "llama4_text",
        "head_dim": 8,
        "num_hidden_layers": 4,
        "intermediate_size": 16,
        "intermediate_size_mlp": 64,
        "interleave_moe_layer_step": 2,
        "num_local_experts": 4,
        "num_experts_per_tok": 1,
        "no_rope_layer_interval": 2,
        "attention_chunk_size": 4,
        "floor_scale": 4,
        "attn_scale": 0.5,
        "use_qk_norm": True,
    },
    # Layer 1 a mixture of experts: 2 of 4 in the best of 2 groups, the
    # shared expert, the correction bias.
    "deepseek_v3": {
        "model_type": "deepseek_v3",
        "num_key_value_heads": 4,
        "first_k_dense_replace": 1,
        "q_lora_rank": 12,
        "kv_lora_rank": 16,
        "qk_nope_head_dim": 8,
        "qk_rope_head_dim": 4,
        "v_head_dim": 6,
        "n_routed_experts": 4,
        "n_group": 2,
        "topk_group": 1,
        "num_experts_per_tok": 2,
        "n_shared_experts": 1,
        "routed_scaling_factor": 2.5,
        "moe_intermediate_size": 16,
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 16,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "rope_theta": 10000.0,
        },
    },
    # DeepSeek-V2-Lite's form: no query compression (q_lora_rank null), layer
    # 0 dense, layer 1 2 of 4 experts in the best of 2 groups by softmax.
    "deepseek_v2": {
        "model_type": "deepseek_v2",
        "num_key_value_heads": 4,
        "first_k_dense_replace": 1,
        "q_lora_rank": None,
        "kv_lora_rank": 16,
        "qk_nope_head_dim": 8,
        "qk_rope_head_dim": 4,
        "v_head_dim": 6,
        "n_routed_experts": 4,
        "n_shared_experts": 2,
        "n_group": 2,
        "topk_group": 1,
        "topk_method": "group_limited_greedy",
        "num_experts_per_tok": 2,
        "routed_scaling_factor": 1.5,
        "moe_intermediate_size": 16,
    },
    # Layer 0 dense (mlp_only_layers), layer 1 2 of 4 experts renormalized.
    "qwen3_moe": {
        "model_type": "qwen3_moe",
        "head_dim": 8,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 16,
        "norm_topk_prob": True,
        "mlp_only_layers": [0],
    },
    "mixtral": {
        "model_type": "mixtral",
        "intermediate_size": 16,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "sliding_window": 4,
    },
    # The QK norm over all heads; top 2 of 4 not renormalized.
    "olmoe": {
        "model_type": "olmoe",
        "intermediate_size": 16,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "norm_topk_prob": False,
    },
    # Sinks, alternating windows, biases everywhere, YaRN, clamped experts.
    "gpt_oss": {
        "model_type": "gpt_oss",
        "head_dim": 8,
        "intermediate_size": 16,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "swiglu_limit": 1.0,  # (7.0 in gpt-oss) low enough to clip here
        "sliding_window": 4,
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 4.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "truncate": False,
            "original_max_position_embeddings": 16,
            "rope_theta": 10000.0,
        },
    },
    "cohere2": {
        "model_type": "cohere2",
        "num_hidden_layers": 4,
        "sliding_window": 4,
        "sliding_window_pattern": 2,
        "layer_norm_eps": 1e-5,
        "logit_scale": 0.5,
        "tie_word_embeddings": True,
    },
    # Command R (v1): Cohere2's form with every layer full and rotating; its
    # config.json then leaves logit_scale to the default (0.0625).
    "cohere": {"model_type": "cohere", "tie_word_embeddings": True},
    # Command R+: LayerNorms of q and k with a weight for each head.
    "cohere_plus": {
        "model_type": "cohere",
        "tie_word_embeddings": True,
        "use_qk_norm": True,
    },
    "gemma2": {
        "model_type": "gemma2",
        "head_dim": 8,
        "sliding_window": 4,
        "query_pre_attn_scalar": 8,
        "tie_word_embeddings": True,
    },
    "gemma3": {
        "model_type": "gemma3_text",
        "head_dim": 8,
        "sliding_window": 4,
        "sliding_window_pattern": 2,
        "query_pre_attn_scalar": 8,
        "rope_local_base_freq": 100.0,
        "tie_word_embeddings": True,
    },
    # Llama's cousins: biases from other keys, Arcee's ReLU^2 MLP without a
    # gate, Gemma 1 (its config.json then says hidden_act "gelu", the legacy
    # value of the published configs that transformers reads as the tanh GeLU
    # the reference ran).
    "helium": {
        "model_type": "helium",
        "head_dim": 8,
        "attention_bias": True,
        "mlp_bias": True,
    },
    "seed_oss": {"model_type": "seed_oss", "head_dim": 8, "attention_out_bias": False},
    "ernie4_5": {"model_type": "ernie4_5", "head_dim": 8, "use_bias": True},
    "arcee": {"model_type": "arcee", "head_dim": 8},
    "gemma": {"model_type": "gemma", "head_dim": 8},
    # GLM: a fused gate_up_proj, half of each head rotating in interleaved
    # pairs; GLM-4 with its norms after each sublayer. Granite's multipliers.
    "glm": {"model_type": "glm", "head_dim": 8},
    "glm4": {"model_type": "glm4", "head_dim": 8},
    "granite": {
        "model_type": "granite",
        "embedding_multiplier": 2.0,
        "residual_multiplier": 0.5,
        "logits_scaling": 4.0,
        "attention_multiplier": 0.25,
    },
    # StableLM 2: LayerNorms with biases, q/k/v biases, a quarter of each
    # head rotating; its parallel form with a LayerNorm for each head of q
    # and of k (StableLM 2 12B).
    "stablelm": {"model_type": "stablelm", "use_qkv_bias": True},
    "stablelm_parallel": {
        "model_type": "stablelm",
        "use_qkv_bias": True,
        "use_parallel_residual": True,
        "qk_layernorm": True,
    },
    # Phi-1.5's form: a parallel residual under one biased LayerNorm, half
    # of each head rotating (the default), biases everywhere.
    "phi": {"model_type": "phi"},
    "phi_qk_layernorm": {"model_type": "phi", "qk_layernorm": True},
    # Persimmon: LayerNorms of q and k per head (qk_layernorm, its default),
    # q/k/v fused head by head, squared ReLU; no key/value heads key.
    "persimmon": {"model_type": "persimmon", "num_key_value_heads": None},
    # GPT-NeoX (Pythia): both residual forms.
    "gpt_neox": {"model_type": "gpt_neox", "num_key_value_heads": None},
    "gpt_neox_sequential": {
        "model_type": "gpt_neox",
        "num_key_value_heads": None,
        "use_parallel_residual": False,
    },
    # Apertus: xIELU (its alpha_p and alpha_n moved off their start), per-head
    # QK norms.
    "apertus": {"model_type": "apertus", "head_dim": 8},
    # OLMo 1: LayerNorms without weights. EXAONE 4 in its all-full form:
    # OLMo 2's reordered norms with per-head QK norms.
    "olmo": {"model_type": "olmo", "clip_qkv": None},
    # OLMo-7B-0424's form: q, k and v clipped (here to 0.05: some are).
    "olmo_clipped": {"model_type": "olmo", "clip_qkv": 0.05},
    "exaone4": {
        "model_type": "exaone4",
        "head_dim": 8,
        "sliding_window": None,
        "layer_types": ["full_attention", "full_attention"],
    },
    # EXAONE 4.0-32B's hybrid form: three sliding layers with RoPE, then a
    # full one without (here every second layer).
    "exaone4_hybrid": {
        "model_type": "exaone4",
        "head_dim": 8,
        "num_hidden_layers": 4,
        "sliding_window": 4,
        "sliding_window_pattern": 2,
    },
    # GPT-J: its own key names (built from GPTJ_SMALL), half of each head
    # rotating in interleaved pairs, one LayerNorm before attention and MLP
    # side by side.
    "gptj": {"model_type": "gptj", "rotary_dim": 4},
    # Falcon-7B's form: one key/value head (multi_query), attention and MLP
    # side by side under one LayerNorm. Falcon-40B's: grouped key/value heads
    # (new_decoder_architecture), a LayerNorm each; here with biases too.
    "falcon": {"model_type": "falcon"},
    "falcon_40b": {
        "model_type": "falcon",
        "new_decoder_architecture": True,
        "num_kv_heads": 2,
        "bias": True,
    },
    # Falcon-RW: ALiBi in place of RoPE (bfloat16 slopes and products over
    # the keys' positions, scaled with the logits), every head its own keys,
    # norms in turn, biases; 16 heads, whose slopes bfloat16 rounds.
    "falcon_rw": {
        "model_type": "falcon",
        "num_attention_heads": 16,
        "alibi": True,
        "multi_query": False,
        "parallel_attn": False,
        "bias": True,
    },
    # Gemma 4's E2B form: per-layer inputs; full layers with a wider head,
    # one key/value head whose values are its keys, partial proportional RoPE;
    # layers 2 and 3 reuse layers 0 and 1's keys and values, with MLPs twice
    # as wide.
    "gemma4": {
        "model_type": "gemma4_text",
        "num_hidden_layers": 4,
        "head_dim": 8,
        "global_head_dim": 16,
        "attention_k_eq_v": True,
        "num_global_key_value_heads": 1,
        "sliding_window": 4,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
        "hidden_size_per_layer_input": 8,
        "vocab_size_per_layer_input": 96,
        "num_kv_shared_layers": 2,
        "use_double_wide_mlp": True,
        "final_logit_softcapping": 30.0,
        "tie_word_embeddings": True,
    },
    # Gemma 4's 26B-A4B form: the experts beside the dense MLP.
    "gemma4_moe": {
        "model_type": "gemma4_text",
        "head_dim": 8,
        "global_head_dim": 16,
        "sliding_window": 4,
        "layer_types": ["sliding_attention", "full_attention"],
        "hidden_size_per_layer_input": 0,
        "enable_moe_block": True,
        "num_experts": 4,
        "top_k_experts": 2,
        "moe_intermediate_size": 16,
        "tie_word_embeddings": True,
    },
}
# Kimi K2: DeepSeek-V3's code (its config names DeepseekV3ForCausalLM) with
# one expert group, saved as its published config.json is (model_type
# kimi_k2, the rope_scaling form): see _as_kimi_k2.
FAMILIES["kimi_k2"] = {
    **FAMILIES["deepseek_v3"],
    "n_group": 1,
    "topk_group": 1,
    "routed_scaling_factor": 2.827,
    "rope_parameters": {
        **FAMILIES["deepseek_v3"]["rope_parameters"],
        "beta_fast": 1.0,
        "rope_theta": 50000.0,
    },
}
# GPT-J's config class keeps its own names (n_embd, n_layer, ...): SMALL's
# would be saved beside them.
GPTJ_SMALL = {
    "vocab_size": 96,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
# Falcon's config class: ffn_hidden_size (4 * hidden) and num_kv_heads, not
# SMALL's names.
FALCON_SMALL = {
    "vocab_size": 96,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
BASES = {
    "gptj": GPTJ_SMALL,
    "falcon": FALCON_SMALL,
    "falcon_40b": FALCON_SMALL,
    "falcon_rw": FALCON_SMALL,
}
# transformers 5.24's eager Falcon adds the ALiBi biases twice (in the mask it
# builds and again to the scores); its SDPA path adds them once, as the
# original Falcon-RW code does.
ATTENTION = {"falcon_rw": "sdpa"}
# Vision-language models: the text decoder is SMALL (M-RoPE's sections
# summing to head_dim / 2) under a one-block vision tower, which the examples
# do not read; prompts of text only.
VISION = {
    "depth": 1,
    "embed_dim": 16,
    "hidden_size": 16,
    "num_heads": 2,
    "mlp_ratio": 2,
    "intermediate_size": 32,
    "out_hidden_size": 32,
    "patch_size": 2,
    "spatial_merge_size": 1,
    "temporal_patch_size": 1,
    "num_position_embeddings": 16,
    "deepstack_visual_indexes": [],
}
# name: the text config's keys beside SMALL's, and the rope dict's.
VISION_LANGUAGE = {
    "qwen2_vl": ({}, {}),
    "qwen2_5_vl": ({}, {}),
    "qwen3_vl": ({"head_dim": 8}, {"mrope_interleaved": True}),
}


def _vision_language(name):
    extra, rope_extra = VISION_LANGUAGE[name]
    text = {**SMALL, "max_position_embeddings": 4096, **extra}
    rope = {
        "rope_type": "default",
        "rope_theta": text.pop("rope_theta"),
        "mrope_section": [2, 1, 1],
        **rope_extra,
    }
    return transformers.AutoConfig.for_model(
        name,
        text_config={**text, "rope_parameters": rope},
        vision_config=VISION,
        image_token_id=90,
        video_token_id=91,
        vision_start_token_id=92,
        vision_end_token_id=93,
        tie_word_embeddings=False,
    )


NEW_TOKENS = 8
MARGIN = 1e-3


def _as_kimi_k2(saved: dict) -> dict:
    """A DeepSeek-V3 config.json as Kimi K2's is: model_type kimi_k2, RoPE in
    the rope_scaling + rope_theta form, DeepSeek's own router keys, and none
    of the keys transformers adds (rope_interleave, head_dim, qk_head_dim)."""
    for key in ("rope_interleave", "head_dim", "qk_head_dim"):
        saved.pop(key)
    rope = dict(saved.pop("rope_parameters"))
    saved["rope_theta"] = rope.pop("rope_theta")
    saved["rope_scaling"] = {"type": rope.pop("rope_type"), **rope}
    return {
        **saved,
        "model_type": "kimi_k2",
        "scoring_func": "sigmoid",
        "topk_method": "noaux_tc",
    }


def _set(key, value):
    def edit(saved: dict) -> dict:
        if value is None:
            saved.pop(key)
        else:
            saved[key] = value
        return saved

    return edit


# The published configs' forms: Gemma's legacy "gelu" (transformers reads it
# as the tanh GeLU the reference ran), Command R's logit_scale left to its
# default, Kimi K2's.
EDITS = {
    "gemma": _set("hidden_act", "gelu"),
    "cohere": _set("logit_scale", None),
    "kimi_k2": _as_kimi_k2,
}


def _save_model(name, model) -> pathlib.Path:
    """The checkpoint folder, as transformers saves it."""
    folder = HERE / name
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _save_reference(folder, arrays, seed, margin=None) -> None:
    """reference.npz and made_by.json (versions, seed, margin) beside it."""
    np.savez_compressed(folder / "reference.npz", **arrays)
    meta = {"transformers": transformers.__version__, "torch": torch.__version__}
    meta |= {"seed": seed} | ({} if margin is None else {"margin": margin})
    (folder / "made_by.json").write_text(json.dumps(meta, indent=1) + "\n")
    said = "" if margin is None else f", margin {margin:.4f}"
    print(f"{folder.name}: seed {seed}{said}")


def _margins(model, ids, mask, seq2seq=False):
    """The greedy continuation and the smallest top-2 margin along it."""
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
        eos_token_id=None,
        pad_token_id=0,
    )
    scores = torch.stack(out.scores, 1)  # [batch, new, vocab]
    top2 = scores.topk(2, dim=-1).values
    margin = float((top2[..., 0] - top2[..., 1]).min())
    # An encoder-decoder's sequences start with decoder_start_token_id.
    return out.sequences[:, 1 if seq2seq else ids.shape[1] :], margin


def _float64_rotary(config):
    """Llama's default RoPE, ``cos``/``sin`` of ``p * theta^(-2i/d)`` in
    float64 (frequencies too)."""
    dim = config.hidden_size // config.num_attention_heads
    theta = config.rope_parameters["rope_theta"]
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)

    def forward(x, position_ids):
        freqs = position_ids[..., None].double() * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    return forward


# The parameters transformers starts at zero or at 0.02 that a fixture
# needs spread out: routers (distinct choices, far from ties), DeepSeek's
# correction bias, gpt-oss's sinks, the attention's biases (Qwen2, gpt-oss).
SPREAD = re.compile(
    r".*(\.(mlp|feed_forward|block_sparse_moe)\.(gate|router)\.\w+"
    r"|\.sinks|self_attn\.[qkvo]_proj\.bias)$"
)


# The experts' weights, large enough (about 1 / sqrt(hidden)) that a wrong
# gate moves the logits by far more than the tests' tolerance.
EXPERTS = re.compile(
    r".*\.(experts|shared_experts?)\..*"
    # The dense MLPs' too (by every name they have): an activation's variant
    # (exact or tanh GeLU) shows.
    r"|.*\.(mlp|feed_forward)\.(gate|up|down|gate_up)_proj\.weight"
    r"|.*\.mlp\.(fc_in|fc_out|fc1|fc2|dense_h_to_4h|dense_4h_to_h)\.weight"
    # GPT-J's queries and keys and the fused q/k/v of GPT-NeoX, Persimmon and
    # Falcon: attention sharp enough that the rotation's layout (interleaved
    # pairs or halves, the part of each head that rotates) and the heads'
    # split of the fused projection show.
    r"|.*\.attn\.[qk]_proj\.weight|.*\.query_key_value\.weight"
)
# Norm weights and other scales transformers starts at 1 (or at 0 for
# Gemma's 1 + w), and biases (0): each moved by up to 0.5, so that no two
# are alike and a norm or bias loaded in another's place shows.
SCALES = re.compile(
    r".*((norm|LayerNorm|\.ln_\w+)\w*\.(weight|bias)|norms\.\d+\.weight"
    r"|layer_scalar|router\.scale"
    r"|per_expert_scale|\.bias|act_fn\.alpha_[pn])$"
)


def _spread(model) -> None:
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if SPREAD.fullmatch(name):
                tensor.normal_(0.0, 1.0)
            elif EXPERTS.fullmatch(name):
                tensor.normal_(0.0, 0.2)
            elif SCALES.fullmatch(name):
                tensor.add_(torch.empty_like(tensor).uniform_(-0.5, 0.5))


def make(name, extra, seed=0):
    vision_language = name in VISION_LANGUAGE
    if vision_language:
        config = _vision_language(name)
        built = transformers.AutoModelForImageTextToText
    else:
        config = transformers.AutoConfig.for_model(
            **{**BASES.get(name, SMALL), **extra}
        )
        built = transformers.AutoModelForCausalLM
    config._attn_implementation = ATTENTION.get(name, "eager")
    for attempt in range(100):
        torch.manual_seed(seed + attempt)
        model = built.from_config(config).eval()
        _spread(model)
        generator = torch.Generator().manual_seed(seed + attempt)
        ids = torch.randint(3, 96, (2, 7), generator=generator)
        mask = torch.ones_like(ids)
        ids[1, :2], mask[1, :2] = 0, 0  # row 1: two left-padding tokens
        with torch.no_grad():
            tokens, margin = _margins(model, ids, mask)
        if margin > MARGIN:
            break
    else:
        raise RuntimeError(f"{name}: no prompt with a top-2 margin > {MARGIN}")
    folder = _save_model(name, model)
    if name in EDITS:
        saved = json.loads((folder / "config.json").read_text())
        saved = EDITS[name](saved)
        (folder / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    with torch.no_grad():
        # (A vision-language model computes its positions itself; with the
        # padding masked, shifting a row's positions leaves RoPE's logits.)
        positions = None if vision_language else (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=ids, attention_mask=mask, position_ids=positions
        ).logits
    arrays = {
        "input_ids": ids.numpy().astype(np.int32),
        "attention_mask": mask.numpy().astype(np.int32),
        "logits": logits.numpy().astype(np.float32),
        "greedy": tokens.numpy().astype(np.int32),
        "margin": np.float32(margin),
    }
    if name == "llama":
        # One prompt at positions 10^5 + arange: transformers in float32 (its
        # angles are float32 products of float32 frequencies), and the same
        # model in float64 throughout, angles included: transformers' rotary
        # casts to float32 even in a float64 model, so its forward is
        # replaced by the formula in float64.
        offset = 100_000 + torch.arange(ids.shape[1])[None]
        with torch.no_grad():
            far32 = model(input_ids=ids[:1], position_ids=offset).logits
            double = model.double()
            double.model.rotary_emb.forward = _float64_rotary(config)
            far64 = double(input_ids=ids[:1], position_ids=offset).logits
        arrays["far_positions"] = offset.numpy().astype(np.int32)
        arrays["far_logits_float32"] = far32.numpy().astype(np.float32)
        arrays["far_logits_float64"] = far64.numpy()
    _save_reference(folder, arrays, seed + attempt, margin)


T5_SMALL = {
    "model_type": "t5",
    "vocab_size": 96,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 20,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "dropout_rate": 0.0,
    # Larger weights than the default, where random T5s predict token 0 at
    # every step (testing little); not so large that float32 rounding,
    # amplified through activations of 1e2, reaches 1e-4 of the logits.
    "initializer_factor": 2.0,
}
T5_FAMILIES = {
    "t5": {"feed_forward_proj": "relu", "tie_word_embeddings": True},  # v1.0
    "flan_t5": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
}


def make_t5(name, extra, seed=0):
    """T5: the decoder's logits for given decoder ids over a padded encoder
    batch, and the greedy continuation from decoder_start_token_id."""
    config = transformers.AutoConfig.for_model(**{**T5_SMALL, **extra})
    config._attn_implementation = "eager"
    for attempt in range(100):
        torch.manual_seed(seed + attempt)
        model = transformers.AutoModelForSeq2SeqLM.from_config(config).eval()
        _spread(model)
        generator = torch.Generator().manual_seed(seed + attempt)
        ids = torch.randint(3, 96, (2, 9), generator=generator)
        mask = torch.ones_like(ids)
        ids[1, -3:], mask[1, -3:] = 0, 0  # row 1: three padding tokens
        with torch.no_grad():
            tokens, margin = _margins(model, ids, mask, seq2seq=True)
        if margin > MARGIN:
            break
    else:
        raise RuntimeError(f"{name}: no prompt with a top-2 margin > {MARGIN}")
    folder = _save_model(name, model)
    decoder_ids = torch.cat([torch.zeros((2, 1), dtype=torch.long), tokens[:, :5]], 1)
    with torch.no_grad():
        logits = model(
            input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids
        ).logits
    _save_reference(
        folder,
        dict(
            input_ids=ids.numpy().astype(np.int32),
            attention_mask=mask.numpy().astype(np.int32),
            decoder_input_ids=decoder_ids.numpy().astype(np.int32),
            logits=logits.numpy().astype(np.float32),
            greedy=tokens.numpy().astype(np.int32),
            margin=np.float32(margin),
        ),
        seed + attempt,
        margin,
    )


BERT_SMALL = {
    "model_type": "bert",
    "vocab_size": 96,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "pad_token_id": 0,
}


MODERNBERT_SMALL = {
    "model_type": "modernbert",
    "vocab_size": 96,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
    "global_attn_every_n_layers": 3,
    "local_attention": 4,  # |q - k| <= 2 on the sliding layers
    "global_rope_theta": 160000.0,
    "local_rope_theta": 100.0,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "cls_token_id": 1,
    "sep_token_id": 2,
}


# EmbeddingGemma's form: Gemma 3 with every layer bidirectional, the sliding
# ones seeing |q - k| <= sliding_window // 2 (here 2), saved as transformers'
# base model (Gemma3TextModel: no LM head, no model. prefix).
EMBEDDINGGEMMA_SMALL = {
    **SMALL,
    **FAMILIES["gemma3"],
    "use_bidirectional_attention": True,
}


def make_bert(name="bert", seed=0, small=None):
    """BERT (or ModernBERT, EmbeddingGemma): the last hidden states of a
    padded batch."""
    small = BERT_SMALL if small is None else small
    config = transformers.AutoConfig.for_model(**small)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config).eval()
    _spread(model)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 96, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    ids[1, -3:], mask[1, -3:] = 0, 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    extra = {"token_type_ids": types} if small is BERT_SMALL else {}
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, **extra)
    folder = _save_model(name, model)
    _save_reference(
        folder,
        dict(
            input_ids=ids.numpy().astype(np.int32),
            attention_mask=mask.numpy().astype(np.int32),
            token_type_ids=types.numpy().astype(np.int32),
            hidden=hidden.last_hidden_state.numpy().astype(np.float32),
        ),
        seed,
    )


if __name__ == "__main__":
    # With names (python examples/make_fixtures.py qwen3_moe ...), those only.
    only = set(sys.argv[1:])

    def wanted(name):
        return not only or name in only

    for name, extra in FAMILIES.items():
        if wanted(name):
            make(name, extra)
    for name in VISION_LANGUAGE:
        if wanted(name):
            make(name, None)
    for name, extra in T5_FAMILIES.items():
        if wanted(name):
            make_t5(name, extra)
    if wanted("bert"):
        make_bert()
    if wanted("modernbert"):
        make_bert("modernbert", small=MODERNBERT_SMALL)
    if wanted("embeddinggemma"):
        make_bert("embeddinggemma", small=EMBEDDINGGEMMA_SMALL)
