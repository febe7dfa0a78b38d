"""What each model family's attention is, layer by layer: one entry per
``model_type``, read by `read.attention_schedule`.

A family is a `Family`: how its config names each layer's type (``layers``,
one of the `LAYER_RULES`), which layers have no positions (``nope``), and
the pieces around attention (norms, sinks, temperature, scale, biases),
with the defaults transformers' config class fills in for keys a
``config.json`` leaves out. The facts are transformers 5.25's; its source
is where a new entry's facts come from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# How a family's layers get their types when the config lists no
# ``layer_types`` (and, when it does, what the list must agree with):
# - "full": every layer full attention;
# - "all_sliding": every layer sliding when ``sliding_window`` is set (Mistral,
#   Ministral, Phi-3);
# - "period": layer i full when (i + offset) % period == 0, else sliding
#   (Gemma 2/3/4, Cohere2, gpt-oss, OLMo 3: offset 1; ModernBERT: offset 0);
# - "from_layer": sliding from layer ``from_key`` on, when ``switch_key`` and
#   a window are set (Qwen2, Qwen3);
# - "nope_sliding": sliding on the NoPE layers when ``switch_key`` and a
#   window are set (SmolLM3);
# - "rope_chunked": chunked on the rotating layers when a chunk size is set,
#   full on the NoPE ones (Llama 4).
LAYER_RULES = (
    "full",
    "all_sliding",
    "period",
    "from_layer",
    "nope_sliding",
    "rope_chunked",
)
# The norms of q and k (and v) a family may have, by the names of `LayerAttention`:
# "rms" per head with a weight; "rms_unit_offset" per head with (1 + weight)
# (Gemma 3); "rms_all_heads" over all heads' features with a weight
# (OLMo 2/3); "rms_unscaled" per head without weight (Llama 4's L2 norm,
# Gemma 4's v_norm); "layer" a LayerNorm per head with a weight and a bias
# (Phi, Persimmon); "layer_each_head" a LayerNorm per head with a weight of
# each head's own, no bias (StableLM 2, Command R+).
NORM_KINDS = (
    "rms",
    "rms_unit_offset",
    "rms_all_heads",
    "rms_unscaled",
    "layer",
    "layer_each_head",
)


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family's attention schedule (see the module docstring).

    Attributes:
      layers: one of `LAYER_RULES`.
      period_key: "period": the config key of the period (None: fixed).
      period: "period": its default.
      period_letters: "period": the period key may also be a string of "L"
        (sliding) and "G" (full) per layer, as EXAONE 4's config documents.
      offset: "period": layer i is full when (i + offset) % period == 0.
      last_full: the last layer is full whatever the rule (Gemma 4).
      from_key: "from_layer": the first sliding layer's key.
      switch_key: "from_layer", "nope_sliding": the key that turns windows on.
      nope: "flags" (``no_rope_layers``, default every
        ``no_rope_layer_interval``-th layer without RoPE), a layer type whose
        layers have no RoPE, or None.
      window_key: the key of the sliding layers' window.
      window_half: the window is bidirectional, ``|q - k| <= key // 2``
        (ModernBERT's ``local_attention``): ours is ``key // 2 + 1``.
      window_off_full: with the window key null, every layer is full
        attention with RoPE, whatever the rule and ``nope`` say (EXAONE 4).
      chunk_key: the key of the chunked layers' chunk size.
      causal: whether the layers mask later positions.
      alibi_key: the key that, true, gives every layer ALiBi biases in place
        of RoPE, in Falcon-RW's form (`AlibiForm`: the keys' positions,
        bfloat16 slopes and products, scaled by ``head_dim ** -0.5``).
      bidirectional_key: the key that, at ``bidirectional_value``, makes
        every layer bidirectional with its window read as ``window_half``
        reads it (Gemma 3's ``use_bidirectional_attention``: EmbeddingGemma).
      bidirectional_value: True (a flag), or the string that turns it on,
        with ``bidirectional_others`` the key's other strings (Gemma 4:
        ``"all"``; ``"vision"`` makes only an image's tokens attend both
        ways, and the text's layers stay causal).
      sinks: every layer has learned sinks.
      qk_norm: one of `NORM_KINDS`, or None.
      qk_norm_position: "before_rope" or "after_rope".
      qk_norm_rope_layers_only: only rotating layers norm q and k (Llama 4).
      qk_norm_switch: the key that turns the QK norm on (default true).
      v_norm: one of `NORM_KINDS`, or None.
      eps_key: the norms' epsilon key.
      temperature: "tuning" (Llama 4, on NoPE layers, when
        ``attn_temperature_tuning``), "llama_4_scaling" (Ministral 3, every
        layer, when the rope dict has ``llama_4_scaling_beta``), or None.
      scale_key: the logit scale is ``config[scale_key] ** -0.5``.
      scale_value_key: the logit scale is ``config[scale_value_key]``
        (Granite's ``attention_multiplier``).
      scale: a fixed logit scale (Gemma 4: 1.0).
      softcap_key: the key of the logits' soft cap.
      qkv_bias: a key (default false) or a fixed value.
      out_bias: a key (default false) or a fixed value.
      kv_heads_key: the key of the key/value heads' count; None: every head
        has its own keys and values (GPT-NeoX and Persimmon read no count).
      clip_key: the key of the bound q, k and v are clipped to (OLMo's
        ``clip_qkv``).
      multi_query: Falcon's keys ``(multi_query, new_decoder_architecture)``:
        one key/value head when the first is true and the second is not.
      defaults: transformers' values for keys a config leaves out.
      unsupported: keys whose truthy values (or defaults) need what is not
        built yet, with the reason.
      not_built: the family's attention is not read at all yet: the reason
        (every config of it is refused).
      ignored: keys the family's published configs carry that its
        transformers code does not read (harmless there, so not an error).
      k_eq_v_key: the key that makes full layers' values their keys
        (Gemma 4's ``attention_k_eq_v``), with ``global_kv_heads_key`` their
        key/value heads when it is set.
      global_kv_heads_key: see ``k_eq_v_key``.
      kv_shared_key: the key of the count of last layers that reuse an
        earlier layer's keys and values (Gemma 4's ``num_kv_shared_layers``).
      latent: multi-head latent attention (DeepSeek-V2/V3): ``q_lora_rank``,
        ``kv_lora_rank``, ``qk_nope_head_dim``, ``qk_rope_head_dim``,
        ``v_head_dim``; the scale is ``(qk_nope_head_dim +
        qk_rope_head_dim) ** -0.5`` times YaRN's ``mscale(factor,
        mscale_all_dim) ** 2``, and the latent norms' epsilon 1e-6.
    """

    layers: str = "full"
    period_key: str | None = None
    period: int = 2
    offset: int = 1
    last_full: bool = False
    from_key: str | None = None
    switch_key: str | None = None
    nope: str | None = None
    window_key: str = "sliding_window"
    window_half: bool = False
    window_off_full: bool = False
    period_letters: bool = False
    chunk_key: str | None = None
    causal: bool = True
    alibi_key: str | None = None
    bidirectional_key: str | None = None
    bidirectional_value: bool | str = True
    bidirectional_others: tuple[str, ...] = ()
    sinks: bool = False
    qk_norm: str | None = None
    qk_norm_position: str = "before_rope"
    qk_norm_rope_layers_only: bool = False
    qk_norm_switch: str | None = None
    v_norm: str | None = None
    eps_key: str = "rms_norm_eps"
    temperature: str | None = None
    scale_key: str | None = None
    scale: float | None = None
    scale_value_key: str | None = None
    softcap_key: str | None = None
    qkv_bias: str | bool = "attention_bias"
    out_bias: str | bool = "attention_bias"
    kv_heads_key: str | None = "num_key_value_heads"
    clip_key: str | None = None
    multi_query: tuple[str, str] | None = None
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unsupported: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ignored: frozenset[str] = frozenset()
    latent: bool = False
    not_built: str | None = None
    k_eq_v_key: str | None = None
    global_kv_heads_key: str | None = None
    kv_shared_key: str | None = None

    @property
    def reads(self) -> frozenset[str]:
        """The schedule keys this family reads."""
        keys = {
            self.period_key,
            self.from_key,
            self.switch_key,
            self.chunk_key,
            self.qk_norm_switch,
            self.bidirectional_key,
            self.alibi_key,
            self.k_eq_v_key,
            self.global_kv_heads_key,
            self.kv_shared_key,
            self.scale_key,
            self.scale_value_key,
            self.softcap_key,
            self.clip_key,
            *self.unsupported,
            *self.ignored,
        }
        if self.layers != "full":
            keys.add(self.window_key)
        if self.nope == "flags":
            keys |= {"no_rope_layers", "no_rope_layer_interval"}
        if self.latent:
            keys |= {"q_lora_rank", "kv_lora_rank"}
        if self.temperature == "tuning":
            keys |= {"attn_temperature_tuning", "floor_scale", "attn_scale"}
        keys.add("layer_types")
        return frozenset(k for k in keys if k is not None)


