"""attention_schedule on published configs, and its refusals.

Each published config (tests/published_rope_configs.py, facts copied from
public copies of the models' ``config.json``) must give, for every layer,
the layer type, window, chunk and causality its transformers code uses
(written here from the family's rule, as a comprehension over the layer
index), and RoPE frequencies equal to the float64 formula of the layer's
rope type, or no RoPE on a NoPE layer.
"""

import math

import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests import published_rope_configs as pub
from tests import references

paper = references.paper_frequencies
FULL, SLIDING, CHUNKED = "full_attention", "sliding_attention", "chunked_attention"


def _gemma2_9b(i):
    # Gemma 2: (i + 1) % 2 -> sliding (window 4096), else full; one base.
    if (i + 1) % 2:
        return SLIDING, 4096, None, paper(256, 10000.0)
    return FULL, None, None, paper(256, 10000.0)


def _gemma3_1b(i):
    # Gemma 3: pattern 6; sliding layers rope_local_base_freq, full rope_theta.
    if (i + 1) % 6:
        return SLIDING, 512, None, paper(256, 10000.0)
    return FULL, None, None, paper(256, 1e6)


def _gemma3_4b(i):
    # gemma-3-4b-it: transformers' defaults for the bases; the linear factor
    # scales the full layers only (transformers 4 form).
    if (i + 1) % 6:
        return SLIDING, 1024, None, paper(256, 10000.0)
    return FULL, None, None, paper(256, 1e6) / 8.0


def _gemma4_31b(i):
    # Gemma 4: the listed layer types; full layers a 512 head, proportional.
    if (i + 1) % 6:
        return SLIDING, 1024, None, paper(256, 10000.0)
    return FULL, None, None, references.proportional_frequencies(512, 1e6, 0.25)


def _llama4_scout(i):
    # Llama 4: no_rope_layers absent -> every 4th layer NoPE (full, no
    # chunk); the others chunked (8192) with llama3-scaled RoPE.
    if (i + 1) % 4 == 0:
        return FULL, None, None, None
    return (
        CHUNKED,
        None,
        8192,
        references.llama3_frequencies(128, 5e5, 16.0, 1.0, 1.0, 8192),
    )


def _gemma3_27b(i):
    # gemma-3-27b-it: as 4b, a 128 head.
    if (i + 1) % 6:
        return SLIDING, 1024, None, paper(128, 10000.0)
    return FULL, None, None, paper(128, 1e6) / 8.0


def _olmo2_13b(i):
    return FULL, None, None, paper(128, 500000.0)


def _olmo3_32b(i):
    # OLMo 3: (i + 1) % 4 -> sliding (window 4096), unscaled in transformers
    # 4 form; full layers YaRN with the config's attention factor.
    if (i + 1) % 4:
        return SLIDING, 4096, None, paper(128, 500000.0)
    yarn = references.yarn_frequencies(
        128, 500000.0, 8.0, 8192, attention_factor=1.2079441541679836
    )
    return FULL, None, None, yarn


def _ministral3_8b(i):
    # Ministral 3: no window; YaRN with mscale = mscale_all_dim (factor 1).
    yarn = references.yarn_frequencies(
        128, 1e6, 16.0, 16384, mscale=1.0, mscale_all_dim=1.0
    )
    return FULL, None, None, yarn


def _maverick(i):
    # Maverick: Scout's pattern, no rope scaling.
    if (i + 1) % 4 == 0:
        return FULL, None, None, None
    return CHUNKED, None, 8192, paper(128, 500000.0)


def _gpt_oss(i):
    # gpt-oss: layer_types alternate from sliding (window 128); YaRN factor 32
    # from 4096, beta 32/1, no truncation, on every layer.
    yarn = references.yarn_frequencies(64, 150000.0, 32.0, 4096, truncate=False)
    if (i + 1) % 2:
        return SLIDING, 128, None, yarn
    return FULL, None, None, yarn


def _smollm3(i):
    # SmolLM3: no_rope_layers [1, 1, 1, 0] x 9; no window (use_sliding_window false).
    if (i + 1) % 4 == 0:
        return FULL, None, None, None
    return FULL, None, None, paper(128, 5e6)


def _qwen3_8b(i):
    return FULL, None, None, paper(128, 1e6)


