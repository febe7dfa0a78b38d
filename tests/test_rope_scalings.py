"""transformers-5 rope dicts, LongRoPE, p-RoPE, M-RoPE and axial RoPE.

Every expected value comes from tests/references.py (float64, written from
transformers 5's formulas) or from a closed form, never from the library.
"""

import math
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from tests import references
from tests.references import f64

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
LAYOUTS = ["halves", "interleaved"]

# Phi-3.5-mini-instruct's factor lists are long; any 48 distinct values > 1 test
# the same code. The published lists are in tests/published_rope_configs.py.
SHORT = [1.0 + 0.01 * i for i in range(8)]
LONG = [1.0 + 0.5 * i for i in range(8)]
LONGROPE = {
    "rope_type": "longrope",
    "short_factor": SHORT,
    "long_factor": LONG,
    "original_max_position_embeddings": 64,
}


def _random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _rotate(x, positions, inv_freq, layout, rotary_dim=None, attention=1.0):
    return references.rope(
        x,
        positions,
        inv_freq,
        layout,
        rotary_dim=rotary_dim,
        attention_factor=attention,
    )


# ------------------------------------------------ transformers-5 rope_parameters


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_rope_parameters_theta_and_partial_factor_are_honoured(transform, layout):
    """The silent hole: base 1e4 and full rotation were used instead."""
    params = {"rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.25}
    x = _random((2, 6, 3, 32))
    positions = np.array([[0, 1, 2, 3, 4, 5], [90, 700, 4000, 4001, 20_000, 65_000]])
    fn = transform(lambda x, p: fp.apply_rope(x, p, scaling=params, layout=layout))
    out = fn(jnp.asarray(x), jnp.asarray(positions))
    expected = _rotate(x, positions, references.paper_frequencies(8, 1e6), layout, 8)
    chex.assert_trees_all_close(f64(out), expected, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(out)[..., 8:], x[..., 8:])


def test_partial_rotary_rounds_as_transformers():
    # int(head_dim * factor): GPT-NeoX-20B's head 96 at 0.25 rotates 24.
    x = _random((1, 3, 1, 96))
    out = fp.apply_rope(x, jnp.arange(3)[None], scaling={"partial_rotary_factor": 0.25})
    expected = _rotate(
        x, np.arange(3)[None], references.paper_frequencies(24), "halves", 24
    )
    chex.assert_trees_all_close(f64(out), expected, atol=2e-6)


def test_rope_theta_read_by_rope_frequencies():
    inv_freq, _ = fp.rope_frequencies(64, scaling={"rope_theta": 5e5})
    np.testing.assert_allclose(
        inv_freq, references.paper_frequencies(64, 5e5), rtol=1e-14
    )
    # dim stays the rotary dimension: partial_rotary_factor is not applied here.
    params = {"rope_type": "default", "rope_theta": 5e5, "partial_rotary_factor": 0.5}
    inv_freq, _ = fp.rope_frequencies(64, scaling=params)
    np.testing.assert_allclose(
        inv_freq, references.paper_frequencies(64, 5e5), rtol=1e-14
    )


def test_explicit_base_agreeing_with_rope_theta_is_fine():
    a = fp.rope_frequencies(16, base=1e6, scaling={"rope_theta": 1_000_000})[0]
    np.testing.assert_allclose(a, references.paper_frequencies(16, 1e6), rtol=1e-14)


def test_explicit_base_disagreeing_with_rope_theta_raises():
    with pytest.raises(ValueError, match=r"base=10000\.0.*rope_theta=500000\.0"):
        fp.rope_frequencies(16, base=10000.0, scaling={"rope_theta": 500000.0})
    with pytest.raises(ValueError, match="rope_theta"):
        fp.apply_rope(
            jnp.ones((1, 2, 1, 8)),
            jnp.arange(2)[None],
            base=10000.0,
            scaling={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
        )


def test_rotary_dim_disagreeing_with_partial_factor_raises():
    params = {"rope_type": "default", "partial_rotary_factor": 0.5}
    x = jnp.ones((1, 2, 1, 64))
    with pytest.raises(ValueError, match=r"rotary_dim=16.*partial_rotary_factor=0\.5"):
        fp.apply_rope(x, jnp.arange(2)[None], scaling=params, rotary_dim=16)
    same = fp.apply_rope(x, jnp.arange(2)[None], scaling=params, rotary_dim=32)
    chex.assert_trees_all_close(
        same, fp.apply_rope(x, jnp.arange(2)[None], scaling=params), atol=0.0
    )


@pytest.mark.parametrize("factor", [0.0, 1.5, -0.25])
def test_partial_factor_out_of_range_raises(factor):
    with pytest.raises(ValueError, match="partial_rotary_factor"):
        fp.apply_rope(
            jnp.ones((1, 2, 1, 8)),
            jnp.arange(2)[None],
            scaling={"partial_rotary_factor": factor},
        )


def test_unknown_key_warns_and_known_keys_do_not():
    with pytest.warns(UserWarning, match=r"unknown keys \['rope_scale'\]"):
        fp.rope_frequencies(
            16, scaling={"rope_type": "linear", "factor": 2.0, "rope_scale": 3}
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fp.rope_frequencies(
            16,
            scaling={
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 64,
                "rope_theta": 1e4,
                "partial_rotary_factor": 1.0,
                "beta_fast": 32,
                "beta_slow": 1,
                "mscale": 1.0,
                "mscale_all_dim": 1.0,
                "truncate": True,
                "attention_factor": None,
            },
        )


def test_type_without_rope_type_but_math_keys_raises():
    with pytest.raises(ValueError, match=r"keys \['factor'\] but no 'rope_type'"):
        fp.rope_frequencies(16, scaling={"factor": 2.0})


def test_value_none_is_named_as_missing_not_as_present():
    with pytest.raises(ValueError, match="needs a value for 'factor'") as info:
        fp.rope_frequencies(16, scaling={"rope_type": "linear", "factor": None})
    assert "has values for ['rope_type']" in str(info.value)


def test_per_layer_dict_needs_a_layer():
    nested = {
        "full_attention": {"rope_type": "default", "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
    }
    with pytest.raises(ValueError, match="'full_attention', 'sliding_attention'"):
        fp.apply_rope(jnp.ones((1, 2, 1, 8)), jnp.arange(2)[None], scaling=nested)


def test_old_type_aliases():
    su = {**LONGROPE, "type": "su"}
    del su["rope_type"]
    a = fp.rope_frequencies(16, scaling=su, max_position_embeddings=256)
    b = fp.rope_frequencies(16, scaling=LONGROPE, max_position_embeddings=256)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    mrope = fp.rope_frequencies(
        16, scaling={"type": "mrope", "mrope_section": [4, 2, 2]}
    )
    np.testing.assert_allclose(mrope[0], references.paper_frequencies(16), rtol=1e-14)


# ------------------------------------------------------------------- LongRoPE


@pytest.mark.parametrize("seq_len", [None, 1, 64, 65, 1000])
def test_longrope_frequencies(seq_len):
    inv_freq, attention = fp.rope_frequencies(
        16, base=500.0, scaling=LONGROPE, seq_len=seq_len, max_position_embeddings=512
    )
    expected, expected_attention = references.longrope_frequencies(
        16, 500.0, SHORT, LONG, 64, seq_len=seq_len, max_position_embeddings=512
    )
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-14)
    np.testing.assert_allclose(attention, expected_attention, rtol=1e-15)
    # factor 8 = 512 / 64, L = 64: sqrt(1 + ln 8 / ln 64) = sqrt(1.5)
    np.testing.assert_allclose(attention, math.sqrt(1.5), rtol=1e-15)


def test_longrope_phi3_attention_factor():
    # Phi-3-mini-128k: 131072 / 4096 = 32, ln 32 / ln 4096 = 5 / 12.
    typed = fp.LongRopeScaling(
        short_factor=[1.0] * 48,
        long_factor=[2.0] * 48,
        original_max_position_embeddings=4096,
        factor=32.0,
    )
    _, attention = fp.rope_frequencies(96, scaling=typed)
    np.testing.assert_allclose(attention, math.sqrt(17 / 12), rtol=1e-15)


def test_longrope_explicit_factors():
    config = {**LONGROPE, "factor": 1.0, "attention_factor": 0.75}
    _, attention = fp.rope_frequencies(16, scaling=config)
    assert attention == 0.75
    _, attention = fp.rope_frequencies(16, scaling={**LONGROPE, "factor": 1.0})
    assert attention == 1.0


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("largest", "long"), [(62, False), (63, False), (64, True), (500, True)]
)
def test_longrope_switch_on_traced_largest_position(transform, layout, largest, long):
    """Short factors while max(positions) + 1 <= L = 64, long beyond (the reference)."""
    x = _random((2, 4, 2, 16), seed=largest)
    positions = np.array(
        [[0, 1, 2, 3], [largest - 3, largest - 2, largest - 1, largest]]
    )
    fn = transform(
        lambda x, p: fp.apply_rope(
            x, p, scaling=LONGROPE, layout=layout, max_position_embeddings=512
        )
    )
    out = fn(jnp.asarray(x), jnp.asarray(positions))
    inv_freq, attention = references.longrope_frequencies(
        16, 1e4, SHORT, LONG, 64, seq_len=largest + 1, max_position_embeddings=512
    )
    expected = _rotate(x, positions, inv_freq, layout, attention=attention)
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)
    other, _ = references.longrope_frequencies(
        16, 1e4, SHORT, LONG, 64, seq_len=1 if long else 65, max_position_embeddings=512
    )
    wrong = _rotate(x, positions, other, layout, attention=attention)
    assert np.abs(f64(out) - wrong).max() > 1e-2


@pytest.mark.parametrize(("seq_len", "long"), [(64, False), (65, True)])
def test_longrope_static_seq_len_picks_the_set(seq_len, long):
    x = _random((1, 3, 1, 16))
    positions = np.array([[0, 1, 2]])  # small positions: only seq_len decides
    out = fp.apply_rope(
        x, positions, scaling=LONGROPE, seq_len=seq_len, max_position_embeddings=512
    )
    inv_freq, attention = references.longrope_frequencies(
        16, 1e4, SHORT, LONG, 64, seq_len=seq_len, max_position_embeddings=512
    )
    chex.assert_trees_all_close(
        f64(out),
        _rotate(x, positions, inv_freq, "halves", attention=attention),
        atol=2e-6,
    )
    assert long == (seq_len > 64)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            {**LONGROPE, "short_factor": SHORT[:-1]},
            "short_factor must have dim // 2 = 8",
        ),
        ({**LONGROPE, "long_factor": [*LONG, 1.0]}, "long_factor must have"),
        ({**LONGROPE, "long_factor": [0.0] * 8}, "long_factor must be > 0"),
    ],
)
def test_longrope_bad_lists_raise(config, match):
    with pytest.raises(ValueError, match=match):
        fp.rope_frequencies(16, scaling=config, max_position_embeddings=512)


