"""MultiHeadAttention.from_hf_config, layer by layer, against float64.

Each small config below keeps one family's schedule keys (its layer types,
NoPE layers, windows, chunks, sinks, temperature, norms, scale, soft cap and
biases) at sizes that run in milliseconds. For every layer, both twins built
by ``from_hf_config(config, layer=i)`` must compute what the family's
transformers code computes, written here from its formula in float64 with
the module's own weights: the projections, the norms, RoPE with the
frequencies of the config's rope type, the query temperature, the mask of
the layer's kind and the softmax.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests import references
from tests.references import f64

T = 12
SMALL = {
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "max_position_embeddings": 64,
}
paper = references.paper_frequencies


def _temperature(floor_scale, attn_scale):
    # Llama 4: 1 + attn_scale * log(floor((p + 1) / floor_scale) + 1)
    return lambda p: 1 + attn_scale * np.log(np.floor((p + 1) / floor_scale) + 1)


def _llama_4_scaling(beta, original):
    # Ministral 3: 1 + beta * log(1 + floor(p / original))
    return lambda p: 1 + beta * np.log(1 + np.floor(p / original))


def _layer(kind, inv_freq=None, **fields):
    """What transformers' code does on one layer (the reference's input)."""
    return {
        "kind": kind,
        "inv_freq": inv_freq,
        "rotary_dim": None if inv_freq is None else 2 * len(inv_freq),
        "layout": "halves",
        "attention_factor": 1.0,
        "window": None,
        "chunk": None,
        "causal": True,
        # "rms", "unit_offset", "all_heads", "unscaled", "layer", "each_head"
        "qk": None,
        "qk_after": False,
        "v_norm": False,
        "eps": 1e-6,
        "scale": None,
        "softcap": None,
        "sinks": False,
        "qscale": None,
        "qkv_bias": False,
        "out_bias": False,
        "head_dim": 8,
        "kv_heads": 2,
        "k_eq_v": False,
        "clip": None,
        "alibi": False,
        **fields,
    }


_L3 = references.llama3_frequencies(8, 100.0, 2.0, 1.0, 2.0, 16)
_YARN, _YARN_FACTOR = references.yarn_frequencies(8, 100.0, 4.0, 16, truncate=False)
_MINISTRAL_YARN, _MINISTRAL_FACTOR = references.yarn_frequencies(8, 100.0, 2.0, 4)
_LLAMA4_NOPE = _layer(
    "full", qscale=_temperature(4, 0.5), eps=1e-5, layout="interleaved"
)
_LLAMA4_ROPE = _layer(
    "chunked",
    _L3,
    chunk=4,
    qk="unscaled",
    qk_after=True,
    eps=1e-5,
    layout="interleaved",
)

# name: (config, [what each layer computes])
FAMILIES = {
    # Llama 4: every 2nd layer NoPE (interval 2), chunked RoPE layers with the
    # weightless QK norm after RoPE, temperature tuning on the NoPE layers.
    "llama4": (
        {
            "model_type": "llama4",
            "text_config": {
                **SMALL,
                "num_hidden_layers": 4,
                "no_rope_layer_interval": 2,
                "attention_chunk_size": 4,
                "floor_scale": 4,
                "attn_scale": 0.5,
                "rms_norm_eps": 1e-5,
                "rope_theta": 100.0,
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 2.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 2.0,
                    "original_max_position_embeddings": 16,
                },
            },
        },
        [_LLAMA4_ROPE, _LLAMA4_NOPE, _LLAMA4_ROPE, _LLAMA4_NOPE],
    ),
    # gpt-oss: alternating sliding (window 3) and full, sinks on every layer,
    # biases on all four projections, YaRN without truncation.
    "gpt_oss": (
        {
            **SMALL,
            "model_type": "gpt_oss",
            "num_hidden_layers": 2,
            "sliding_window": 3,
            "rope_theta": 100.0,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 4.0,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "truncate": False,
                "original_max_position_embeddings": 16,
            },
        },
        [
            _layer(
                kind,
                _YARN,
                attention_factor=_YARN_FACTOR,
                window=window,
                sinks=True,
                qkv_bias=True,
                out_bias=True,
            )
            for kind, window in (("sliding", 3), ("full", None))
        ],
    ),
    # Gemma 3: pattern 2, (1 + w) QK norms before RoPE, query_pre_attn_scalar,
    # soft cap, local and global bases (transformers 4 form).
    "gemma3": (
        {
            **SMALL,
            "model_type": "gemma3_text",
            "num_hidden_layers": 2,
            "sliding_window_pattern": 2,
            "sliding_window": 3,
            "query_pre_attn_scalar": 16,
            "attn_logit_softcapping": 30.0,
            "rope_theta": 1000.0,
            "rope_local_base_freq": 10.0,
            "rms_norm_eps": 1e-6,
        },
        [
            _layer(
                "sliding",
                paper(8, 10.0),
                window=3,
                qk="unit_offset",
                scale=0.25,
                softcap=30.0,
            ),
            _layer(
                "full", paper(8, 1000.0), qk="unit_offset", scale=0.25, softcap=30.0
            ),
        ],
    ),
    # OLMo 3: three sliding layers then a full one; QK RMSNorm over all heads.
    "olmo3": (
        {
            **SMALL,
            "model_type": "olmo3",
            "num_hidden_layers": 4,
            "sliding_window": 3,
            "rope_theta": 100.0,
            "rms_norm_eps": 1e-5,
        },
        [_layer("sliding", paper(8, 100.0), window=3, qk="all_heads", eps=1e-5)] * 3
        + [_layer("full", paper(8, 100.0), qk="all_heads", eps=1e-5)],
    ),
    # ModernBERT: global every 2nd layer from layer 0, the others a
    # bidirectional window |q - k| <= local_attention // 2, two bases.
    "modernbert": (
        {
            **SMALL,
            "model_type": "modernbert",
            "head_dim": None,
            "num_key_value_heads": None,
            "num_hidden_layers": 2,
            "global_attn_every_n_layers": 2,
            "local_attention": 4,
            "global_rope_theta": 1000.0,
            "local_rope_theta": 10.0,
            "attention_bias": True,
        },
        [
            _layer(
                "full",
                paper(8, 1000.0),
                causal=False,
                kv_heads=4,
                qkv_bias=True,
                out_bias=True,
            ),
            _layer(
                "sliding",
                paper(8, 10.0),
                window=3,
                causal=False,
                kv_heads=4,
                qkv_bias=True,
                out_bias=True,
            ),
        ],
    ),
    # Cohere2: sliding RoPE layers, then a full layer without positions.
    "cohere2": (
        {
            **SMALL,
            "model_type": "cohere2",
            "head_dim": None,
            "num_hidden_layers": 2,
            "sliding_window_pattern": 2,
            "sliding_window": 3,
            "rope_theta": 100.0,
        },
        [
            _layer("sliding", paper(8, 100.0), window=3, layout="interleaved"),
            _layer("full"),
        ],
    ),
    # Ministral 3: every layer's queries times 1 + beta log(1 + floor(p / 4)).
    "ministral3": (
        {
            **SMALL,
            "model_type": "ministral3",
            "num_hidden_layers": 1,
            "rope_parameters": {
                "rope_type": "yarn",
                "factor": 2.0,
                "original_max_position_embeddings": 4,
                "rope_theta": 100.0,
                "llama_4_scaling_beta": 0.5,
            },
        },
        [
            _layer(
                "full",
                _MINISTRAL_YARN,
                attention_factor=_MINISTRAL_FACTOR,
                qscale=_llama_4_scaling(0.5, 4),
            )
        ],
    ),
    # Gemma 4: scale 1, QK norms with a plain weight, V norm without one, a
    # wider head on the full layer (global_head_dim) with proportional RoPE,
    # whose values are its keys (attention_k_eq_v) with one kv head.
    "gemma4": (
        {
            **SMALL,
            "model_type": "gemma4_text",
            "num_hidden_layers": 2,
            "attention_k_eq_v": True,
            "num_global_key_value_heads": 1,
            "global_head_dim": 16,
            "sliding_window": 3,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                "full_attention": {
                    "rope_type": "proportional",
                    "partial_rotary_factor": 0.25,
                    "rope_theta": 1000.0,
                },
            },
        },
        [
            _layer(
                "sliding", paper(8, 10.0), window=3, qk="rms", v_norm=True, scale=1.0
            ),
            _layer(
                "full",
                references.proportional_frequencies(16, 1000.0, 0.25),
                qk="rms",
                v_norm=True,
                scale=1.0,
                head_dim=16,
                kv_heads=1,
                k_eq_v=True,
            ),
        ],
    ),
    # Qwen3 with use_sliding_window: layers from max_window_layers slide.
    "qwen3": (
        {
            **SMALL,
            "model_type": "qwen3",
            "num_hidden_layers": 2,
            "use_sliding_window": True,
            "sliding_window": 3,
            "max_window_layers": 1,
            "rope_theta": 100.0,
        },
        [
            _layer("full", paper(8, 100.0), qk="rms"),
            _layer("sliding", paper(8, 100.0), window=3, qk="rms"),
        ],
    ),
    # Persimmon: q/k/v/o biases, LayerNorms (weight and bias) of q and k per
    # head before RoPE (qk_layernorm, on by default), half of each head
    # rotating; every head its own keys (transformers reads no kv heads).
    "persimmon": (
        {
            **SMALL,
            "model_type": "persimmon",
            "num_hidden_layers": 1,
            "num_key_value_heads": None,
            "layer_norm_eps": 1e-4,
            "rope_theta": 100.0,
        },
        [
            _layer(
                "full",
                paper(4, 100.0),
                qk="layer",
                eps=1e-4,
                qkv_bias=True,
                out_bias=True,
                kv_heads=4,
            )
        ],
    ),
    # StableLM 2 12B and Command R+: a LayerNorm of each head of q and of k,
    # a weight for each head and no bias, before RoPE (StableLM: a part of
    # each head rotating; Command R+: interleaved pairs).
    "stablelm_qk_layernorm": (
        {
            **SMALL,
            "model_type": "stablelm",
            "num_hidden_layers": 1,
            "qk_layernorm": True,
            "partial_rotary_factor": 0.5,
            "layer_norm_eps": 1e-4,
            "rope_theta": 100.0,
        },
        [_layer("full", paper(4, 100.0), qk="each_head", eps=1e-4)],
    ),
    "cohere_qk_norm": (
        {
            **SMALL,
            "model_type": "cohere",
            "num_hidden_layers": 1,
            "use_qk_norm": True,
            "rope_theta": 100.0,
        },
        [
            _layer(
                "full", paper(8, 100.0), qk="each_head", eps=1e-5, layout="interleaved"
            )
        ],
    ),
    # Falcon-RW: ALiBi in place of RoPE as its code computes it (keys'
    # positions, bfloat16 slopes and products, scaled by head_dim ** -0.5);
    # 16 heads, whose slopes bfloat16 rounds; every head its own keys
    # (multi_query false), biases on all four projections.
    "falcon_rw": (
        {
            **SMALL,
            "model_type": "falcon",
            "head_dim": None,
            "num_attention_heads": 16,
            "num_hidden_layers": 1,
            "alibi": True,
            "multi_query": False,
            "bias": True,
        },
        [
            _layer(
                "full",
                alibi=True,
                head_dim=2,
                kv_heads=16,
                qkv_bias=True,
                out_bias=True,
            )
        ],
    ),
    # OLMoE with clip_qkv: q and k normed over all heads, then q, k and v
    # clipped, then RoPE; OLMo 1 clipping its projections.
    "olmoe_clipped": (
        {
            **SMALL,
            "model_type": "olmoe",
            "num_hidden_layers": 1,
            "clip_qkv": 0.5,
            "rope_theta": 100.0,
        },
        [_layer("full", paper(8, 100.0), qk="all_heads", eps=1e-5, clip=0.5)],
    ),
    "olmo_clipped": (
        {
            **SMALL,
            "model_type": "olmo",
            "num_hidden_layers": 1,
            "clip_qkv": 0.5,
            "rope_theta": 100.0,
        },
        [_layer("full", paper(8, 100.0), clip=0.5)],
    ),
    # SmolLM3: no_rope_layers as published (0: no RoPE).
    "smollm3": (
        {
            **SMALL,
            "model_type": "smollm3",
            "num_hidden_layers": 2,
            "no_rope_layers": [0, 1],
            "rope_theta": 100.0,
        },
        [_layer("full"), _layer("full", paper(8, 100.0))],
    ),
}


def _reference(layer, w, x):
    """float64 attention of one layer from its formula, with weights ``w``."""
    # The module has exactly the parameters the family's code has.
    expected = {"wq", "wk", "wo"} | (set() if layer["k_eq_v"] else {"wv"})
    if layer["qkv_bias"]:
        expected |= {"bq", "bk", "bv"}
    if layer["out_bias"]:
        expected.add("bo")
    if layer["qk"] in ("rms", "unit_offset", "all_heads", "layer", "each_head"):
        expected |= {"q_scale", "k_scale"}
    if layer["qk"] == "layer":
        expected |= {"q_bias", "k_bias"}
    if layer["sinks"]:
        expected.add("sinks")
    assert set(w) == expected
    assert w["wq"].shape[-1] == layer["head_dim"]
    assert w["wk"].shape[-2] == layer["kv_heads"]
    x = f64(x)
    pos = np.arange(x.shape[-2])
    q = np.einsum("bsi,ihd->bshd", x, f64(w["wq"])) + f64(w.get("bq", 0.0))
    k = np.einsum("bsi,ihd->bshd", x, f64(w["wk"])) + f64(w.get("bk", 0.0))
    if layer["k_eq_v"]:  # Gemma 4: the values are the keys' projection
        v = k.copy()
    else:
        v = np.einsum("bsi,ihd->bshd", x, f64(w["wv"])) + f64(w.get("bv", 0.0))
    if layer["v_norm"]:
        v = references.rms_norm(v, None, layer["eps"])

    def qk_norm(q, k):
        kind, eps = layer["qk"], layer["eps"]
        if kind == "all_heads":

            def flat(a, s):
                whole = references.rms_norm(a.reshape(*a.shape[:-2], -1), s, eps)
                return whole.reshape(a.shape)

            return flat(q, w["q_scale"]), flat(k, w["k_scale"])
        if kind == "layer":
            return (
                references.layer_norm(q, w["q_scale"], w["q_bias"], eps),
                references.layer_norm(k, w["k_scale"], w["k_bias"], eps),
            )
        if kind == "each_head":  # scales [heads, head_dim], no bias
            assert w["q_scale"].shape == q.shape[-2:], w["q_scale"].shape
            assert w["k_scale"].shape == k.shape[-2:], w["k_scale"].shape
            return (
                references.layer_norm(q, w["q_scale"], None, eps),
                references.layer_norm(k, w["k_scale"], None, eps),
            )
        if kind == "unscaled":
            return references.rms_norm(q, None, eps), references.rms_norm(k, None, eps)
        offset = kind == "unit_offset"
        return (
            references.rms_norm(q, w["q_scale"], eps, offset),
            references.rms_norm(k, w["k_scale"], eps, offset),
        )

    if layer["qk"] and not layer["qk_after"]:
        q, k = qk_norm(q, k)
    if layer["clip"] is not None:  # OLMo: after the norm, before RoPE
        q, k, v = (np.clip(a, -layer["clip"], layer["clip"]) for a in (q, k, v))
    if layer["inv_freq"] is not None:
        rotate = functools.partial(
            references.rope,
            positions=pos[None],
            inv_freq=layer["inv_freq"],
            layout=layer["layout"],
            rotary_dim=layer["rotary_dim"],
            attention_factor=layer["attention_factor"],
        )
        q, k = rotate(q), rotate(k)
    if layer["qk"] and layer["qk_after"]:
        q, k = qk_norm(q, k)
    if layer["qscale"] is not None:
        q = q * layer["qscale"](pos)[None, :, None, None]
    window = layer["window"]
    mask = references.attention_mask(pos, pos, causal=layer["causal"], window=window)
    if layer["chunk"] is not None:
        mask = mask & (pos[:, None] // layer["chunk"] == pos[None] // layer["chunk"])
    bias = None
    if layer["alibi"]:  # [heads, k] of the keys' positions, for every query
        heads, head_dim = q.shape[-2], q.shape[-1]
        bias = references.falcon_rw_alibi(heads, pos, head_dim)[:, None, :]
    out = references.attention(
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        scale=layer["scale"],
        softcap=layer["softcap"],
        sinks=w.get("sinks"),
    )
    return np.einsum("bshd,hdo->bso", out, f64(w["wo"])) + f64(w.get("bo", 0.0))


def _nnx_weights(m):
    w = {"wq": m.query.kernel[...], "wk": m.key.kernel[...], "wo": m.out.kernel[...]}
    if m.value is not None:
        w["wv"] = m.value.kernel[...]
    for name, proj in (("q", m.query), ("k", m.key), ("v", m.value), ("o", m.out)):
        if proj is not None and proj.bias is not None:
            w[f"b{name}"] = proj.bias[...]
    if m.query_norm is not None and m.query_norm.scale is not None:
        w["q_scale"], w["k_scale"] = m.query_norm.scale[...], m.key_norm.scale[...]
    if m.query_norm is not None and getattr(m.query_norm, "bias", None) is not None:
        w["q_bias"], w["k_bias"] = m.query_norm.bias[...], m.key_norm.bias[...]
    if m.sinks is not None:
        w["sinks"] = m.sinks[...]
    return w


def _randomize_nnx(m, seed):
    """Biases, norm scales and sinks away from their zeros/ones inits."""
    rng = np.random.default_rng(seed)
    targets = [
        getattr(m, name).bias
        for name in ("query", "key", "value", "out")
        if getattr(m, name) is not None
    ]
    targets += [
        getattr(getattr(m, n), part, None)
        for n in ("query_norm", "key_norm")
        if getattr(m, n)
        for part in ("scale", "bias")
    ]
    targets += [m.sinks]
    for variable in targets:
        if variable is not None:
            shape = variable[...].shape
            variable[...] = jnp.asarray(0.5 * rng.standard_normal(shape), jnp.float32)


def _randomize_linen(params, seed):
    rng = np.random.default_rng(seed)

    def change(path, leaf):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return leaf
        return jnp.asarray(0.5 * rng.standard_normal(leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(change, params)


def _linen_weights(params):
    w = {
        "wq": params["query"]["kernel"],
        "wk": params["key"]["kernel"],
        "wo": params["out"]["kernel"],
    }
    if "value" in params:
        w["wv"] = params["value"]["kernel"]
    for name, key in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
        if "bias" in params.get(key, {}):
            w[f"b{name}"] = params[key]["bias"]
    if "scale" in params.get("query_norm", {}):
        w["q_scale"] = params["query_norm"]["scale"]
        w["k_scale"] = params["key_norm"]["scale"]
    if "bias" in params.get("query_norm", {}):
        w["q_bias"] = params["query_norm"]["bias"]
        w["k_bias"] = params["key_norm"]["bias"]
    if "sinks" in params:
        w["sinks"] = params["sinks"]
    return w


def _x(seed):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((2, T, 32)).astype(np.float32))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_layer_is_its_family_formula_in_both_twins(name):
    config, layers = FAMILIES[name]
    for i, layer in enumerate(layers):
        x = _x(i)
        m = pnnx.MultiHeadAttention.from_hf_config(config, layer=i, rngs=nnx.Rngs(i))
        _randomize_nnx(m, i)
        want = _reference(layer, _nnx_weights(m), x)
        np.testing.assert_allclose(f64(m(x)), want, atol=2e-5, err_msg=f"layer {i}")

        module = linen.MultiHeadAttention.from_hf_config(config, layer=i)
        params = nn.meta.unbox(module.init(jax.random.key(i), x)["params"])
        params = _randomize_linen(params, i)
        got = module.apply({"params": params}, x)
        want = _reference(layer, _linen_weights(params), x)
        np.testing.assert_allclose(f64(got), want, atol=2e-5, err_msg=f"layer {i}")


@pytest.mark.parametrize("name", ["llama4", "gpt_oss"])
def test_jitted_prefill_then_steps_equal_the_whole_sequence(name):
    """The decode cache of each layer kind (chunks, windows, NoPE with the
    temperature, sinks) under nnx.jit: prefill 5 tokens, then one at a time."""
    config, layers = FAMILIES[name]

    @nnx.jit
    def step(m, x):
        return m(x, decode=True)

    for i in range(len(layers)):
        m = pnnx.MultiHeadAttention.from_hf_config(config, layer=i, rngs=nnx.Rngs(i))
        _randomize_nnx(m, i)
        x = _x(10 + i)
        whole = m(x)
        m.init_cache(x.shape)
        parts = [step(m, x[:, :5])] + [step(m, x[:, t : t + 1]) for t in range(5, T)]
        np.testing.assert_allclose(
            f64(jnp.concatenate(parts, axis=1)), f64(whole), atol=2e-5
        )


def test_overrides_are_only_what_a_config_does_not_say():
    config = FAMILIES["gpt_oss"][0]
    m = linen.MultiHeadAttention.from_hf_config(
        config, layer=0, dtype=jnp.bfloat16, implementation="blockwise"
    )
    assert (m.dtype, m.implementation, m.sliding_window) == (
        jnp.bfloat16,
        "blockwise",
        3,
    )
    with pytest.raises(TypeError, match=r"\['sliding_window'\] cannot be set"):
        linen.MultiHeadAttention.from_hf_config(config, layer=0, sliding_window=8)
    with pytest.raises(ValueError, match="layer 2 is out of range: the config has 2"):
        pnnx.MultiHeadAttention.from_hf_config(config, layer=2, rngs=nnx.Rngs(0))
    m = pnnx.MultiHeadAttention.from_hf_config(config, layer=1, rngs=nnx.Rngs(0))
    assert m.in_features == 32 and m.sinks[...].shape == (4,)


def test_nope_layers_have_no_rotary_and_the_full_width_norms_their_sizes():
    llama4, _ = FAMILIES["llama4"]
    rope, nope = (
        linen.MultiHeadAttention.from_hf_config(llama4, layer=i) for i in (0, 1)
    )
    assert rope.rotary is not None and rope.chunk_size == 4
    assert nope.rotary is None and nope.chunk_size is None and nope.qk_norm is None
    assert math.isclose(
        float(nope.query_scale(jnp.array(7))), 1 + 0.5 * math.log(3), rel_tol=1e-6
    )
    olmo3, _ = FAMILIES["olmo3"]
    m = pnnx.MultiHeadAttention.from_hf_config(olmo3, layer=0, rngs=nnx.Rngs(0))
    assert m.query_norm.scale[...].shape == (32,)  # 4 heads x 8
    assert m.key_norm.scale[...].shape == (16,)  # 2 kv heads x 8