def _modernbert(i):
    # ModernBERT: full on i % 3 == 0 (base 160000), else |q - k| <= 64
    # (base 10000).
    if i % 3 == 0:
        return FULL, None, None, paper(64, 160000.0)
    return SLIDING, 65, None, paper(64, 10000.0)


_LLAMA4 = {"scale": None, "sinks": False, "causal": True, "num_kv_heads": 8}
_GPT_OSS = {"sinks": True, "qkv_bias": True, "out_bias": True, "num_kv_heads": 8}
_MODERNBERT = {"causal": False, "qkv_bias": False, "norm_eps": 1e-5}

# name: (config, layers, per-layer rule, facts of every layer)
PUBLISHED = {
    "gemma-2-9b": (
        pub.GEMMA_2_9B,
        42,
        _gemma2_9b,
        {"scale": 256**-0.5, "softcap": 50.0, "qk_norm": None},
    ),
    "gemma-3-1b-it": (
        pub.GEMMA_3_1B_IT,
        26,
        _gemma3_1b,
        {"scale": 256**-0.5, "softcap": None, "qk_norm": "rms_unit_offset"},
    ),
    "gemma-3-4b-it": (
        pub.GEMMA_3_4B_IT_RAW,
        34,
        _gemma3_4b,
        {"scale": 256**-0.5, "qk_norm": "rms_unit_offset", "num_heads": 8},
    ),
    "gemma-4-31b": (
        pub.GEMMA_4_31B,
        60,
        _gemma4_31b,
        {"scale": 1.0, "qk_norm": "rms", "v_norm": "rms_unscaled"},
    ),
    "gemma-3-27b-it": (
        pub.GEMMA_3_27B_IT,
        62,
        _gemma3_27b,
        {"scale": 168**-0.5, "qk_norm": "rms_unit_offset", "num_kv_heads": 16},
    ),
    "olmo-2-1124-13b": (
        pub.OLMO_2_1124_13B,
        40,
        _olmo2_13b,
        {"qk_norm": "rms_all_heads", "norm_eps": 1e-6, "num_kv_heads": 40},
    ),
    "olmo-3.1-32b-instruct": (
        pub.OLMO_3_1_32B_INSTRUCT,
        64,
        _olmo3_32b,
        {"qk_norm": "rms_all_heads", "num_kv_heads": 8, "qkv_bias": False},
    ),
    "ministral-3-8b-instruct-2512": (
        pub.MINISTRAL_3_8B_INSTRUCT_2512,
        34,
        _ministral3_8b,
        {"qk_norm": None, "norm_eps": 1e-5},
    ),
    "llama-4-scout": (pub.LLAMA_4_SCOUT_17B_16E, 48, _llama4_scout, _LLAMA4),
    "llama-4-scout-instruct": (
        pub.LLAMA_4_SCOUT_17B_16E_INSTRUCT,
        48,
        _llama4_scout,
        _LLAMA4,
    ),
    "llama-4-maverick-instruct": (
        pub.LLAMA_4_MAVERICK_17B_128E_INSTRUCT,
        48,
        _maverick,
        {**_LLAMA4, "qk_norm": None},
    ),
    "gpt-oss-20b": (pub.GPT_OSS_20B, 24, _gpt_oss, _GPT_OSS),
    "gpt-oss-120b": (pub.GPT_OSS_120B, 36, _gpt_oss, _GPT_OSS),
    "smollm3-3b": (pub.SMOLLM3_3B, 36, _smollm3, {"num_kv_heads": 4}),
    "qwen3-8b": (pub.QWEN3_8B, 36, _qwen3_8b, {"qk_norm": "rms", "norm_eps": 1e-6}),
    "modernbert-base": (pub.MODERNBERT_BASE, 22, _modernbert, _MODERNBERT),
    "modernbert-large": (pub.MODERNBERT_LARGE, 28, _modernbert, _MODERNBERT),
}


def _frequencies(rope):
    inv_freq, factor = fp.rope_frequencies(
        rope.rotary_dim,
        base=rope.base,
        scaling=rope.scaling,
        max_position_embeddings=rope.max_position_embeddings,
    )
    return np.asarray(inv_freq), float(factor)