def test_longrope_without_factor_needs_the_model_length():
    with pytest.raises(ValueError, match="max_position_embeddings="):
        fp.rope_frequencies(16, scaling=LONGROPE)


def test_longrope_lists_become_tuples():
    typed = fp.LongRopeScaling(SHORT, LONG, 64)
    assert isinstance(typed.short_factor, tuple)
    hash(typed)
    with pytest.raises(TypeError, match="short_factor"):
        fp.LongRopeScaling(2.0, LONG, 64)  # type: ignore[arg-type]


# ---------------------------------------------------------------- proportional


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_proportional_gemma4_rotates_the_right_features(transform):
    """head 512, factor 0.25: features [0:64] and [256:320] rotate (halves)."""
    params = {
        "rope_type": "proportional",
        "partial_rotary_factor": 0.25,
        "rope_theta": 1e6,
    }
    x = _random((1, 3, 2, 512))
    positions = np.array([[5, 1000, 100_000]])
    out = transform(lambda x, p: fp.apply_rope(x, p, scaling=params))(
        jnp.asarray(x), jnp.asarray(positions)
    )
    out = np.asarray(out)
    moved = np.flatnonzero(np.any(out != x, axis=(0, 1, 2)))
    np.testing.assert_array_equal(moved, np.r_[0:64, 256:320])
    inv_freq = references.proportional_frequencies(512, 1e6, 0.25)
    np.testing.assert_array_equal(inv_freq[64:], 0.0)
    np.testing.assert_allclose(inv_freq[1], 1e6 ** (-2 / 512), rtol=1e-14)
    chex.assert_trees_all_close(
        f64(out), _rotate(x, positions, inv_freq, "halves"), atol=3e-6
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("head_dim", "partial", "factor"), [(16, 0.5, 1.0), (16, 1.0, 2.0), (12, 0.3, 4.0)]
)
def test_proportional_matches_reference(transform, layout, head_dim, partial, factor):
    typed = fp.ProportionalScaling(partial_rotary_factor=partial, factor=factor)
    inv_freq, attention = fp.rope_frequencies(head_dim, base=1e4, scaling=typed)
    expected = references.proportional_frequencies(head_dim, 1e4, partial, factor)
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-14)
    assert attention == 1.0
    x = _random((2, 3, 1, head_dim))
    positions = np.array([[0, 7, 9], [3, 300, 30_000]])
    out = transform(
        lambda x, p: fp.apply_rope(x, p, base=1e4, scaling=typed, layout=layout)
    )(jnp.asarray(x), jnp.asarray(positions))
    chex.assert_trees_all_close(
        f64(out), _rotate(x, positions, expected, layout), atol=3e-6
    )


