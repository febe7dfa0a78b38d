"""rope_config_from_hf / RotaryEmbedding.from_hf_config on published configs.

Each published config (tests/published_rope_configs.py) must give the head and
rotary dimensions, base and layout its model uses, and frequencies equal to the
float64 formula of its rope type (tests/references.py).
"""

import copy
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from flax_posenc.linen import RotaryEmbedding
from tests import published_rope_configs as pub
from tests import references
from tests.references import f64

paper = references.paper_frequencies


def _longrope(config, seq_len, dim):
    scaling = config["rope_scaling"]
    return references.longrope_frequencies(
        dim,
        config.get("rope_theta", 10_000.0),
        scaling["short_factor"],
        scaling["long_factor"],
        config["original_max_position_embeddings"],
        seq_len=seq_len,
        max_position_embeddings=config["max_position_embeddings"],
    )


# name: (config, layer_type, seq_len, (head_dim, rotary_dim, base, layout),
#        reference (inv_freq, attention_factor), mrope (section, interleaved))
PUBLISHED = {
    "llama-3.1-8b": (
        pub.LLAMA_3_1_8B,
        None,
        None,
        (128, 128, 5e5, "halves"),
        lambda: (references.llama3_frequencies(128, 5e5, 8.0, 1.0, 4.0, 8192), 1.0),
        None,
    ),
    "llama-3.2-1b": (
        pub.LLAMA_3_2_1B,
        None,
        None,
        (64, 64, 5e5, "halves"),
        lambda: (references.llama3_frequencies(64, 5e5, 32.0, 1.0, 4.0, 8192), 1.0),
        None,
    ),
    "llama-4-scout": (
        pub.LLAMA_4_SCOUT_17B_16E,
        None,
        None,
        (128, 128, 5e5, "interleaved"),
        lambda: (references.llama3_frequencies(128, 5e5, 16.0, 1.0, 1.0, 8192), 1.0),
        None,
    ),
    "qwen2.5-7b": (
        pub.QWEN2_5_7B_INSTRUCT,
        None,
        None,
        (128, 128, 1e6, "halves"),
        lambda: (paper(128, 1e6), 1.0),
        None,
    ),
    "qwen2.5-7b-yarn": (
        {
            **pub.QWEN2_5_7B_INSTRUCT,
            "rope_scaling": pub.QWEN2_5_7B_INSTRUCT_YARN_ROPE_SCALING,
        },
        None,
        None,
        (128, 128, 1e6, "halves"),
        lambda: references.yarn_frequencies(128, 1e6, 4.0, 32768),
        None,
    ),
    "qwen3-8b": (
        pub.QWEN3_8B,
        None,
        None,
        (128, 128, 1e6, "halves"),
        lambda: (paper(128, 1e6), 1.0),
        None,
    ),
    "gemma-2-9b": (
        pub.GEMMA_2_9B,
        None,
        None,
        (256, 256, 1e4, "halves"),
        lambda: (paper(256, 1e4), 1.0),
        None,
    ),
    "gemma-2-9b-sliding": (
        pub.GEMMA_2_9B,
        "sliding_attention",
        None,
        (256, 256, 1e4, "halves"),
        lambda: (paper(256, 1e4), 1.0),
        None,
    ),
    "gemma-3-4b-full": (
        pub.GEMMA_3_4B_IT_RAW,
        "full_attention",
        None,
        (256, 256, 1e6, "halves"),
        lambda: (paper(256, 1e6) / 8.0, 1.0),
        None,
    ),
    "gemma-3-4b-sliding": (
        pub.GEMMA_3_4B_IT_RAW,
        "sliding_attention",
        None,
        (256, 256, 1e4, "halves"),
        lambda: (paper(256, 1e4), 1.0),
        None,
    ),
    "gemma-3-1b-full": (
        pub.GEMMA_3_1B_IT,
        "full_attention",
        None,
        (256, 256, 1e6, "halves"),
        lambda: (paper(256, 1e6), 1.0),
        None,
    ),
    "gemma-3-1b-sliding": (
        pub.GEMMA_3_1B_IT,
        "sliding_attention",
        None,
        (256, 256, 1e4, "halves"),
        lambda: (paper(256, 1e4), 1.0),
        None,
    ),
    "gemma-4-31b-full": (
        pub.GEMMA_4_31B,
        "full_attention",
        None,
        (512, 512, 1e6, "halves"),
        lambda: (references.proportional_frequencies(512, 1e6, 0.25), 1.0),
        None,
    ),
    "gemma-4-31b-sliding": (
        pub.GEMMA_4_31B,
        "sliding_attention",
        None,
        (256, 256, 1e4, "halves"),
        lambda: (paper(256, 1e4), 1.0),
        None,
    ),
    "phi-3-mini-128k-short": (
        pub.PHI_3_MINI_128K_INSTRUCT,
        None,
        4096,
        (96, 96, 1e4, "halves"),
        lambda: _longrope(pub.PHI_3_MINI_128K_INSTRUCT, 4096, 96),
        None,
    ),
    "phi-3.5-mini-short": (
        pub.PHI_3_5_MINI_INSTRUCT,
        None,
        4096,
        (96, 96, 1e4, "halves"),
        lambda: _longrope(pub.PHI_3_5_MINI_INSTRUCT, 4096, 96),
        None,
    ),
    "phi-3.5-mini-long": (
        pub.PHI_3_5_MINI_INSTRUCT,
        None,
        4097,
        (96, 96, 1e4, "halves"),
        lambda: _longrope(pub.PHI_3_5_MINI_INSTRUCT, 4097, 96),
        None,
    ),
    "phi-4-mini-long": (
        pub.PHI_4_MINI_INSTRUCT,
        None,
        100_000,
        (128, 96, 1e4, "halves"),
        lambda: _longrope(pub.PHI_4_MINI_INSTRUCT, 100_000, 96),
        None,
    ),
    "deepseek-v3": (
        pub.DEEPSEEK_V3,
        None,
        None,
        (64, 64, 1e4, "interleaved"),
        lambda: references.yarn_frequencies(
            64, 1e4, 40.0, 4096, mscale=1.0, mscale_all_dim=1.0
        ),
        None,
    ),
    "mistral-7b": (
        pub.MISTRAL_7B_V0_1,
        None,
        None,
        (128, 128, 1e4, "halves"),
        lambda: (paper(128, 1e4), 1.0),
        None,
    ),
    "pythia-70m": (
        pub.PYTHIA_70M,
        None,
        None,
        (64, 16, 1e4, "halves"),
        lambda: (paper(16, 1e4), 1.0),
        None,
    ),
    "gpt-j-6b": (
        pub.GPT_J_6B,
        None,
        None,
        (256, 64, 1e4, "interleaved"),
        lambda: (paper(64, 1e4), 1.0),
        None,
    ),
    "qwen2-vl-7b": (
        pub.QWEN2_VL_7B_INSTRUCT,
        None,
        None,
        (128, 128, 1e6, "halves"),
        lambda: (paper(128, 1e6), 1.0),
        ((16, 24, 24), False),
    ),
    "qwen2.5-vl-7b": (
        pub.QWEN2_5_VL_7B_INSTRUCT,
        None,
        None,
        (128, 128, 1e6, "halves"),
        lambda: (paper(128, 1e6), 1.0),
        ((16, 24, 24), False),
    ),
    "qwen3-vl-8b": (
        pub.QWEN3_VL_8B_INSTRUCT,
        None,
        None,
        (128, 128, 5e6, "halves"),
        lambda: (paper(128, 5e6), 1.0),
        ((24, 20, 20), True),
    ),
}