@pytest.mark.filterwarnings("error")  # a published config reads without a warning
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_schedule(name):
    config, n, rule, facts = PUBLISHED[name]
    schedule = fp.attention_schedule(config)
    assert len(schedule) == n
    for i, layer in enumerate(schedule):
        kind, window, chunk, inv_freq = rule(i)
        assert layer.layer == i
        assert (layer.layer_type, layer.sliding_window, layer.chunk_size) == (
            kind,
            window,
            chunk,
        ), f"layer {i}"
        for field, value in facts.items():
            assert getattr(layer, field) == value, (i, field)
        if inv_freq is None:
            assert layer.rope is None, f"layer {i}"
        else:
            inv_freq, factor = (
                inv_freq if isinstance(inv_freq, tuple) else (inv_freq, 1)
            )
            got, got_factor = _frequencies(layer.rope)
            np.testing.assert_allclose(got, inv_freq, rtol=1e-13, err_msg=f"layer {i}")
            assert math.isclose(got_factor, factor, rel_tol=1e-14), f"layer {i}"
        # The module of each layer has the layer's rotary, mask and norms.
        module = linen.MultiHeadAttention.from_hf_config(config, layer=i)
        assert (module.rotary is None) == (inv_freq is None)
        assert (module.sliding_window, module.chunk_size) == (window, chunk)
        assert module.causal == layer.causal


def test_nnx_modules_of_a_published_schedule_abstractly():
    """Llama 4 Scout's two kinds of layer, built without allocating."""
    config = pub.LLAMA_4_SCOUT_17B_16E
    for i in (2, 3):
        m = nnx.eval_shape(
            lambda i=i: pnnx.MultiHeadAttention.from_hf_config(
                config, layer=i, rngs=nnx.Rngs(0)
            )
        )
        assert m.query.kernel.shape == (5120, 40, 128)
        assert m.key.kernel.shape == (5120, 8, 128)
        assert (m.rotary is None, m.chunk_size) == ((False, 8192), (True, None))[i - 2]
        assert (m.query_scale is None) == (i == 2)


# -- Refusals -----------------------------------------------------------------

_SMALL = {
    "hidden_size": 32,
    "num_attention_heads": 4,
    "head_dim": 8,
    "num_hidden_layers": 4,
}


@pytest.mark.parametrize(
    "config, error, match",
    [
        # An unknown family whose config shapes attention.
        (
            {**_SMALL, "model_type": "mystery", "sliding_window": 8},
            ValueError,
            r"'mystery' is not a family .* \['sliding_window'\]",
        ),
        # A key the family's transformers code does not read.
        (
            {**_SMALL, "model_type": "llama", "sliding_window": 8},
            ValueError,
            r"does not read: \['sliding_window'\]",
        ),
        (
            {**_SMALL, "model_type": "gemma2", "no_rope_layers": [1, 1, 1, 0]},
            ValueError,
            r"does not read: \['no_rope_layers'\]",
        ),
        # A key one edit from one the schedule reads.
        (
            {**_SMALL, "model_type": "gemma2", "sliding_windw": 8},
            ValueError,
            "did you mean 'sliding_window'",
        ),
        # layer_types of the wrong length, with unknown names, or disagreeing
        # with the keys they derive from.
        (
            {**_SMALL, "model_type": "gpt_oss", "layer_types": [FULL] * 3},
            ValueError,
            "3 entries for num_hidden_layers=4",
        ),
        (
            {**_SMALL, "model_type": "gpt_oss", "layer_types": [FULL] * 3 + ["x"]},
            ValueError,
            r"layer types \['x'\]",
        ),
        (
            {
                **_SMALL,
                "model_type": "gemma3_text",
                "sliding_window_pattern": 2,
                "layer_types": [SLIDING, SLIDING, SLIDING, FULL],
            },
            ValueError,
            r"disagrees with \['sliding_window_pattern'\] at layers \[1\]",
        ),
        (
            {
                **_SMALL,
                "model_type": "llama4_text",
                "no_rope_layers": [1, 0, 1, 0],
                "layer_types": [CHUNKED, CHUNKED, CHUNKED, FULL],
            },
            ValueError,
            r"at layers \[1\]",
        ),
        (
            {**_SMALL, "model_type": "gemma4_text", "layer_types": [SLIDING] * 4},
            ValueError,
            "last layer must be full_attention",
        ),
        # A sliding layer without a window, a chunked layer without a chunk.
        (
            {
                **_SMALL,
                "model_type": "qwen3",
                "layer_types": [FULL, FULL, FULL, SLIDING],
            },
            ValueError,
            "layer 3 is sliding_attention but the config gives no 'sliding_window'",
        ),
        (
            {
                **_SMALL,
                "model_type": "llama4_text",
                "attention_chunk_size": None,
                "layer_types": [CHUNKED, CHUNKED, CHUNKED, FULL],
            },
            ValueError,
            "layer 0 is chunked_attention but the config gives no",
        ),
        # no_rope_layers of the wrong length or values.
        (
            {**_SMALL, "model_type": "smollm3", "no_rope_layers": [1, 0]},
            ValueError,
            "2 entries for num_hidden_layers=4",
        ),
        (
            {**_SMALL, "model_type": "smollm3", "no_rope_layers": [1, 2, 1, 1]},
            ValueError,
            r"got \[2\]",
        ),
        # What is not built yet, in published configs.
        (pub.DEEPSEEK_V4_FLASH, ValueError, "compressed sparse attention"),
        (
            {**_SMALL, "model_type": "gemma4_text", "num_kv_shared_layers": 4},
            ValueError,
            "leaves no layer to make the keys and values",
        ),
        # clip_qkv in a family whose code does not clip.
        ({**_SMALL, "model_type": "llama", "clip_qkv": 8.0}, ValueError, "clip_qkv"),
        (
            {**_SMALL, "model_type": "olmo", "clip_qkv": -1.0},
            ValueError,
            "'clip_qkv' must be positive",
        ),
        (
            {**_SMALL, "model_type": "llama"},
            None,
            None,
        ),
        ({"model_type": "llama", "hidden_size": 32}, ValueError, "num_hidden_layers"),
        (
            {**_SMALL, "model_type": "llama", "num_hidden_layers": "4"},
            TypeError,
            "num_hidden_layers",
        ),
    ],
)
def test_refusals_name_what_is_wrong(config, error, match):
    if error is None:  # the plain family: causal full attention with RoPE
        layers = fp.attention_schedule(config)
        assert [(a.layer_type, a.causal, a.rope.base) for a in layers] == [
            (FULL, True, 10000.0)
        ] * 4
        return
    with pytest.raises(error, match=match):
        fp.attention_schedule(config)