# ------------------------------------------------------------ llama3, yarn, dynamic

LLAMA4_SCOUT = {
    "rope_type": "llama3",
    "factor": 16.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_theta": 500000.0,
}


def test_llama3_without_a_smooth_band():
    inv_freq, _ = fp.rope_frequencies(128, scaling=LLAMA4_SCOUT)
    expected = references.llama3_frequencies(128, 5e5, 16.0, 1.0, 1.0, 8192)
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-14)
    wavelength = 2 * np.pi / references.paper_frequencies(128, 5e5)
    kept = wavelength < 8192
    assert kept.any() and (~kept).any()
    ratio = inv_freq / references.paper_frequencies(128, 5e5)
    np.testing.assert_allclose(ratio[kept], 1.0, rtol=1e-14)
    np.testing.assert_allclose(ratio[~kept], 1 / 16, rtol=1e-14)


def test_llama3_missing_original_uses_max_position_embeddings():
    config = {
        k: v for k, v in LLAMA4_SCOUT.items() if k != "original_max_position_embeddings"
    }
    config["high_freq_factor"] = 4.0
    inv_freq, _ = fp.rope_frequencies(64, scaling=config, max_position_embeddings=2048)
    expected = references.llama3_frequencies(64, 5e5, 16.0, 1.0, 4.0, 2048)
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-14)