# Config keys that shape a layer's attention. One present (not null or false)
# in a config whose family does not read it is an error naming it: read
# silently as "absent" it would give that layer the wrong attention.
SCHEDULE_KEYS = frozenset(
    {
        "layer_types",
        "sliding_window",
        "sliding_window_pattern",
        "use_sliding_window",
        "max_window_layers",
        "no_rope_layers",
        "no_rope_layer_interval",
        "attention_chunk_size",
        "attn_temperature_tuning",
        "floor_scale",
        "attn_scale",
        "use_qk_norm",
        "global_attn_every_n_layers",
        "local_attention",
        "query_pre_attn_scalar",
        "attn_logit_softcapping",
        "use_bidirectional_attention",
        "attention_k_eq_v",
        "num_global_key_value_heads",
        "num_kv_shared_layers",
        "compress_ratios",
        "kv_lora_rank",
        "q_lora_rank",
        "attention_multiplier",
        "clip_qkv",
    }
)

# transformers' attribute_map: a family's own names of the standard keys.
KEY_NAMES: dict[str, dict[str, str]] = {
    "gptj": {
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
    },
}

_GEMMA = {"scale_key": "query_pre_attn_scalar", "softcap_key": "attn_logit_softcapping"}
_WINDOW_4096 = {"sliding_window": 4096}
_QWEN = Family(
    layers="from_layer",
    from_key="max_window_layers",
    switch_key="use_sliding_window",
    defaults={"sliding_window": 4096, "max_window_layers": 28, "rms_norm_eps": 1e-6},
)
_MLA = Family(latent=True)
_PLAIN = Family()
# Phi and Persimmon: one LayerNorm (weight and bias) shared by the heads of q,
# one by those of k, before RoPE, with qk_layernorm.
_QK_LAYER = {
    "qk_norm": "layer",
    "qk_norm_switch": "qk_layernorm",
    "eps_key": "layer_norm_eps",
}
_ALL_SLIDING = Family(layers="all_sliding")