@pytest.mark.filterwarnings("error")  # a published config reads without a warning
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_config(name):
    config, layer_type, seq_len, dims, reference, mrope = PUBLISHED[name]
    before = copy.deepcopy(config)
    found = fp.rope_config_from_hf(config, layer_type=layer_type)
    assert config == before  # the caller's dict is not modified
    head_dim, rotary_dim, _, layout = dims
    assert (found.head_dim, found.rotary_dim, found.base, found.layout) == dims
    inv_freq, attention = fp.rope_frequencies(
        found.rotary_dim,
        base=found.base,
        scaling=found.scaling,
        seq_len=seq_len,
        max_position_embeddings=found.max_position_embeddings,
    )
    expected, expected_attention = reference()
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-13)
    np.testing.assert_allclose(attention, expected_attention, rtol=1e-14)
    section = None if mrope is None else mrope[0]
    assert found.mrope_section == section
    if mrope is not None:
        assert found.mrope_interleaved == mrope[1]

    # The module built from the same config rotates q as the formula says.
    rotary = RotaryEmbedding.from_hf_config(config, layer_type=layer_type)
    x = np.random.default_rng(head_dim).standard_normal((1, 3, 2, head_dim))
    x = jnp.asarray(x.astype(np.float32))
    positions = jnp.array([[0, 7, 2500]])
    if mrope is not None:
        positions = positions[..., None]  # text tokens: every axis equal
    q_rot, _ = rotary.apply({}, x, x, positions=positions, seq_len=seq_len)
    want = references.rope(
        x, np.array([[0, 7, 2500]]), expected, layout, rotary_dim, expected_attention
    )
    chex.assert_trees_all_close(f64(q_rot), want, atol=5e-6)