@pytest.mark.parametrize("factor_entry", [{}, {"factor": None}])
def test_yarn_factor_inferred_from_the_lengths(factor_entry):
    config = {
        "rope_type": "yarn",
        "original_max_position_embeddings": 4096,
        "beta_fast": None,  # transformers: `beta_fast or 32`
        **factor_entry,
    }
    inv_freq, attention = fp.rope_frequencies(
        64, scaling=config, max_position_embeddings=163_840
    )
    expected, expected_attention = references.yarn_frequencies(64, 1e4, 40.0, 4096)
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-13)
    np.testing.assert_allclose(attention, expected_attention, rtol=1e-15)
    with pytest.raises(ValueError, match="without 'factor'"):
        fp.rope_frequencies(64, scaling=config)


def test_dynamic_length_is_the_models_max_position_embeddings():
    # transformers reads config.max_position_embeddings, not the dict's length.
    config = {
        "rope_type": "dynamic",
        "factor": 2.0,
        "original_max_position_embeddings": 64,
    }
    inv_freq, _ = fp.rope_frequencies(
        32, scaling=config, seq_len=1000, max_position_embeddings=256
    )
    grown = references.rope_dynamic_base(32, 1e4, 2.0, 256, 1000)
    np.testing.assert_allclose(
        inv_freq, references.paper_frequencies(32, grown), rtol=1e-13
    )


# --------------------------------------------------- every type, both layouts, jit

CASES = {
    "default": (
        {"rope_type": "default", "rope_theta": 1e5},
        lambda d, s: (references.paper_frequencies(d, 1e5), 1.0),
    ),
    "linear": (
        {"rope_type": "linear", "factor": 4.0},
        lambda d, s: (references.paper_frequencies(d) / 4.0, 1.0),
    ),
    "dynamic": (
        {"rope_type": "dynamic", "factor": 2.0},
        lambda d, s: (
            references.paper_frequencies(
                d, references.rope_dynamic_base(d, 1e4, 2.0, 512, s)
            ),
            1.0,
        ),
    ),
    "yarn": (
        {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 256},
        lambda d, s: references.yarn_frequencies(d, 1e4, 8.0, 256),
    ),
    "longrope": (
        {**LONGROPE, "short_factor": SHORT[:6], "long_factor": LONG[:6]},
        lambda d, s: references.longrope_frequencies(
            d, 1e4, SHORT[:6], LONG[:6], 64, seq_len=s, max_position_embeddings=512
        ),
    ),
    "llama3": (
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        lambda d, s: (references.llama3_frequencies(d, 1e4, 8.0, 1.0, 4.0, 64), 1.0),
    ),
}


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", list(CASES))
def test_every_type_partial_rotation(transform, layout, kind):
    """head 16, partial_rotary_factor 0.75: 12 features rotate with 6 frequencies."""
    config, reference = CASES[kind]
    config = {**config, "partial_rotary_factor": 0.75}
    x = _random((2, 5, 2, 16), seed=len(kind))
    positions = np.array([[0, 1, 2, 3, 4], [9, 99, 999, 4000, 65_000]])
    seq_len = 1000
    fn = transform(
        lambda x, p: fp.apply_rope(
            x,
            p,
            scaling=config,
            layout=layout,
            seq_len=seq_len,
            max_position_embeddings=512,
        )
    )
    out = fn(jnp.asarray(x), jnp.asarray(positions))
    inv_freq, attention = reference(12, seq_len)
    expected = _rotate(x, positions, inv_freq, layout, 12, attention)
    chex.assert_trees_all_close(f64(out), expected, atol=4e-6)
    np.testing.assert_array_equal(np.asarray(out)[..., 12:], x[..., 12:])