FAMILIES: dict[str, Family] = {
    # Every layer the same: causal full attention, RoPE from the config.
    **dict.fromkeys(
        (
            "llama",
            "gptj",
            "arcee",
        ),
        _PLAIN,
    ),
    # Command R+: LayerNorms of q and k, a weight for each head, no bias
    # (use_qk_norm).
    "cohere": Family(
        qk_norm="layer_each_head",
        qk_norm_switch="use_qk_norm",
        eps_key="layer_norm_eps",
        defaults={"use_qk_norm": False, "layer_norm_eps": 1e-5},
    ),
    # Biases and norms as transformers 5.24's attention classes build them
    # (phi/modeling_phi.py, glm/modeling_glm.py, ...): keys that differ from
    # Llama's attention_bias, defaults that are not false.
    "phi": Family(
        qkv_bias=True,
        out_bias=True,
        **_QK_LAYER,
        defaults={"qk_layernorm": False, "layer_norm_eps": 1e-5},
    ),
    "gpt_neox": Family(kv_heads_key=None, defaults={"attention_bias": True}),
    # StableLM 2 (12B): with qk_layernorm, LayerNorms of q and k, one per
    # head with its own weight, no bias.
    "stablelm": Family(
        qkv_bias="use_qkv_bias",
        out_bias=False,
        qk_norm="layer_each_head",
        qk_norm_switch="qk_layernorm",
        eps_key="layer_norm_eps",
        defaults={"qk_layernorm": False, "layer_norm_eps": 1e-5},
    ),
    **dict.fromkeys(
        ("glm", "glm4"), Family(out_bias=False, defaults={"attention_bias": True})
    ),
    "helium": Family(out_bias=False),
    "ernie4_5": Family(qkv_bias="use_bias", out_bias="use_bias"),
    "seed_oss": Family(
        out_bias="attention_out_bias", defaults={"attention_bias": True}
    ),
    "apertus": Family(qk_norm="rms"),
    "persimmon": Family(
        kv_heads_key=None,
        qkv_bias=True,
        out_bias=True,
        **_QK_LAYER,
        defaults={"qk_layernorm": True, "layer_norm_eps": 1e-5},
    ),
    # EXAONE 4: sliding layers with RoPE and full layers without, layer i
    # full when (i + 1) % sliding_window_pattern == 0 (default 4, window
    # 4096); with sliding_window null every layer is full, with RoPE.
    "exaone4": Family(
        layers="period",
        period_key="sliding_window_pattern",
        period=4,
        period_letters=True,
        nope="full_attention",
        window_off_full=True,
        qk_norm="rms",
        qkv_bias=False,
        out_bias=False,
        defaults={"sliding_window": 4096},
    ),
    # Falcon: one key/value head (multi_query, its default) unless
    # new_decoder_architecture (Falcon-40B/180B: num_kv_heads); 'bias' on
    # all four projections.
    "falcon": Family(
        kv_heads_key="num_kv_heads",
        multi_query=("multi_query", "new_decoder_architecture"),
        qkv_bias="bias",
        out_bias="bias",
        defaults={"multi_query": True},
        alibi_key="alibi",
    ),
    # Granite: the logits' scale is attention_multiplier (1/128 in granite-3).
    "granite": Family(
        scale_value_key="attention_multiplier",
        defaults={"attention_multiplier": 1.0},
    ),
    "mistral": dataclasses.replace(
        _ALL_SLIDING, qkv_bias=False, out_bias=False, defaults=_WINDOW_4096
    ),
    "mixtral": dataclasses.replace(
        _ALL_SLIDING, qkv_bias=False, out_bias=False, defaults=_WINDOW_4096
    ),
    "ministral": dataclasses.replace(
        _ALL_SLIDING, qkv_bias=False, out_bias=False, defaults=_WINDOW_4096
    ),
    "ministral3": Family(
        layers="all_sliding",
        qkv_bias=False,
        out_bias=False,
        temperature="llama_4_scaling",
    ),
    "phi3": Family(layers="all_sliding", qkv_bias=False, out_bias=False),
    "qwen2": dataclasses.replace(_QWEN, qkv_bias=True, out_bias=False),
    **dict.fromkeys(
        ("qwen2_vl", "qwen2_vl_text", "qwen2_5_vl", "qwen2_5_vl_text"),
        dataclasses.replace(_QWEN, qkv_bias=True, out_bias=False),
    ),
    "qwen3": dataclasses.replace(_QWEN, qk_norm="rms"),
    "qwen3_moe": dataclasses.replace(_QWEN, qk_norm="rms"),
    # (Qwen3-VL's config keeps its text decoder's under text_config; a flat
    # one is read alike.)
    "qwen3_vl_text": Family(qk_norm="rms"),
    "gemma": Family(),
    "gemma2": Family(
        layers="period",
        period=2,
        **_GEMMA,
        defaults={
            **_WINDOW_4096,
            "query_pre_attn_scalar": 256,
            "attn_logit_softcapping": 50.0,
        },
    ),
    "gemma3_text": Family(
        layers="period",
        period_key="sliding_window_pattern",
        period=6,
        qk_norm="rms_unit_offset",
        **_GEMMA,
        # gemma-3-4b-it's config.json names neither head count.
        defaults={
            **_WINDOW_4096,
            "query_pre_attn_scalar": 256,
            "rms_norm_eps": 1e-6,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
        },
        # EmbeddingGemma: with use_bidirectional_attention no layer is causal
        # and the sliding layers see |q - k| <= sliding_window // 2
        # (transformers' config turns the window into sliding_window // 2 + 1).
        bidirectional_key="use_bidirectional_attention",
    ),
    "gemma4_text": Family(
        layers="period",
        period=6,
        last_full=True,
        qk_norm="rms",
        v_norm="rms_unscaled",
        scale=1.0,
        k_eq_v_key="attention_k_eq_v",
        global_kv_heads_key="num_global_key_value_heads",
        kv_shared_key="num_kv_shared_layers",
        defaults={"sliding_window": 512, "rms_norm_eps": 1e-6},
        # "all" as Gemma 3's true; "vision" (the published 26B-A4B and 31B
        # configs) leaves text causal: only an image's tokens, which a text
        # decoder does not see, attend both ways.
        bidirectional_key="use_bidirectional_attention",
        bidirectional_value="all",
        bidirectional_others=("vision",),
    ),
    "cohere2": Family(
        layers="period",
        period_key="sliding_window_pattern",
        period=4,
        nope="full_attention",
        eps_key="layer_norm_eps",
        defaults=_WINDOW_4096,
    ),
    "gpt_oss": Family(
        layers="period",
        period=2,
        sinks=True,
        defaults={"sliding_window": 128, "attention_bias": True},
    ),
    # OLMo 1 and OLMoE clip q, k and v to [-clip_qkv, clip_qkv] when it is set
    # (OLMo-7B-0424: 8.0), OLMoE after norming q and k over all heads.
    "olmo": Family(clip_key="clip_qkv"),
    "olmoe": Family(
        qk_norm="rms_all_heads", clip_key="clip_qkv", defaults={"rms_norm_eps": 1e-5}
    ),
    "olmo2": Family(qk_norm="rms_all_heads", defaults={"rms_norm_eps": 1e-5}),
    "olmo3": Family(
        layers="period",
        period=4,
        qk_norm="rms_all_heads",
        defaults={**_WINDOW_4096, "rms_norm_eps": 1e-5},
    ),
    "modernbert": Family(
        layers="period",
        period_key="global_attn_every_n_layers",
        period=3,
        offset=0,
        window_key="local_attention",
        window_half=True,
        causal=False,
        eps_key="norm_eps",
        defaults={"local_attention": 128},
    ),
    # SmolLM3-3B's config.json carries Qwen2's max_window_layers (28), which
    # transformers' SmolLM3 does not read.
    "smollm3": Family(
        layers="nope_sliding",
        nope="flags",
        switch_key="use_sliding_window",
        ignored=frozenset({"max_window_layers"}),
    ),
    "llama4_text": Family(
        layers="rope_chunked",
        nope="flags",
        chunk_key="attention_chunk_size",
        qk_norm="rms_unscaled",
        qk_norm_position="after_rope",
        qk_norm_rope_layers_only=True,
        qk_norm_switch="use_qk_norm",
        temperature="tuning",
        defaults={
            "attention_chunk_size": 8192,
            "use_qk_norm": True,
            "rms_norm_eps": 1e-5,
            "attn_temperature_tuning": True,
            "floor_scale": 8192,
            "attn_scale": 0.1,
        },
    ),
    "deepseek_v2": _MLA,
    "deepseek_v3": _MLA,
    "kimi_k2": _MLA,
    "deepseek_v4": Family(
        unsupported={
            "compress_ratios": (
                "DeepSeek-V4's compressed sparse attention layers are not built yet"
            ),
            "q_lora_rank": "DeepSeek-V4's attention is not built yet",
        }
    ),
}