def test_the_schedule_reads_the_published_forms_alike():
    """transformers 5's layer_types and nested rope dict equal the
    transformers 4 pattern and top-level bases they were written from."""
    old = dict(pub.GEMMA_3_1B_IT)
    new = {
        key: value
        for key, value in old.items()
        if key not in ("sliding_window_pattern", "rope_theta", "rope_local_base_freq")
    }
    new["layer_types"] = [_gemma3_1b(i)[0] for i in range(26)]
    new["rope_parameters"] = {
        FULL: {"rope_type": "default", "rope_theta": 1000000.0},
        SLIDING: {"rope_type": "default", "rope_theta": 10000.0},
    }
    del new["rope_scaling"]
    assert fp.attention_schedule(old) == fp.attention_schedule(new)


def test_gemma4_as_transformers_5_saves_it_reads_as_published():
    """transformers 5 saves Gemma 4's global_head_dim and
    num_global_key_value_heads as per_layer_config entries of the
    full-attention layers (string keys) and writes num_kv_shared_layers: 0;
    the schedule is the published form's."""
    published = dict(pub.GEMMA_4_31B["text_config"])
    published |= {"attention_k_eq_v": True, "num_global_key_value_heads": 4}
    saved = {k: v for k, v in published.items() if "global" not in k}
    full = [i for i, t in enumerate(published["layer_types"]) if t == FULL]
    saved["per_layer_config"] = {
        str(i): {"head_dim": 512, "num_key_value_heads": 4} for i in full
    }
    saved["num_kv_shared_layers"] = 0
    layers = fp.attention_schedule(saved)
    assert layers == fp.attention_schedule(published)
    assert {(a.head_dim, a.num_kv_heads) for a in layers if a.k_eq_v} == {(512, 4)}
    with pytest.raises(ValueError, match="per_layer_config"):
        fp.attention_schedule({**saved, "per_layer_config": {"5": {"head_dim": 64}}})
    with pytest.raises(ValueError, match="per_layer_config' of a llama config"):
        fp.attention_schedule({**_SMALL, "model_type": "llama", "per_layer_config": {}})