def test_deepseek_reference_is_ours_de_interleaved():
    """transformers' DeepSeek-V3 output = ours (interleaved) permuted by perm."""
    found = fp.rope_config_from_hf(pub.DEEPSEEK_V3)
    x = np.random.default_rng(0).standard_normal((1, 4, 2, 64)).astype(np.float32)
    positions = np.array([[0, 1, 300, 4000]])
    ours = fp.apply_rope(x, positions, **found.kwargs)
    inv_freq, attention = references.yarn_frequencies(
        64, 1e4, 40.0, 4096, mscale=1.0, mscale_all_dim=1.0
    )
    assert attention == 1.0
    theirs = references.deepseek_rope(x, positions, inv_freq)
    perm = np.concatenate([np.arange(0, 64, 2), np.arange(1, 64, 2)])
    chex.assert_trees_all_close(f64(ours)[..., perm], theirs, atol=3e-6)


def test_transformers_5_form_equals_transformers_4_form():
    legacy = pub.LLAMA_3_1_8B
    params = {**legacy["rope_scaling"], "rope_theta": legacy["rope_theta"]}
    new = {k: v for k, v in legacy.items() if k not in ("rope_scaling", "rope_theta")}
    new["rope_parameters"] = params
    assert fp.rope_config_from_hf(new) == fp.rope_config_from_hf(legacy)
    # Gemma 3 re-saved by transformers 5 nests its two layer types.
    gemma = {
        k: v
        for k, v in pub.GEMMA_3_1B_IT.items()
        if k not in ("rope_scaling", "rope_theta", "rope_local_base_freq")
    }
    gemma["rope_parameters"] = {
        "full_attention": {"rope_type": "default", "rope_theta": 1000000},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000},
    }
    for layer_type in ("full_attention", "sliding_attention"):
        assert fp.rope_config_from_hf(
            gemma, layer_type=layer_type
        ) == fp.rope_config_from_hf(pub.GEMMA_3_1B_IT, layer_type=layer_type)


@pytest.mark.parametrize(
    ("whole", "layer_type"),
    [
        (pub.GEMMA_3_4B_IT_RAW, "full_attention"),
        (pub.GEMMA_4_31B, "full_attention"),
        (pub.QWEN3_VL_8B_INSTRUCT, None),
        (pub.LLAMA_4_SCOUT_17B_16E, None),
    ],
)
def test_multimodal_config_whole_or_text_config(whole, layer_type):
    text = whole["text_config"]
    assert fp.rope_config_from_hf(
        whole, layer_type=layer_type
    ) == fp.rope_config_from_hf(text, layer_type=layer_type)


def test_phi3_top_level_original_length_wins():
    config = copy.deepcopy(pub.PHI_3_5_MINI_INSTRUCT)
    config["rope_scaling"]["original_max_position_embeddings"] = 2048
    found = fp.rope_config_from_hf(config)
    assert found.scaling.original_max_position_embeddings == 4096