# ------------------------------------------------------------ frequencies plug-in


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_precomputed_frequencies(transform, layout):
    inv_freq = np.array([0.9, 0.3, 0.01, 1e-5])
    x = _random((2, 3, 2, 10))
    positions = np.array([[0, 1, 2], [17, 5000, 70_000]])
    fn = transform(
        lambda x, p: fp.apply_rope(
            x, p, frequencies=(inv_freq, 1.25), rotary_dim=8, layout=layout
        )
    )
    out = fn(jnp.asarray(x), jnp.asarray(positions))
    expected = _rotate(x, positions, inv_freq, layout, 8, 1.25)
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)


def test_precomputed_frequencies_errors():
    x, p = jnp.ones((1, 2, 1, 8)), jnp.arange(2)[None]
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        fp.apply_rope(x, p, frequencies=(np.ones(3), 1.0))
    for extra in ({"base": 1e4}, {"scaling": {"rope_type": "default"}}, {"seq_len": 4}):
        with pytest.raises(ValueError, match="without base"):
            fp.apply_rope(x, p, frequencies=(np.ones(4), 1.0), **extra)


# ----------------------------------------------------------------------- M-RoPE


def _mrope_positions(seed, batch=2, seq=7):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5000, size=(batch, seq, 3))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("section", "interleaved"),
    [
        ((16, 24, 24), False),
        ((24, 20, 20), True),
        ((4, 2, 2), False),
        ((3, 3, 2), True),
    ],
)
def test_mrope_matches_the_reference(transform, layout, section, interleaved):
    head_dim = 2 * sum(section)
    x = _random((2, 7, 2, head_dim), seed=head_dim)
    positions = _mrope_positions(head_dim)
    fn = transform(
        lambda x, p: fp.apply_rope(
            x,
            p,
            base=1e6,
            layout=layout,
            mrope_section=section,
            mrope_interleaved=interleaved,
        )
    )
    out = fn(jnp.asarray(x), jnp.asarray(positions))
    theta = references.mrope_angles(
        positions, references.paper_frequencies(head_dim, 1e6), section, interleaved
    )
    chex.assert_trees_all_close(
        f64(out), references.rope_from_angles(x, theta, layout), atol=3e-6
    )


def test_mrope_read_from_the_dict_with_partial_rotation():
    # Qwen3.5: interleaved sections [11, 11, 10] over a quarter of a 256 head.
    params = {
        "mrope_interleaved": True,
        "mrope_section": [11, 11, 10],
        "partial_rotary_factor": 0.25,
        "rope_theta": 10_000_000,
        "rope_type": "default",
    }
    x = _random((1, 5, 1, 256))
    positions = _mrope_positions(3, batch=1, seq=5)
    out = fp.apply_rope(x, positions, scaling=params)
    theta = references.mrope_angles(
        positions, references.paper_frequencies(64, 1e7), (11, 11, 10), True
    )
    chex.assert_trees_all_close(
        f64(out), references.rope_from_angles(x, theta), atol=3e-6
    )


@pytest.mark.parametrize("interleaved", [False, True])
def test_mrope_text_only_is_plain_rope(interleaved):
    x = jnp.asarray(_random((2, 6, 2, 16)))
    text = jnp.asarray(np.array([[0, 1, 2, 3, 4, 5], [40, 41, 42, 4000, 4001, 9000]]))
    plain = fp.apply_rope(x, text)
    for positions in (text[..., None], jnp.stack([text] * 3, axis=-1)):
        out = fp.apply_rope(
            x, positions, mrope_section=(4, 2, 2), mrope_interleaved=interleaved
        )
        chex.assert_trees_all_close(out, plain, atol=0.0)