@pytest.mark.parametrize(
    "extra, want",
    [
        # transformers 5.24: phi/modeling_phi.py (bias=True on all four),
        # gpt_neox (attention_bias defaults to True), stablelm (use_qkv_bias,
        # o without), glm/glm4 (attention_bias default True, o without),
        # helium (o without), ernie4_5 (use_bias on all four), seed_oss
        # (attention_out_bias on o, attention_bias default True), apertus and
        # exaone4 (per-head QK RMSNorm), persimmon (bias=True on all four).
        ({"model_type": "phi"}, (True, True, None)),
        ({"model_type": "gpt_neox"}, (True, True, None)),
        ({"model_type": "gpt_neox", "attention_bias": False}, (False, False, None)),
        ({"model_type": "stablelm", "use_qkv_bias": True}, (True, False, None)),
        ({"model_type": "glm4"}, (True, False, None)),
        ({"model_type": "helium", "attention_bias": True}, (True, False, None)),
        ({"model_type": "ernie4_5", "use_bias": True}, (True, True, None)),
        ({"model_type": "seed_oss"}, (True, False, None)),
        (
            {"model_type": "seed_oss", "attention_out_bias": True},
            (True, True, None),
        ),
        ({"model_type": "apertus"}, (False, False, "rms")),
        (
            {
                "model_type": "qwen3_vl",
                "rope_parameters": {"rope_theta": 1e4, "mrope_section": [2, 1, 1]},
            },
            (False, False, "rms"),
        ),
        ({"model_type": "exaone4", "sliding_window": None}, (False, False, "rms")),
        (
            {"model_type": "persimmon", "qk_layernorm": False},
            (True, True, None),
        ),
        ({"model_type": "persimmon"}, (True, True, "layer")),  # on by default
        ({"model_type": "phi", "qk_layernorm": True}, (True, True, "layer")),
        # StableLM 2 12B, Command R+: a LayerNorm weight for each head.
        ({"model_type": "stablelm"}, (False, False, None)),
        (
            {"model_type": "stablelm", "qk_layernorm": True, "use_qkv_bias": True},
            (True, False, "layer_each_head"),
        ),
        ({"model_type": "cohere"}, (False, False, None)),
        (
            {"model_type": "cohere", "use_qk_norm": True},
            (False, False, "layer_each_head"),
        ),
    ],
)
def test_biases_and_qk_norms_are_transformers(extra, want):
    layers = fp.attention_schedule({**_SMALL, **extra})
    assert {(a.qkv_bias, a.out_bias, a.qk_norm) for a in layers} == {want}


def test_falcon_rw_has_alibi_in_place_of_rope():
    """transformers 5.24's Falcon with alibi: no rotary applied; the biases
    of build_alibi_tensor (bfloat16 slopes times the keys' positions),
    divided by sqrt(head_dim) with the logits."""
    config = {
        "model_type": "falcon",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "alibi": True,
    }
    layers = fp.attention_schedule(config)
    assert {(a.rope, a.alibi) for a in layers} == {
        (None, fp.AlibiForm("key_position", "bfloat16", 0.25))
    }
    config["alibi"] = False
    assert {a.alibi for a in fp.attention_schedule(config)} == {None}
    assert all(a.rope is not None for a in fp.attention_schedule(config))


@pytest.mark.parametrize(
    "extra, full",
    [
        # transformers 5.24 exaone4: layer i full when (i + 1) % pattern == 0
        # (pattern 4, window 4096 by default); full layers without RoPE.
        ({}, [3, 7]),
        ({"sliding_window_pattern": 2}, [1, 3, 5, 7]),
        ({"sliding_window_pattern": "LLGG"}, [2, 3, 6, 7]),  # its docs' string form
        ({"layer_types": ["sliding_attention"] * 7 + ["full_attention"]}, [7]),
    ],
)
def test_exaone4_hybrid_layers_rotate_only_when_sliding(extra, full):
    config = {**_SMALL, "model_type": "exaone4", "num_hidden_layers": 8, **extra}
    layers = fp.attention_schedule(config)
    assert [a.layer for a in layers if a.layer_type == "full_attention"] == full
    for a in layers:
        sliding = a.layer_type == "sliding_attention"
        assert (a.rope is not None) == sliding
        assert a.sliding_window == (4096 if sliding else None)


def test_exaone4_without_a_window_is_full_and_rotates_everywhere():
    config = {**_SMALL, "model_type": "exaone4", "sliding_window": None}
    config["sliding_window_pattern"] = 0  # as transformers saves it then
    layers = fp.attention_schedule(config)
    assert {(a.layer_type, a.rope is not None) for a in layers} == {
        ("full_attention", True)
    }