def test_rope_scaling_and_rope_parameters_must_agree():
    config = {
        **pub.MISTRAL_7B_V0_1,
        "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    }
    with pytest.raises(ValueError, match=r"rope_scaling .* rope_parameters .*"):
        fp.rope_config_from_hf(config)
    # Agreeing on the keys they share (and "type" is "rope_type"): read as one.
    config["rope_scaling"] = {"type": "linear", "factor": 2.0}
    config["rope_parameters"] = {"rope_type": "linear", "rope_theta": 5e5}
    found = fp.rope_config_from_hf(config)
    assert (found.base, found.scaling) == (5e5, fp.LinearScaling(factor=2.0))


def test_layout_override():
    found = fp.rope_config_from_hf(pub.LLAMA_3_1_8B, layout="interleaved")
    assert found.layout == "interleaved"
    with pytest.raises(ValueError, match="layout"):
        fp.rope_config_from_hf(pub.LLAMA_3_1_8B, layout="pairs")


@pytest.mark.parametrize("config", [pub.GEMMA_3_4B_IT_RAW, pub.GEMMA_4_31B])
def test_per_layer_config_needs_layer_type(config):
    with pytest.raises(ValueError, match="'full_attention', 'sliding_attention'"):
        fp.rope_config_from_hf(config)
    with pytest.raises(ValueError, match="'chunked_attention' is not in this config"):
        fp.rope_config_from_hf(config, layer_type="chunked_attention")


def test_unknown_layer_type_of_a_config_that_lists_them():
    config = {**pub.MISTRAL_7B_V0_1, "layer_types": ["full_attention"] * 4}
    with pytest.raises(ValueError, match=r"it has \['full_attention'\]"):
        fp.rope_config_from_hf(config, layer_type="sliding_attention")


def test_config_errors():
    with pytest.raises(TypeError, match="config must be a dict"):
        fp.rope_config_from_hf('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="no head dimension"):
        fp.rope_config_from_hf({"model_type": "llama", "rope_theta": 1e4})
    with pytest.raises(ValueError, match="qk_rope_head_dim"):
        fp.rope_config_from_hf({"model_type": "deepseek_v3", "hidden_size": 64})
    bad = copy.deepcopy(pub.PHI_3_5_MINI_INSTRUCT)
    bad["rope_scaling"]["long_factor"] = bad["rope_scaling"]["long_factor"][:-1]
    with pytest.raises(ValueError, match="long_factor must have dim // 2 = 48"):
        fp.rope_config_from_hf(bad)


def test_module_checks_the_head_dim():
    rotary = RotaryEmbedding.from_hf_config(pub.LLAMA_3_2_1B)
    x = jnp.ones((1, 3, 2, 128))
    with pytest.raises(ValueError, match=r"head_dim 128.*head_dim 64"):
        rotary.apply({}, x, x)


@pytest.mark.parametrize("largest", [4095, 4096])
def test_phi35_module_under_jit_switches_at_the_reference_boundary(largest):
    """Phi-3.5: positions up to 4095 (4096 tokens) short factors, 4096 long."""
    rotary = RotaryEmbedding.from_hf_config(pub.PHI_3_5_MINI_INSTRUCT)
    x = np.random.default_rng(1).standard_normal((1, 2, 1, 96)).astype(np.float32)
    positions = np.array([[5, largest]])
    q_rot, _ = jax.jit(lambda q, p: rotary.apply({}, q, q, positions=p))(
        jnp.asarray(x), jnp.asarray(positions)
    )
    inv_freq, attention = _longrope(pub.PHI_3_5_MINI_INSTRUCT, largest + 1, 96)
    want = references.rope(x, positions, inv_freq, "halves", None, attention)
    chex.assert_trees_all_close(f64(q_rot), want, atol=5e-6)


def test_llama4_full_attention_layers_have_no_rope():
    with pytest.raises(ValueError, match="NoPE"):
        fp.rope_config_from_hf(pub.LLAMA_4_SCOUT_17B_16E, layer_type="full_attention")
    chunked = fp.rope_config_from_hf(
        pub.LLAMA_4_SCOUT_17B_16E, layer_type="chunked_attention"
    )
    assert chunked == fp.rope_config_from_hf(pub.LLAMA_4_SCOUT_17B_16E)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # Phi-2's config.json gives partial_rotary_factor 0.4: int(80 * 0.4) = 32.
        (
            {
                "model_type": "phi",
                "hidden_size": 2560,
                "num_attention_heads": 32,
                "partial_rotary_factor": 0.4,
                "rope_theta": 10000.0,
            },
            (80, 32, 1e4, "halves"),
        ),
        # transformers' defaults when the key is absent.
        (
            {"model_type": "phi", "hidden_size": 2560, "num_attention_heads": 32},
            (80, 40, 1e4, "halves"),
        ),
        (
            {"model_type": "stablelm", "hidden_size": 2560, "num_attention_heads": 32},
            (80, 20, 1e4, "halves"),
        ),
        (
            {"model_type": "glm", "hidden_size": 4096, "num_attention_heads": 32},
            (128, 64, 1e4, "interleaved"),
        ),
        (
            {"model_type": "cohere", "hidden_size": 8192, "num_attention_heads": 64},
            (128, 128, 5e5, "interleaved"),
        ),
    ],
    ids=["phi-2", "phi-default", "stablelm-default", "glm-default", "cohere-default"],
)
def test_other_families(config, expected):
    found = fp.rope_config_from_hf(config)
    assert (found.head_dim, found.rotary_dim, found.base, found.layout) == expected


