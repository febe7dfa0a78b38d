"""Decoder-only transformers from a ``config.json``, built from flax_posenc's parts.

One class, `Decoder`, covers the Llama-shaped families (Llama 2/3/4,
Mistral, Ministral 3, Mixtral, Qwen2/2.5, Qwen3, Qwen3-MoE, the
Qwen2/2.5/3-VL text decoders, SmolLM3, OLMo 1/2/3, OLMoE, EXAONE 4,
Phi-1/2/3, Command R, Cohere2, Gemma 1/2/3/4, DeepSeek-V2/V3, Kimi K2,
gpt-oss, Helium, Seed-OSS, ERNIE 4.5, Arcee, GLM, GLM-4, Granite, StableLM,
GPT-NeoX, GPT-J, Persimmon, Falcon, Apertus): token embedding, then per layer an
attention and a gated MLP (or a mixture of experts, `examples.moe`) each
inside a `Residual` (or one parallel `Residual`), a final norm and the LM
head (tied to the embedding or not).
What differs between the families is data, read from the config: each
layer's attention comes from ``MultiHeadAttention.from_hf_config(config,
layer=i)`` (RoPE or none, windows, chunks, QK norms, biases, multi-head
latent attention), the residual form, norm and MLP from `FAMILIES`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import flax_posenc as fp
from examples import gemma4, layers, moe
from flax_posenc import nnx as pnnx


@dataclasses.dataclass(frozen=True)
class Family:
    """What a decoder family does around its attention.

    Attributes:
      norm_position: the residual form of both sublayers (`Residual`):
        ``"pre"`` (Llama), ``"reordered"`` (OLMo 2: the sublayer's output
        is normalized, its input is not) or ``"sandwich"`` (Gemma 2/3: both).
      activation: the gated MLP's activation (``hidden_act``).
      unit_offset: the RMSNorms scale by ``1 + w`` (Gemma).
      scale_embeddings: the token embeddings times ``sqrt(hidden_size)``
        (Gemma).
      final_softcap_key: the config key of the logits' soft cap (Gemma 2).
      fused: the weights transformers fuses: ``"qkv_and_mlp"`` (Phi-3's
        ``qkv_proj`` and ``gate_up_proj``), ``"mlp"`` (GLM's ``gate_up_proj``),
        ``"qkv_per_head"`` (GPT-NeoX's and Falcon's ``query_key_value``:
        each key/value group's q rows, then its k and v rows), or None.
      tied: transformers' ``tie_word_embeddings`` default (SmolLM3, Gemma:
        true).
      norm: ``"rms"`` (RMSNorm), ``"layer"`` (LayerNorm without bias:
        Cohere), ``"biased_layer"`` (LayerNorm with bias: StableLM) or
        ``"plain_layer"`` (LayerNorm without weight or bias, epsilon 1e-5:
        OLMo 1).
      eps_key: the norms' epsilon key.
      logit_scale_key: the key of a factor on the logits (Cohere).
      mlp_size_key: the dense MLP's width key (Llama 4:
        ``intermediate_size_mlp``).
      layer_scalar: each layer's output times a learned scalar (Gemma 4).
      norm_names: transformers' names of the attention's norm and post norm
        and the MLP's, where they are not the residual form's usual ones
        (GLM-4's ``post_self_attn_layernorm`` and ``post_mlp_layernorm``).
      renames: transformers' names where they differ from Llama's, as
        substitutions (Phi: ``self_attn.dense``, ``mlp.fc1``/``fc2``,
        ``model.final_layernorm``).
      lm_head_bias: the LM head has a bias (Phi).
      parallel_norms: the parallel residual's MLP has a norm of its own
        (GPT-NeoX), not the attention's.
      parallel_key: the key that makes the residual ``"parallel"`` with one
        shared norm (StableLM's ``use_parallel_residual``).
      multiplier_keys: Granite's keys of the embeddings' factor, the
        sublayers' factor before each residual sum and the logits' divisor.
      gated: the MLP is gated (``down(act(gate(x)) * up(x))``); else
        ``down(act(up(x)))`` (Arcee).
      mlp_bias_key: the key of the MLP's biases.
      gelu_means_tanh: ``hidden_act: "gelu"`` is the tanh approximation (a
        legacy value of Gemma's configs, which transformers reads so).
      vision_prefixes: the names of the vision tower's tensors, which the
        text decoder does not read (Qwen2-VL's ``visual.``).
      language_prefix: the text decoder's tensors' prefix in place of
        ``model.`` (Qwen3-VL's ``model.language_model.``), where the
        checkpoint has it.
      two_norms: Falcon's keys ``(new_decoder_architecture,
        num_ln_in_parallel_attn)``: with the first true and the second null
        or 2, the parallel residual's attention and MLP each have their own
        norm (``ln_attn``, ``ln_mlp``).
      key_names: the family's own names of the standard keys (transformers'
        ``attribute_map``: GPT-J's ``n_embd``, ``n_layer``, ...).
      width_factor: the MLP's width is ``width_factor * hidden_size`` when
        the config's width is null (GPT-J's ``n_inner``).
      defaults: transformers' values for keys a config.json may leave out.

    ``norm_position="parallel"`` (Cohere2): one norm, then attention and the
    MLP side by side, ``x + attn(norm(x)) + mlp(norm(x))``.
    """

    norm_position: str = "pre"
    activation: str = "silu"
    unit_offset: bool = False
    scale_embeddings: bool = False
    final_softcap_key: str | None = None
    fused: str | None = None
    tied: bool = False
    norm: str = "rms"
    eps_key: str = "rms_norm_eps"
    logit_scale_key: str | None = None
    mlp_size_key: str = "intermediate_size"
    layer_scalar: bool = False
    norm_names: tuple[str | None, ...] | None = None
    multiplier_keys: tuple[str, str, str] | None = None
    parallel_key: str | None = None
    renames: Mapping[str, str] = dataclasses.field(default_factory=dict)
    lm_head_bias: bool = False
    parallel_norms: bool = False
    gated: bool = True
    mlp_bias_key: str = "mlp_bias"
    gelu_means_tanh: bool = False
    vision_prefixes: tuple[str, ...] = ()
    language_prefix: str | None = None
    two_norms: tuple[str, str] | None = None
    key_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    width_factor: int | None = None
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# Phi's and Persimmon's names of the QK LayerNorms (qk_layernorm).
_QK_LAYERNORMS = {
    "self_attn.q_norm.": "self_attn.q_layernorm.",
    "self_attn.k_norm.": "self_attn.k_layernorm.",
}
FAMILIES = {
    "llama": Family(),
    "mistral": Family(),
    "qwen2": Family(),
    "qwen3": Family(),
    "smollm3": Family(tied=True),
    "olmo": Family(norm="plain_layer"),
    # Apertus: xIELU in an MLP without a gate, per-head QK norms, its own
    # norm names.
    "apertus": Family(
        gated=False,
        activation="xielu",
        renames={
            "input_layernorm.": "attention_layernorm.",
            "post_attention_layernorm.": "feedforward_layernorm.",
        },
        defaults={"rms_norm_eps": 1e-5},
    ),
    # GPT-NeoX (Pythia): attention and MLP side by side, each under its own
    # biased LayerNorm (use_parallel_residual; else pre-norm), q/k/v fused
    # head by head, biases everywhere, a quarter of each head rotating.
    "gpt_neox": Family(
        norm_position="pre",
        norm="biased_layer",
        eps_key="layer_norm_eps",
        parallel_key="use_parallel_residual",
        parallel_norms=True,
        gated=False,
        activation="gelu",
        fused="qkv_per_head",
        renames={
            "model.layers.": "gpt_neox.layers.",
            "self_attn.query_key_value.": "attention.query_key_value.",
            "self_attn.o_proj.": "attention.dense.",
            "mlp.up_proj.": "mlp.dense_h_to_4h.",
            "mlp.down_proj.": "mlp.dense_4h_to_h.",
            "model.embed_tokens.": "gpt_neox.embed_in.",
            "model.norm.": "gpt_neox.final_layer_norm.",
            "lm_head.": "embed_out.",
        },
        defaults={
            "layer_norm_eps": 1e-5,
            "mlp_bias": True,
            "use_parallel_residual": True,
        },
    ),
    # Phi-1/1.5/2: one biased LayerNorm before attention and MLP side by side,
    # biases everywhere (the LM head's too), an MLP without a gate, other
    # names.
    "phi": Family(
        norm_position="parallel",
        norm="biased_layer",
        eps_key="layer_norm_eps",
        gated=False,
        activation="gelu_new",
        lm_head_bias=True,
        renames={
            **_QK_LAYERNORMS,
            "self_attn.o_proj.": "self_attn.dense.",
            "mlp.up_proj.": "mlp.fc1.",
            "mlp.down_proj.": "mlp.fc2.",
            "model.norm.": "model.final_layernorm.",
        },
        defaults={"layer_norm_eps": 1e-5, "mlp_bias": True},
    ),
    # Persimmon: pre-norm biased LayerNorms, q/k/v fused head by head with
    # LayerNorms of q and k per head, half of each head rotating, biases
    # everywhere but the LM head, an MLP without a gate (squared ReLU).
    "persimmon": Family(
        norm="biased_layer",
        eps_key="layer_norm_eps",
        gated=False,
        activation="relu2",
        fused="qkv_per_head",
        renames={
            **_QK_LAYERNORMS,
            "self_attn.o_proj.": "self_attn.dense.",
            "mlp.up_proj.": "mlp.dense_h_to_4h.",
            "mlp.down_proj.": "mlp.dense_4h_to_h.",
            "model.norm.": "model.final_layernorm.",
        },
        defaults={"layer_norm_eps": 1e-5, "mlp_bias": True},
    ),
    # StableLM: LayerNorms with biases, a quarter of each head rotating; a
    # parallel residual with use_parallel_residual.
    "stablelm": Family(
        norm="biased_layer",
        eps_key="layer_norm_eps",
        parallel_key="use_parallel_residual",
        defaults={"layer_norm_eps": 1e-5},
    ),
    # GPT-J: Phi's form (one biased LayerNorm before attention and MLP side
    # by side) with bias-free attention, interleaved partial RoPE
    # (rotary_dim), and its own key and parameter names.
    "gptj": Family(
        norm_position="parallel",
        norm="biased_layer",
        eps_key="layer_norm_epsilon",
        gated=False,
        activation="gelu_new",
        lm_head_bias=True,
        key_names={
            "hidden_size": "n_embd",
            "num_attention_heads": "n_head",
            "num_hidden_layers": "n_layer",
            "max_position_embeddings": "n_positions",
            "intermediate_size": "n_inner",
            "hidden_act": "activation_function",
        },
        width_factor=4,
        renames={
            "model.layers.": "transformer.h.",
            "input_layernorm.": "ln_1.",
            "self_attn.o_proj.": "attn.out_proj.",
            "self_attn.": "attn.",
            "mlp.up_proj.": "mlp.fc_in.",
            "mlp.down_proj.": "mlp.fc_out.",
            "model.embed_tokens.": "transformer.wte.",
            "model.norm.": "transformer.ln_f.",
        },
        defaults={"layer_norm_epsilon": 1e-5, "mlp_bias": True},
    ),
    # Falcon: attention and a biased MLP without a gate side by side under
    # one LayerNorm (Falcon-7B: one key/value head) or two (Falcon-40B/180B's
    # new_decoder_architecture: grouped heads), or in turn (parallel_attn
    # false); q, k and v fused by key/value group; 'bias' on every Linear.
    "falcon": Family(
        norm="biased_layer",
        eps_key="layer_norm_epsilon",
        gated=False,
        activation="gelu",
        fused="qkv_per_head",
        parallel_key="parallel_attn",
        two_norms=("new_decoder_architecture", "num_ln_in_parallel_attn"),
        mlp_bias_key="bias",
        tied=True,
        key_names={
            "intermediate_size": "ffn_hidden_size",
            "hidden_act": "activation",
        },
        width_factor=4,
        renames={
            "model.layers.": "transformer.h.",
            "self_attn.query_key_value.": "self_attention.query_key_value.",
            "self_attn.o_proj.": "self_attention.dense.",
            "mlp.up_proj.": "mlp.dense_h_to_4h.",
            "mlp.down_proj.": "mlp.dense_4h_to_h.",
            "model.embed_tokens.": "transformer.word_embeddings.",
            "model.norm.": "transformer.ln_f.",
        },
        defaults={"layer_norm_epsilon": 1e-5, "parallel_attn": True},
    ),
    # GLM: gate and up in one weight, half of each head rotating (interleaved
    # pairs); GLM-4 also with a norm after each sublayer, by other names.
    "glm": Family(fused="mlp", defaults={"rms_norm_eps": 1.5625e-07}),
    "glm4": Family(
        norm_position="sandwich",
        fused="mlp",
        norm_names=(
            "input_layernorm",
            "post_self_attn_layernorm",
            "post_attention_layernorm",
            "post_mlp_layernorm",
        ),
        defaults={"rms_norm_eps": 1.5625e-07},
    ),
    # Granite: embeddings times embedding_multiplier, each sublayer's output
    # times residual_multiplier, logits over logits_scaling (and the
    # attention's scale attention_multiplier, read by the schedule).
    "granite": Family(
        multiplier_keys=(
            "embedding_multiplier",
            "residual_multiplier",
            "logits_scaling",
        )
    ),
    "olmo2": Family(norm_position="reordered"),
    # EXAONE 4: OLMo 2's form (its hybrid layers are the schedule's).
    "exaone4": Family(norm_position="reordered", defaults={"rms_norm_eps": 1e-5}),
    "olmo3": Family(norm_position="reordered"),
    "ministral": Family(),
    # Llama 4: chunked RoPE layers, NoPE layers with temperature tuning, the
    # weightless QK norm; its dense layers' MLP is intermediate_size_mlp wide.
    "llama4_text": Family(mlp_size_key="intermediate_size_mlp"),
    # DeepSeek-V2/V3: multi-head latent attention.
    "deepseek_v2": Family(),
    "deepseek_v3": Family(),
    # Mixtures of experts in every layer (moe.py): sliding windows (Mixtral),
    # the QK norm over all heads (OLMoE), sinks and biases (gpt-oss).
    "qwen3_moe": Family(),
    "mixtral": Family(),
    "olmoe": Family(),
    "gpt_oss": Family(),
    **dict.fromkeys(
        ("cohere", "cohere2"),  # Command R (v1), Command R7B / A (2)
        Family(
            norm_position="parallel",
            norm="layer",
            eps_key="layer_norm_eps",
            logit_scale_key="logit_scale",
            tied=True,
            defaults={"logit_scale": 0.0625, "layer_norm_eps": 1e-5},
        ),
    ),
    "ministral3": Family(),
    "phi3": Family(fused="qkv_and_mlp"),
    **dict.fromkeys(
        ("gemma2", "gemma3_text"),
        Family(
            norm_position="sandwich",
            activation="gelu_pytorch_tanh",
            unit_offset=True,
            scale_embeddings=True,
            final_softcap_key="final_logit_softcapping",
            tied=True,
        ),
    ),
    # The text decoders of Qwen2-VL, Qwen2.5-VL (Qwen2's) and Qwen3-VL
    # (Qwen3's) with M-RoPE: its sections rotate by one position each,
    # equal for text. transformers 4 saved them flat with the tensors under
    # model. and visual., transformers 5 under text_config with the tensors
    # under model.language_model. and model.visual.
    **dict.fromkeys(
        (
            "qwen2_vl",
            "qwen2_vl_text",
            "qwen2_5_vl",
            "qwen2_5_vl_text",
            "qwen3_vl",
            "qwen3_vl_text",
        ),
        Family(
            vision_prefixes=("visual.", "model.visual."),
            language_prefix="model.language_model.",
        ),
    ),
    # Llama's form with other defaults and keys (transformers' configs).
    "helium": Family(defaults={"rms_norm_eps": 1e-8}),
    "seed_oss": Family(),
    "ernie4_5": Family(
        mlp_bias_key="use_bias", tied=True, defaults={"rms_norm_eps": 1e-5}
    ),
    "arcee": Family(gated=False, activation="relu2", defaults={"rms_norm_eps": 1e-5}),
    "gemma": Family(
        activation="gelu_pytorch_tanh",
        unit_offset=True,
        scale_embeddings=True,
        tied=True,
        gelu_means_tanh=True,
    ),
    # Gemma 3's form with plain RMSNorm weights (no 1 + w), per-layer inputs,
    # the experts beside the MLP, the layer scalar (examples.gemma4).
    "gemma4_text": Family(
        norm_position="sandwich",
        activation="gelu_pytorch_tanh",
        scale_embeddings=True,
        final_softcap_key="final_logit_softcapping",
        tied=True,
        layer_scalar=True,
        defaults={
            "hidden_size_per_layer_input": 256,
            "vocab_size_per_layer_input": 262_144,
            "enable_moe_block": False,
        },
    ),
}
# transformers' ACT2FN names: "gelu" is the exact (erf) GELU, "gelu_new" and
# "gelu_pytorch_tanh" its tanh approximation.
_TANH_GELU = functools.partial(jax.nn.gelu, approximate=True)
ACTIVATIONS = {
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "relu2": lambda x: jnp.square(jax.nn.relu(x)),
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": _TANH_GELU,
    "gelu_pytorch_tanh": _TANH_GELU,
}


def activation_fn(name: str):
    """The function of a config's activation name, or a ValueError."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation {name!r} is not one the examples build: {sorted(ACTIVATIONS)}."
        )
    return ACTIVATIONS[name]


# Families whose code is another's: Kimi K2's config.json names DeepSeek-V3's
# architecture (DeepseekV3ForCausalLM), and its code is DeepSeek-V3's.
SAME_CODE = {"kimi_k2": "deepseek_v3"}
# Models whose decoder's config is their text_config (the vision-language
# ones, as transformers 5 saves them).
TEXT_CONFIG_OF = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl"})


def standard_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config under the names the decoders read: a vision-language
    model's ``text_config`` (`TEXT_CONFIG_OF`), the model_type whose code the
    family shares (`SAME_CODE`) and the standard keys beside the family's
    own names (GPT-J's ``n_embd``: ``hidden_size``)."""
    config = dict(config)
    model_type = config.get("model_type")
    if model_type in TEXT_CONFIG_OF and config.get("text_config"):
        tied = config.get("tie_word_embeddings")
        config = dict(config["text_config"])
        if tied is not None:  # the whole model's: transformers ties by it
            config["tie_word_embeddings"] = tied
        model_type = config.get("model_type")
    config["model_type"] = SAME_CODE.get(model_type, model_type)
    family = FAMILIES.get(config["model_type"])
    if family is None:
        return config
    for standard, own in family.key_names.items():
        if config.get(standard) is None and own in config:
            config[standard] = config[own]
    if family.width_factor and config.get("intermediate_size") is None:
        config["intermediate_size"] = family.width_factor * config["hidden_size"]
    return config


def is_encoder(schedule) -> bool:
    """Whether a model of this `flax_posenc.attention_schedule` is an encoder:
    every layer bidirectional (EmbeddingGemma), so no LM head, and its call
    gives the last hidden states."""
    return not any(a.causal for a in schedule)


def family_of(config: Mapping[str, Any]) -> Family:
    """The `Family` of a config's ``model_type``, or a ValueError naming the
    ones these examples build."""
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(
            f"the examples build no model_type {model_type!r}; they build "
            f"{sorted(FAMILIES)}."
        )
    family = FAMILIES[model_type]
    parallel = family.parallel_key
    parallel = parallel is not None and config.get(
        parallel, family.defaults.get(parallel)
    )
    if parallel:
        family = dataclasses.replace(family, norm_position="parallel")
    if family.two_norms is not None and config.get(family.two_norms[0]):
        if not parallel:
            raise ValueError(
                f"{family.two_norms[0]} without {family.parallel_key} is not a "
                "form transformers' Falcon builds consistently; the examples "
                "build it only with the parallel residual."
            )
        if config.get(family.two_norms[1]) in (None, 2):
            family = dataclasses.replace(
                family,
                parallel_norms=True,
                renames={
                    **family.renames,
                    "input_layernorm.": "ln_attn.",
                    "post_attention_layernorm.": "ln_mlp.",
                },
            )
    return family


def norm_fields(family: Family, config) -> tuple[str, dict[str, Any]]:
    """The family's norm, ``("layer" | "rms", fields)``, the fields both
    twins' `LayerNorm` or `RMSNorm` take (the NNX and linen decoders)."""
    eps = config.get(family.eps_key, 1e-6)
    if family.norm == "plain_layer":  # OLMo 1: no weight, epsilon 1e-5
        return "layer", {"epsilon": 1e-5, "use_scale": False, "use_bias": False}
    if family.norm in ("layer", "biased_layer"):
        return "layer", {"epsilon": eps, "use_bias": family.norm == "biased_layer"}
    return "rms", {"epsilon": eps, "unit_offset": family.unit_offset}


def activation_name(family: Family, config) -> str:
    """The MLP's activation: the config's (Gemma's ``hidden_activation``,
    else ``hidden_act``) or the family's, Gemma's legacy ``"gelu"`` read as
    transformers reads it."""
    name = (
        config.get("hidden_activation") or config.get("hidden_act") or family.activation
    )
    return "gelu_pytorch_tanh" if name == "gelu" and family.gelu_means_tanh else name


def make_norm(family: Family, config, *, dtype, param_dtype, rngs):
    """The family's norm over ``hidden_size`` features."""
    kind, fields = norm_fields(family, config)
    made = pnnx.LayerNorm if kind == "layer" else pnnx.RMSNorm
    return made(
        config["hidden_size"], dtype=dtype, param_dtype=param_dtype, rngs=rngs, **fields
    )


class Scaled(nnx.Module):
    """``factor * inner(...)`` (Granite's residual multiplier), passing
    ``init_cache`` on to the inner attention."""

    def __init__(self, inner, factor: float):
        self.inner, self.factor = inner, float(factor)

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        if isinstance(out, tuple):  # (out, shared keys and values)
            return (out[0] * self.factor, *out[1:])
        return out * self.factor

    def init_cache(self, *args, **kwargs):
        return self.inner.init_cache(*args, **kwargs)


class XIELU(nnx.Module):
    """xIELU (Huang et al. 2024, https://arxiv.org/abs/2411.13010; Apertus):
    ``a_p x^2 + beta x`` for ``x > 0``, else ``a_n (expm1(min(x, eps)) - x)
    + beta x``, with ``a_p = softplus(alpha_p)``, ``a_n = beta +
    softplus(alpha_n)``; its four numbers are the checkpoint's (``beta`` and
    ``eps`` buffers there)."""

    def __init__(self, param_dtype):
        def number(value):
            return nnx.Param(jnp.full((1,), value, param_dtype))

        self.alpha_p, self.alpha_n = number(0.0), number(0.0)
        self.beta, self.eps = number(0.5), number(-1e-6)

    def __call__(self, x):
        beta, eps = self.beta[...], self.eps[...]
        a_p = jax.nn.softplus(self.alpha_p[...])
        a_n = beta + jax.nn.softplus(self.alpha_n[...])
        negative = (jnp.expm1(jnp.minimum(x, eps)) - x) * a_n + beta * x
        return jnp.where(x > 0, a_p * x * x + beta * x, negative).astype(x.dtype)


class GatedMLP(nnx.Module):
    """``down(act(gate(x)) * up(x))`` (Llama's MLP), or ``down(act(up(x)))``
    with ``gated=False`` (Arcee's); biases with ``use_bias``."""

    def __init__(
        self,
        hidden,
        intermediate,
        activation,
        *,
        gated=True,
        use_bias=False,
        dtype,
        param_dtype,
        rngs,
    ):
        def linear(n_in, n_out, axes):
            return layers.linear(
                n_in,
                n_out,
                axes,
                use_bias=use_bias,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )

        self.gate = linear(hidden, intermediate, ("embed", "mlp")) if gated else None
        self.up = linear(hidden, intermediate, ("embed", "mlp"))
        self.down = linear(intermediate, hidden, ("mlp", "embed"))
        # Apertus's xIELU has parameters of its own (act_fn in transformers).
        self.activation = (
            XIELU(param_dtype) if activation == "xielu" else activation_fn(activation)
        )

    def __call__(self, x, **unused):
        # (**unused: a parallel Residual hands it the attention's arguments.)
        if self.gate is None:
            return self.down(self.activation(self.up(x)))
        return self.down(self.activation(self.gate(x)) * self.up(x))


class DecoderLayer(nnx.Module):
    """Attention then MLP, each a `Residual` with its RMSNorm."""

    def __init__(self, config, layer: int, *, dtype, param_dtype, attention, rngs):
        family = family_of(config)
        hidden = config["hidden_size"]

        def norm():
            return make_norm(
                family, config, dtype=dtype, param_dtype=param_dtype, rngs=rngs
            )

        sandwich = family.norm_position == "sandwich"

        attention = pnnx.MultiHeadAttention.from_hf_config(
            config,
            layer=layer,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
            # Inference: no dropout (Seed-OSS's config says attention_dropout
            # 0.1), and so no dropout stream to keep.
            **{"dropout_rate": 0.0, **attention},
        )
        activation = activation_name(family, config)

        reuses = getattr(attention, "reuses_kv", False)
        # Gemma 4: the layers that reuse keys and values have a wider MLP.
        wide = 2 if reuses and config.get("use_double_wide_mlp") else 1

        def gated_mlp(width):
            return GatedMLP(
                hidden,
                width,
                activation,
                gated=family.gated,
                use_bias=bool(config.get(family.mlp_bias_key, False)),
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )

        per_layer = bool(config.get("hidden_size_per_layer_input"))
        scalar_on_mlp = (
            "layer_scalar" if family.layer_scalar and not per_layer else None
        )
        # Gemma 4: after the MLP, with the layer scalar on its sum.
        self.per_layer = (
            pnnx.Residual(
                gemma4.PerLayerBlock(
                    config,
                    activation_fn(activation),
                    dtype=dtype,
                    param_dtype=param_dtype,
                    rngs=rngs,
                ),
                norm(),
                norm_position="reordered",
                output_scale="layer_scalar" if family.layer_scalar else None,
            )
            if per_layer
            else None
        )
        if config.get("enable_moe_block"):  # Gemma 4: experts beside the MLP
            self.attention = pnnx.Residual(
                attention, norm(), norm_position="sandwich", post_norm=norm()
            )
            both = gemma4.DenseAndExperts(
                config,
                gated_mlp(config[family.mlp_size_key] * wide),
                norm,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )
            self.mlp = pnnx.Residual(
                both, norm(), norm_position="reordered", output_scale=scalar_on_mlp
            )
            return
        if layer in moe.moe_layers(config):
            mlp = moe.MoE(
                config,
                activation=activation_fn(activation),
                shared_mlp=gated_mlp,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )
        else:
            mlp = gated_mlp(config[family.mlp_size_key] * wide)
        if family.multiplier_keys is not None:  # Granite
            factor = config.get(family.multiplier_keys[1], 1.0)
            attention, mlp = Scaled(attention, factor), Scaled(mlp, factor)
        if family.norm_position == "parallel":
            self.attention = pnnx.Residual(
                attention,
                norm(),
                norm_position="parallel",
                parallel=mlp,
                parallel_norm=norm() if family.parallel_norms else None,
                share_norm=not family.parallel_norms,
            )
            self.mlp = None
            return
        self.attention = pnnx.Residual(
            attention,
            norm(),
            norm_position=family.norm_position,
            post_norm=norm() if sandwich else None,
        )
        self.mlp = pnnx.Residual(
            mlp,
            norm(),
            norm_position=family.norm_position,
            post_norm=norm() if sandwich else None,
            output_scale=scalar_on_mlp,
        )

    def __call__(
        self,
        x,
        *,
        positions,
        segments,
        decode,
        per_layer_input=None,
        shared_kv=None,
        return_kv=False,
    ):
        """The layer's output, and with ``return_kv`` the keys and values it
        attended over (for the layers that reuse them: ``shared_kv``)."""
        extra = {} if shared_kv is None else {"shared_kv": shared_kv}
        kept = None
        if return_kv:
            x, kept = self.attention(
                x, positions=positions, segments=segments, decode=decode, return_kv=True
            )
        else:
            x = self.attention(
                x, positions=positions, segments=segments, decode=decode, **extra
            )
        x = x if self.mlp is None else self.mlp(x)
        if self.per_layer is not None:
            x = self.per_layer(x, per_layer_input=per_layer_input)
        return (x, kept) if return_kv else x


class Decoder(nnx.Module):
    """A decoder-only language model from its ``config.json`` (a dict).

    ``model(ids)`` gives logits ``[batch, seq, vocab]`` of int ids ``[batch,
    seq]``; ``positions`` and ``segments`` (0: padding; or
    ``attention_mask``) as `flax_posenc.nnx.MultiHeadAttention` takes them;
    ``decode=True`` after `init_cache` writes the tokens into every layer's
    cache. A config whose every layer is bidirectional (Gemma 3 with
    ``use_bidirectional_attention``: EmbeddingGemma) is an encoder: no LM
    head, and the call gives the last hidden states ``[batch, seq,
    hidden]``, as transformers' ``Gemma3TextModel``. ``attention``:
    what ``MultiHeadAttention.from_hf_config`` takes beside the config
    (``implementation="blockwise"``, ``block_size``, ...).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        dtype=None,
        param_dtype=jnp.float32,
        attention: Mapping[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        config = standard_config(config)
        family = family_of(config)
        config = {**family.defaults, **config}
        self.config = config
        hidden, vocab = config["hidden_size"], config["vocab_size"]
        self.embed = pnnx.TokenEmbedding(
            vocab,
            hidden,
            scale_by_sqrt_features=family.scale_embeddings,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        cap = (
            None
            if family.final_softcap_key is None
            else config.get(family.final_softcap_key)
        )
        self.final_softcap = None if cap is None else float(cap)
        schedule = fp.attention_schedule(config)
        # Which earlier layer's keys and values each layer reuses (Gemma 4).
        self.kv_sources = tuple(a.kv_shared_from for a in schedule)
        self.encoder = is_encoder(schedule)
        self.per_layer_inputs = (
            gemma4.PerLayerInputs(
                config, dtype=dtype, param_dtype=param_dtype, rngs=rngs
            )
            if config.get("hidden_size_per_layer_input")
            else None
        )
        self.layers = nnx.List(
            [
                DecoderLayer(
                    config,
                    i,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    attention=attention or {},
                    rngs=rngs,
                )
                for i in range(config["num_hidden_layers"])
            ]
        )
        self.norm = make_norm(
            family, config, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        scale = (
            None
            if family.logit_scale_key is None
            else config.get(family.logit_scale_key)
        )
        self.logit_scale = None if scale is None else float(scale)
        self.embedding_multiplier = self.logits_divisor = None
        if family.multiplier_keys is not None:  # Granite
            embedding, _, logits = family.multiplier_keys
            self.embedding_multiplier = float(config.get(embedding, 1.0))
            self.logits_divisor = float(config.get(logits, 1.0))
        tied = config.get("tie_word_embeddings", family.tied)
        self.lm_head = (
            None
            if tied or self.encoder
            else nnx.Linear(
                hidden,
                vocab,
                use_bias=family.lm_head_bias,
                dtype=dtype,
                param_dtype=param_dtype,
                kernel_metadata={
                    "out_sharding": ("embed", "vocab"),
                    "eager_sharding": False,
                },
                rngs=rngs,
            )
        )

    def init_cache(self, batch: int, max_length: int, dtype=None) -> None:
        """An empty cache of ``max_length`` tokens for ``batch`` rows in every
        layer (a window's or a chunk's where the layer has one)."""
        if self.encoder:
            raise ValueError(
                "this model is an encoder (every layer bidirectional: "
                "use_bidirectional_attention): it has no cache and no "
                "continuation; its call gives the last hidden states."
            )
        shape = (batch, max_length, self.config["hidden_size"])
        for layer in self.layers:
            layer.attention.sublayer.init_cache(shape, dtype)

    def __call__(
        self, ids, *, positions=None, segments=None, decode=False, attention_mask=None
    ):
        if attention_mask is not None:  # 1: a real token (encoders' name)
            segments = attention_mask
        x = self.embed(ids)
        if self.embedding_multiplier is not None:  # Granite
            x = x * self.embedding_multiplier
        per_layer = (
            None if self.per_layer_inputs is None else self.per_layer_inputs(ids, x)
        )
        kept = {}  # Gemma 4: the keys and values of the layers others reuse
        for i, layer in enumerate(self.layers):
            source = self.kv_sources[i]
            out = layer(
                x,
                positions=positions,
                segments=segments,
                decode=decode,
                per_layer_input=None if per_layer is None else per_layer[:, :, i],
                shared_kv=None if source is None else kept[source],
                return_kv=i in self.kv_sources,
            )
            if i in self.kv_sources:
                x, kept[i] = out
            else:
                x = out
        x = self.norm(x)
        if self.encoder:
            return x
        logits = self.embed.attend(x) if self.lm_head is None else self.lm_head(x)
        if self.logit_scale is not None:  # Cohere
            logits = logits * self.logit_scale
        if self.logits_divisor is not None:  # Granite
            logits = logits / self.logits_divisor
        if self.final_softcap is not None:  # Gemma 2: cap * tanh(logits / cap)
            logits = self.final_softcap * jnp.tanh(logits / self.final_softcap)
        return logits


def build(config: Mapping[str, Any], *, dtype=None, seed: int = 0, attention=None):
    """A `Decoder` (or T5) with random weights (the loader then replaces them)."""
    if config.get("model_type") == "t5":
        from examples import t5

        return t5.T5(config, dtype=dtype, rngs=nnx.Rngs(seed))
    if config.get("model_type") in ("bert", "modernbert"):
        from examples import encoder

        kind = encoder.Bert if config["model_type"] == "bert" else encoder.ModernBert
        return kind(config, dtype=dtype, rngs=nnx.Rngs(seed))
    config = standard_config(config)
    family_of(config)
    fp.attention_schedule(config)  # the config's errors before any weight
    return Decoder(config, dtype=dtype, attention=attention, rngs=nnx.Rngs(seed))