def test_mrope_errors():
    x = jnp.ones((1, 4, 1, 16))
    with pytest.raises(ValueError, match="must sum to"):
        fp.apply_rope(x, jnp.zeros((1, 4, 3), jnp.int32), mrope_section=(4, 4, 4))
    with pytest.raises(ValueError, match=r"\[\.\.\., seq, 3\]"):
        fp.apply_rope(x, jnp.zeros((1, 4), jnp.int32), mrope_section=(4, 2, 2))
    with pytest.raises(ValueError, match="broadcast"):
        fp.apply_rope(x, jnp.zeros((1, 4, 2), jnp.int32), mrope_section=(4, 2, 2))
    with pytest.raises(ValueError, match="disagrees"):
        fp.apply_rope(
            x,
            jnp.zeros((1, 4, 3), jnp.int32),
            scaling={"rope_type": "default", "mrope_section": [2, 4, 2]},
            mrope_section=(4, 2, 2),
        )


# ------------------------------------------------------------------ 2-D axial


def test_grid_positions():
    grid = fp.grid_positions(3, 4)
    chex.assert_shape(grid, (12, 2))
    chex.assert_type(grid, jnp.int32)
    rows, cols = np.divmod(np.arange(12), 4)
    np.testing.assert_array_equal(np.asarray(grid), np.stack([rows, cols], -1))
    with pytest.raises(ValueError, match="width"):
        fp.grid_positions(2, 0)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_axial_rope_matches_the_reference(transform, layout):
    """Pairs [0, d/4) turn with the row, [d/4, d/2) with the column, each with
    the frequencies of 1-D RoPE of dimension d/2."""
    d = 16
    x = _random((2, 12, 3, d))
    positions = np.asarray(fp.grid_positions(3, 4))
    out = transform(lambda x, p: fp.apply_axial_rope(x, p, base=100.0, layout=layout))(
        jnp.asarray(x), jnp.asarray(positions)
    )
    per_axis = references.paper_frequencies(d // 2, 100.0)
    theta = np.concatenate(
        [positions[:, :1] * per_axis, positions[:, 1:] * per_axis], axis=-1
    )
    expected = references.rope_from_angles(x, theta[None], layout)
    chex.assert_trees_all_close(f64(out), expected, atol=2e-6)


def test_axial_rope_scores_depend_on_row_and_column_offsets_only():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((1, 1, 1, 8)).astype(np.float32))
    k = jnp.asarray(rng.standard_normal((1, 1, 1, 8)).astype(np.float32))

    def score(pq, pk):
        rq = fp.apply_axial_rope(q, jnp.array([[pq]]))
        rk = fp.apply_axial_rope(k, jnp.array([[pk]]))
        return float(jnp.sum(rq * rk))

    base = score((2, 3), (0, 1))
    assert abs(score((7, 9), (5, 7)) - base) < 1e-5
    assert abs(score((2, 4), (0, 1)) - base) > 1e-3  # another column offset


def test_axial_rope_errors():
    with pytest.raises(ValueError, match="multiple of 2 \\* axes = 4"):
        fp.apply_axial_rope(jnp.ones((1, 4, 1, 6)), fp.grid_positions(2, 2))
    with pytest.raises(ValueError, match=r"\[\.\.\., seq, axes\]"):
        fp.apply_axial_rope(jnp.ones((1, 4, 1, 8)), jnp.arange(4))


@pytest.mark.parametrize(
    ("scaling", "match"),
    [
        (fp.ProportionalScaling(partial_rotary_factor=1.5), "partial_rotary_factor"),
        (fp.ProportionalScaling(partial_rotary_factor=-0.1), "partial_rotary_factor"),
        (fp.ProportionalScaling(factor=0.0), "factor"),
    ],
)
def test_proportional_errors(scaling, match):
    with pytest.raises(ValueError, match=match):
        fp.rope_frequencies(16, scaling=scaling)


def test_mrope_batch_positions_are_not_read_as_axes():
    """[batch, seq] with seq == 3 must not pass for [..., seq, 3]."""
    x = jnp.ones((2, 3, 1, 16))
    with pytest.raises(ValueError, match=r"\[\.\.\., seq, 3\]"):
        fp.apply_rope(x, jnp.zeros((2, 3), jnp.int32), mrope_section=(4, 2, 2))