def test_layer_without_rope_in_a_nested_dict():
    config = {
        "model_type": "mistral",
        "head_dim": 64,
        "layer_types": ["full_attention", "sliding_attention"],
        "rope_parameters": {
            "full_attention": None,
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
    }
    with pytest.raises(ValueError, match="no RoPE for layer_type 'full_attention'"):
        fp.rope_config_from_hf(config, layer_type="full_attention")
    assert fp.rope_config_from_hf(config, layer_type="sliding_attention").base == 1e4


def test_review_fixes_for_other_configs():
    glm4 = fp.rope_config_from_hf(
        {"model_type": "glm4", "hidden_size": 4096, "num_attention_heads": 32}
    )
    assert (glm4.head_dim, glm4.rotary_dim, glm4.layout) == (128, 64, "interleaved")
    moe = fp.rope_config_from_hf(
        {"model_type": "glm4_moe", "hidden_size": 4096, "num_attention_heads": 32}
    )
    assert (moe.rotary_dim, moe.layout) == (64, "halves")
    # GPT-J without rotary_dim: transformers' default 64.
    gptj = {k: v for k, v in pub.GPT_J_6B.items() if k != "rotary_dim"}
    assert fp.rope_config_from_hf(gptj).rotary_dim == 64
    # An empty rope_scaling does not hide rope_parameters.
    config = {
        **pub.MISTRAL_7B_V0_1,
        "rope_scaling": {},
        "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 5e5},
    }
    found = fp.rope_config_from_hf(config)
    assert (found.base, found.scaling) == (5e5, fp.LinearScaling(factor=2.0))


def test_gemma3_nested_without_theta_uses_the_local_base_for_sliding_layers():
    config = {
        "model_type": "gemma3_text",
        "head_dim": 256,
        "rope_parameters": {
            "full_attention": {"rope_type": "default"},
            "sliding_attention": {"rope_type": "default"},
        },
    }
    full = fp.rope_config_from_hf(config, layer_type="full_attention")
    sliding = fp.rope_config_from_hf(config, layer_type="sliding_attention")
    assert (full.base, sliding.base) == (1e6, 1e4)


@pytest.mark.parametrize("spelling", ["su", "yarn"])
def test_phi3_early_type_spellings_are_longrope(spelling):
    config = copy.deepcopy(pub.PHI_3_5_MINI_INSTRUCT)
    config["rope_scaling"]["type"] = spelling
    assert fp.rope_config_from_hf(config) == fp.rope_config_from_hf(
        pub.PHI_3_5_MINI_INSTRUCT
    )


# -- nothing coerced or dropped ------------------------------------------------

MISTRAL = pub.MISTRAL_7B_V0_1
NO_HEAD_DIM = {k: v for k, v in MISTRAL.items() if k != "head_dim"}


def _with_rope_scaling(**values):
    return {**MISTRAL, "rope_scaling": values}


def _phi35_short_factor(value):
    config = copy.deepcopy(pub.PHI_3_5_MINI_INSTRUCT)
    config["rope_scaling"]["short_factor"][3] = value
    return config


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({**MISTRAL, "rope_scaling": "linear"}, TypeError, "'rope_scaling' must be"),
        (
            {**MISTRAL, "rope_scaling": ["linear", 2.0]},
            TypeError,
            "'rope_scaling' must be",
        ),
        ({**MISTRAL, "rope_scaling": 2.0}, TypeError, "'rope_scaling' must be"),
        ({**MISTRAL, "rope_parameters": "default"}, TypeError, "'rope_parameters'"),
        ({**MISTRAL, "head_dim": 64.5}, TypeError, "'head_dim' must be an int"),
        ({**MISTRAL, "head_dim": "128"}, TypeError, "'head_dim' must be an int"),
        (
            {**MISTRAL, "partial_rotary_factor": True},
            TypeError,
            "'partial_rotary_factor' must be a real number, got bool",
        ),
        (
            {**NO_HEAD_DIM, "num_attention_heads": 0},
            ValueError,
            "'num_attention_heads' must be >= 1",
        ),
        (_phi35_short_factor(None), TypeError, r"'short_factor'\[3\] must be a real"),
        (_phi35_short_factor("1.0"), TypeError, r"'short_factor'\[3\] must be a real"),
        (
            {**pub.QWEN2_VL_7B_INSTRUCT, "rope_scaling": {"mrope_section": 64}},
            TypeError,
            "'mrope_section' must be a list",
        ),
        # Numbers spelled as strings: refused in every field, one rule.
        ({**MISTRAL, "rope_theta": "10000"}, TypeError, "'rope_theta' must be a real"),
        (
            _with_rope_scaling(rope_type="linear", factor="2.0"),
            TypeError,
            "'factor' must be a real number, got str",
        ),
        (
            _with_rope_scaling(rope_type="default", rope_theta="10000"),
            TypeError,
            "'rope_theta' must be a real number, got str",
        ),
        (
            _with_rope_scaling(rope_type="yarn", factor=4.0, beta_fast="32"),
            TypeError,
            "'beta_fast' must be a real number, got str",
        ),
        (
            _with_rope_scaling(
                rope_type="yarn", factor=4.0, original_max_position_embeddings="4096"
            ),
            TypeError,
            "'original_max_position_embeddings' must be an int",
        ),
        (
            {**MISTRAL, "max_position_embeddings": "32768"},
            TypeError,
            "'max_position_embeddings' must be an int",
        ),
        # A switch spelled "false" is not false.
        (
            _with_rope_scaling(rope_type="yarn", factor=4.0, truncate="false"),
            TypeError,
            "'truncate' must be true or false",
        ),
        (
            {
                **pub.QWEN2_VL_7B_INSTRUCT,
                "rope_scaling": {
                    "type": "mrope",
                    "mrope_section": [16, 24, 24],
                    "mrope_interleaved": "false",
                },
            },
            TypeError,
            "'mrope_interleaved' must be true or false",
        ),
        ({**pub.DEEPSEEK_V3, "rope_interleave": "false"}, TypeError, "rope_interleave"),
        # One edit from a key the rotation reads: a typo, not a default.
        (
            _with_rope_scaling(
                rope_type="yarn", factor=4.0, original_max_positon_embeddings=4096
            ),
            ValueError,
            "did you mean 'original_max_position_embeddings'",
        ),
        (
            _with_rope_scaling(rope_type="linear", facter=2.0),
            ValueError,
            "did you mean 'factor'",
        ),
        (
            {
                **{k: v for k, v in MISTRAL.items() if k != "rope_theta"},
                "rope_thetta": 1e6,
            },
            ValueError,
            "'rope_thetta'.*did you mean 'rope_theta'",
        ),
    ],
)
def test_bad_config_values_are_refused_by_name(config, error, match):
    with pytest.raises(error, match=match):
        fp.rope_config_from_hf(config)