def test_exaone4_pattern_string_holds_l_and_g():
    config = {**_SMALL, "model_type": "exaone4", "sliding_window_pattern": "LLX"}
    with pytest.raises(ValueError, match="'L' \\(sliding\\) and 'G'"):
        fp.attention_schedule(config)
    # Only EXAONE 4's config documents the string; Gemma 3 reads a number.
    config["model_type"] = "gemma3_text"
    config["sliding_window_pattern"] = "LLLG"
    with pytest.raises((TypeError, ValueError), match="sliding_window_pattern"):
        fp.attention_schedule(config)


@pytest.mark.parametrize(
    "extra, kv_heads, bias",
    [
        # transformers 5.24 falcon: multi_query (default true) is one
        # key/value head unless new_decoder_architecture (num_kv_heads, itself
        # num_attention_heads by default); 'bias' on all four projections.
        ({}, 1, False),
        ({"multi_query": False}, 4, False),
        ({"new_decoder_architecture": True, "num_kv_heads": 2}, 2, False),
        ({"new_decoder_architecture": True, "bias": True}, 4, True),
    ],
)
def test_falcon_key_value_heads_and_biases(extra, kv_heads, bias):
    config = {**_SMALL, "model_type": "falcon", **extra}
    layers = fp.attention_schedule(config)
    assert {(a.num_kv_heads, a.qkv_bias, a.out_bias) for a in layers} == {
        (kv_heads, bias, bias)
    }
    assert all(a.rope is not None for a in layers)


def test_falcon_refuses_fewer_key_heads_in_the_per_head_layout():
    # Without either flag transformers splits the fused projection as
    # [heads, 3, head_dim] and its reshape to num_kv_heads heads fails.
    config = {**_SMALL, "model_type": "falcon", "multi_query": False}
    with pytest.raises(ValueError, match="num_kv_heads=2 with multi_query"):
        fp.attention_schedule({**config, "num_kv_heads": 2})
    assert {a.num_kv_heads for a in fp.attention_schedule(config)} == {4}


@pytest.mark.parametrize("model_type", ["gpt_neox", "persimmon"])
def test_families_without_a_key_value_head_count_ignore_one(model_type):
    # transformers' GPT-NeoX and Persimmon read no num_key_value_heads.
    config = {**_SMALL, "model_type": model_type, "num_key_value_heads": 2}
    config["qk_layernorm"] = False
    assert {a.num_kv_heads for a in fp.attention_schedule(config)} == {4}


def test_persimmon_rotates_half_of_each_head_by_default():
    config = {**_SMALL, "model_type": "persimmon", "qk_layernorm": False}
    assert {a.rope.rotary_dim for a in fp.attention_schedule(config)} == {4}


def test_granite_scales_its_logits_by_attention_multiplier():
    """transformers' Granite attention scales q.k by attention_multiplier
    (granite-3: 1/128 with a 64 head, not 64 ** -0.5), 1.0 by default; a
    family that does not read the key refuses it."""
    config = {**_SMALL, "model_type": "granite", "attention_multiplier": 0.0078125}
    assert {a.scale for a in fp.attention_schedule(config)} == {0.0078125}
    del config["attention_multiplier"]
    assert {a.scale for a in fp.attention_schedule(config)} == {1.0}
    with pytest.raises(ValueError, match="attention_multiplier"):
        fp.attention_schedule(
            {**config, "model_type": "llama", "attention_multiplier": 1.0}
        )


def test_olmo_clip_qkv_is_read_and_null_is_none():
    for model_type in ("olmo", "olmoe"):
        config = {**_SMALL, "model_type": model_type, "clip_qkv": 8.0}
        assert {a.clip_qkv for a in fp.attention_schedule(config)} == {8.0}
        config["clip_qkv"] = None
        assert {a.clip_qkv for a in fp.attention_schedule(config)} == {None}


def test_olmoe_norms_q_and_k_over_all_heads():
    """OLMoE's q_norm/k_norm are RMSNorms over the whole projection
    (hidden_size features), epsilon 1e-5 by default, as OLMo 2's."""
    config = {**_SMALL, "model_type": "olmoe", "clip_qkv": None}
    layers = fp.attention_schedule(config)
    assert {(a.qk_norm, a.norm_eps) for a in layers} == {("rms_all_heads", 1e-5)}