@pytest.mark.parametrize("model_type", [None, "my_new_model"])
def test_an_unknown_model_type_warns_naming_the_layout(model_type):
    config = {k: v for k, v in MISTRAL.items() if k != "model_type"}
    if model_type is not None:
        config["model_type"] = model_type
    with pytest.warns(UserWarning, match="layout 'halves'"):
        found = fp.rope_config_from_hf(config)
    assert found.layout == "halves"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit layout is a choice: no warning
        fp.rope_config_from_hf(config, layout="interleaved")


# -- published configs read as transformers reads them -------------------------


@pytest.mark.parametrize(
    ("interleave", "layout"), [(True, "interleaved"), (False, "halves")]
)
def test_deepseek_v3_rope_interleave_chooses_the_layout(interleave, layout):
    config = {**pub.DEEPSEEK_V3, "rope_interleave": interleave}
    found = fp.rope_config_from_hf(config)
    assert found.layout == layout
    # With rope_interleave false, transformers rotates halves (rotate_half) and
    # does not permute: its output is the halves formula's.
    x = np.random.default_rng(1).standard_normal((1, 3, 2, 64)).astype(np.float32)
    positions = np.array([[0, 5, 900]])
    got = fp.apply_rope(jnp.asarray(x), positions, **found.kwargs)
    if not interleave:
        inv_freq, attention = fp.rope_frequencies(
            64,
            base=found.base,
            scaling=found.scaling,
            max_position_embeddings=found.max_position_embeddings,
        )
        want = references.rope(x, positions, inv_freq, "halves", 64, attention)
        chex.assert_trees_all_close(f64(got), want, atol=5e-6)