def test_gemma3_bidirectional_is_every_layer_both_ways_with_half_windows():
    """EmbeddingGemma (transformers 5.24's Gemma3TextConfig): with
    use_bidirectional_attention no layer is causal, and a sliding layer sees
    |q - k| < sliding_window // 2 + 1 (the config's window 512 becomes 257)."""
    config = {
        **_SMALL,
        "model_type": "gemma3_text",
        "sliding_window": 512,
        "sliding_window_pattern": 2,
        "use_bidirectional_attention": True,
    }
    layers = fp.attention_schedule(config)
    assert [(a.causal, a.sliding_window) for a in layers[:2]] == [
        (False, 257),
        (False, None),
    ]
    config["use_bidirectional_attention"] = False
    layers = fp.attention_schedule(config)
    assert [(a.causal, a.sliding_window) for a in layers[:2]] == [
        (True, 512),
        (True, None),
    ]
    gemma2 = {**_SMALL, "model_type": "gemma2", "use_bidirectional_attention": True}
    with pytest.raises(ValueError, match=r"not read: \['use_bidirectional_attention"):
        fp.attention_schedule(gemma2)


@pytest.mark.parametrize(
    "value, causal, window",
    [(None, True, 512), ("vision", True, 512), ("all", False, 257)],
)
def test_gemma4_bidirectional_all_and_vision(value, causal, window):
    """transformers 5.24's Gemma 4: "all" is Gemma 3's true (no layer causal,
    the window halved); "vision", as the published 26B-A4B and 31B configs
    say, makes only an image's tokens attend both ways: text stays causal."""
    config = {
        **_SMALL,
        "model_type": "gemma4_text",
        "sliding_window": 512,
        "use_bidirectional_attention": value,
    }
    layers = fp.attention_schedule(config)
    assert {(a.causal, a.sliding_window) for a in layers} == {
        (causal, window),
        (causal, None),
    }


def test_gemma4_bidirectional_names_its_values():
    config = {
        **_SMALL,
        "model_type": "gemma4_text",
        "use_bidirectional_attention": True,
    }
    with pytest.raises(ValueError, match=r"one of \['all', 'vision'\] or null"):
        fp.attention_schedule(config)


@pytest.mark.parametrize(
    "extra, eps",
    [
        # transformers 5.24: StableLmLayerNormPerHead and CohereLayerNorm take
        # layer_norm_eps (default 1e-5), as the layers' own LayerNorms do.
        ({"model_type": "stablelm", "qk_layernorm": True}, 1e-5),
        (
            {"model_type": "stablelm", "qk_layernorm": True, "layer_norm_eps": 3e-6},
            3e-6,
        ),
        ({"model_type": "cohere", "use_qk_norm": True}, 1e-5),
        ({"model_type": "cohere", "use_qk_norm": True, "layer_norm_eps": 2e-6}, 2e-6),
    ],
)
def test_layernorms_of_each_head_take_the_layer_norm_eps(extra, eps):
    layers = fp.attention_schedule({**_SMALL, **extra})
    assert {(a.qk_norm, a.norm_eps) for a in layers} == {("layer_each_head", eps)}


def test_query_scale_is_the_published_formula():
    (nope,) = [
        a for a in fp.attention_schedule(pub.LLAMA_4_SCOUT_17B_16E) if a.layer == 3
    ]
    positions = np.array([0, 8190, 8191, 10**6])
    want = 1 + 0.1 * np.log(np.floor((positions + 1) / 8192) + 1)
    np.testing.assert_allclose(nope.query_scale(positions), want, rtol=1e-6)
    assert nope.query_scale.keywords == {"floor_scale": 8192, "attn_scale": 0.1}


def test_a_saved_config_keeps_layer_types_but_not_the_pattern():
    """transformers 5 saves Cohere2's layer_types and window and drops
    sliding_window_pattern: the listed types win over the default period."""
    config = {
        **_SMALL,
        "model_type": "cohere2",
        "sliding_window": 4,
        "layer_types": [SLIDING, FULL, SLIDING, FULL],
    }
    layers = fp.attention_schedule(config)
    assert [(a.layer_type, a.sliding_window, a.rope is None) for a in layers] == [
        (SLIDING, 4, False),
        (FULL, None, True),
    ] * 2