@pytest.mark.parametrize(
    "model_type", ["helium", "ernie4_5", "ernie4_5_moe", "cohere2_moe"]
)
def test_families_whose_rotate_half_pairs_neighbours_are_interleaved(model_type):
    config = {"model_type": model_type, "hidden_size": 512, "num_attention_heads": 8}
    assert fp.rope_config_from_hf(config).layout == "interleaved"


SMOLLM3 = {
    "model_type": "smollm3",
    "hidden_size": 2048,
    "num_attention_heads": 16,
    "num_hidden_layers": 8,
    "rope_theta": 5e6,
    "no_rope_layers": [1, 1, 1, 0, 1, 1, 1, 0],
}


def test_smollm3_layers_without_rope_are_refused():
    with pytest.raises(ValueError, match=r"layers \[3, 7\] use no rotary embedding"):
        fp.rope_config_from_hf(SMOLLM3)
    with pytest.raises(ValueError, match="no rotary embedding"):
        RotaryEmbedding.from_hf_config(SMOLLM3)
    # Without the list, transformers' default: every 4th layer has none.
    default = {k: v for k, v in SMOLLM3.items() if k != "no_rope_layers"}
    with pytest.raises(ValueError, match=r"layers \[3, 7\]"):
        fp.rope_config_from_hf(default)
    # The rotating layers' embedding, as the message says to build it.
    found = fp.rope_config_from_hf({**SMOLLM3, "no_rope_layers": [1] * 8})
    assert (found.head_dim, found.base, found.layout) == (128, 5e6, "halves")


COHERE2 = {
    "model_type": "cohere2",
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
}


def test_cohere2_full_attention_layers_have_no_rope():
    with pytest.raises(ValueError, match="pass layer_type="):
        fp.rope_config_from_hf(COHERE2)
    with pytest.raises(ValueError, match="full_attention layers use no rotary"):
        fp.rope_config_from_hf(COHERE2, layer_type="full_attention")
    sliding = fp.rope_config_from_hf(COHERE2, layer_type="sliding_attention")
    assert (sliding.head_dim, sliding.layout) == (128, "interleaved")


class _PretrainedConfig:
    """Stands in for transformers.PretrainedConfig: a to_dict() method."""

    def __init__(self, config):
        self._config = config

    def to_dict(self):
        return copy.deepcopy(self._config)


@pytest.mark.parametrize("config", [pub.LLAMA_3_1_8B, pub.QWEN3_VL_8B_INSTRUCT])
def test_an_object_with_to_dict_reads_as_its_dict(config):
    assert fp.rope_config_from_hf(_PretrainedConfig(config)) == fp.rope_config_from_hf(
        config
    )
    rotary = RotaryEmbedding.from_hf_config(_PretrainedConfig(config))
    assert rotary == RotaryEmbedding.from_hf_config(config)
