"""rope_frequencies / apply_rope against float64 references and properties."""

import dataclasses
import itertools
import math

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import flax_posenc as fp
from tests import references
from tests.references import f64

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
LAYOUTS = ["halves", "interleaved"]
PROPERTY = settings(max_examples=20, deadline=None)

LLAMA31 = {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}
YARN_LLAMA2_64K = {
    "factor": 16.0,
    "original_max_position_embeddings": 4096,
    "type": "yarn",
    "finetuned": True,
}


def _random(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _halves_pairs(d):
    return np.arange(d // 2), np.arange(d // 2) + d // 2


def _interleaved_pairs(d):
    return np.arange(0, d, 2), np.arange(1, d, 2)


# ------------------------------------------------------------- rope_frequencies


@pytest.mark.parametrize("dim", [2, 4, 64, 128])
@pytest.mark.parametrize("base", [10_000.0, 500_000.0, 2.5])
def test_default_frequencies(dim, base):
    inv_freq, attention = fp.rope_frequencies(dim, base=base)
    assert inv_freq.shape == (dim // 2,)
    assert inv_freq.dtype == np.float64
    np.testing.assert_allclose(
        inv_freq, references.paper_frequencies(dim, base), rtol=1e-14
    )
    assert attention == 1.0


def test_default_known_values():
    inv_freq, _ = fp.rope_frequencies(8)
    np.testing.assert_allclose(inv_freq, [1.0, 0.1, 0.01, 0.001], rtol=1e-14)


@pytest.mark.parametrize("factor", [1.0, 2.0, 8.0, 2.5])
def test_linear(factor):
    inv_freq, attention = fp.rope_frequencies(
        32, scaling={"rope_type": "linear", "factor": factor}
    )
    np.testing.assert_allclose(
        inv_freq, references.paper_frequencies(32) / factor, rtol=1e-14
    )
    assert attention == 1.0


@pytest.mark.parametrize("seq_len", [None, 1, 100, 4096])
def test_dynamic_unchanged_up_to_original(seq_len):
    scaling = {
        "rope_type": "dynamic",
        "factor": 2.0,
        "original_max_position_embeddings": 4096,
    }
    inv_freq, attention = fp.rope_frequencies(128, scaling=scaling, seq_len=seq_len)
    np.testing.assert_allclose(inv_freq, references.paper_frequencies(128), rtol=1e-13)
    assert attention == 1.0


@pytest.mark.parametrize(
    ("dim", "factor", "seq_len"), [(128, 2.0, 8192), (16, 4.0, 5000), (4, 1.5, 4097)]
)
def test_dynamic_grows_base(dim, factor, seq_len):
    scaling = fp.DynamicNTKScaling(factor=factor, original_max_position_embeddings=4096)
    inv_freq, attention = fp.rope_frequencies(dim, scaling=scaling, seq_len=seq_len)
    grown = references.rope_dynamic_base(dim, 10_000.0, factor, 4096, seq_len)
    assert grown > 10_000.0
    np.testing.assert_allclose(
        inv_freq, references.paper_frequencies(dim, grown), rtol=1e-13
    )
    assert attention == 1.0


def test_dynamic_published_base():
    # dim 128, base 1e4, factor 2, L = 4096, seq_len 8192 -> base' = 30527.736749
    scaling = {
        "rope_type": "dynamic",
        "factor": 2.0,
        "original_max_position_embeddings": 4096,
    }
    inv_freq, _ = fp.rope_frequencies(128, scaling=scaling, seq_len=8192)
    np.testing.assert_allclose(
        inv_freq, references.paper_frequencies(128, 30527.736749), rtol=1e-10
    )


def test_dynamic_dim_2_raises():
    scaling = fp.DynamicNTKScaling(factor=2.0, original_max_position_embeddings=16)
    with pytest.raises(ValueError, match="dynamic"):
        fp.rope_frequencies(2, scaling=scaling, seq_len=32)


def test_yarn_published_llama2_64k():
    """NousResearch/Yarn-Llama-2-7b-64k: ramp (20, 46), attention 1.2772588722."""
    assert references.yarn_correction_range(128, 10_000.0, 4096) == (20, 46)
    # Its config carries "finetuned", a key no implementation reads: warned.
    with pytest.warns(UserWarning, match="finetuned"):
        inv_freq, attention = fp.rope_frequencies(128, scaling=YARN_LLAMA2_64K)
    np.testing.assert_allclose(attention, 1.2772588722, rtol=0, atol=1e-10)
    np.testing.assert_allclose(attention, 0.1 * math.log(16.0) + 1.0, rtol=1e-15)
    ratio = inv_freq / references.paper_frequencies(128)
    # pairs up to the lower bound keep their frequency, from the upper bound on
    # they are divided by 16, linear ramp (i - 20) / 26 in between.
    np.testing.assert_allclose(ratio[:21], 1.0, rtol=1e-13)
    np.testing.assert_allclose(ratio[46:], 1.0 / 16.0, rtol=1e-13)
    ramp = (np.arange(21, 46) - 20) / 26
    np.testing.assert_allclose(ratio[21:46], 1.0 - ramp * (15.0 / 16.0), rtol=1e-13)
    expected, expected_attention = references.yarn_frequencies(
        128, 10_000.0, 16.0, 4096
    )
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-13)
    assert attention == pytest.approx(expected_attention, rel=1e-15)


YARN_CASES = {
    "qwen25": dict(dim=128, base=1e6, factor=4.0, original=32768),
    "betas": dict(
        dim=64, base=1e4, factor=8.0, original=2048, beta_fast=16.0, beta_slow=2.0
    ),
    "no_truncate": dict(dim=64, base=1e4, factor=16.0, original=4096, truncate=False),
    "explicit_attention": dict(
        dim=32, base=1e4, factor=4.0, original=512, attention_factor=0.75
    ),
    "deepseek_equal_mscale": dict(
        dim=64, base=1e4, factor=40.0, original=4096, mscale=1.0, mscale_all_dim=1.0
    ),
    "mscale_ratio": dict(
        dim=64, base=1e4, factor=40.0, original=4096, mscale=0.707, mscale_all_dim=1.0
    ),
    "only_mscale": dict(dim=64, base=1e4, factor=40.0, original=4096, mscale=0.707),
    # bounds (5, 12): the upper clamp is dim - 1 (as HF), not the last pair 7
    "ramp_past_last_pair": dict(dim=16, base=100.0, factor=4.0, original=4096),
    # both bounds clamp to 0: high is nudged by 0.001
    "collapsed_ramp": dict(dim=8, base=1e4, factor=2.0, original=4),
    "factor_one": dict(dim=16, base=1e4, factor=1.0, original=64),
}


@pytest.mark.parametrize("case", list(YARN_CASES), ids=list(YARN_CASES))
def test_yarn_matches_reference(case):
    kw = dict(YARN_CASES[case])
    dim, base, factor, original = (
        kw.pop(k) for k in ("dim", "base", "factor", "original")
    )
    expected, expected_attention = references.yarn_frequencies(
        dim, base, factor, original, **kw
    )
    config = {
        "rope_type": "yarn",
        "factor": factor,
        "original_max_position_embeddings": original,
        **kw,
    }
    inv_freq, attention = fp.rope_frequencies(dim, base=base, scaling=config)
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-13)
    assert attention == pytest.approx(expected_attention, rel=1e-14)
    typed = fp.YarnScaling(
        factor=factor, original_max_position_embeddings=original, **kw
    )
    typed_freq, typed_attention = fp.rope_frequencies(dim, base=base, scaling=typed)
    np.testing.assert_array_equal(typed_freq, inv_freq)
    assert typed_attention == attention


def test_yarn_reference_bounds():
    assert references.yarn_correction_range(16, 100.0, 4096) == (5, 12)
    assert references.yarn_correction_range(8, 1e4, 4) == (0, 0)
    low, high = references.yarn_correction_range(128, 1e4, 4096, truncate=False)
    assert (low, high) == (pytest.approx(20.944482), pytest.approx(45.026881))


def test_yarn_attention_factor_values():
    def attention(**kw):
        config = {"rope_type": "yarn", "original_max_position_embeddings": 4096}
        return fp.rope_frequencies(64, scaling={**config, **kw})[1]

    assert attention(factor=4.0) == pytest.approx(0.1 * math.log(4.0) + 1.0)
    assert attention(factor=4.0, attention_factor=0.5) == 0.5
    assert attention(factor=40.0, mscale=1.0, mscale_all_dim=1.0) == 1.0
    expected = (0.1 * 0.707 * math.log(40.0) + 1.0) / (0.1 * math.log(40.0) + 1.0)
    assert attention(factor=40.0, mscale=0.707, mscale_all_dim=1.0) == pytest.approx(
        expected, rel=1e-14
    )


def test_yarn_truncate_false_differs():
    config = {
        "rope_type": "yarn",
        "factor": 16.0,
        "original_max_position_embeddings": 4096,
    }
    truncated, _ = fp.rope_frequencies(128, scaling=config)
    exact, _ = fp.rope_frequencies(128, scaling={**config, "truncate": False})
    default = references.paper_frequencies(128)
    # raw bounds 20.944482 and 45.026881 instead of (20, 46)
    low, high = 20.944482, 45.026881
    for i in (21, 30, 45):
        ramp = (i - low) / (high - low)
        assert exact[i] / default[i] == pytest.approx(1 - ramp * 15 / 16, rel=1e-6)
        truncated_ramp = (i - 20) / 26
        assert truncated[i] / default[i] == pytest.approx(
            1 - truncated_ramp * 15 / 16, rel=1e-12
        )
    np.testing.assert_allclose(exact[:21] / default[:21], 1.0, rtol=1e-13)
    np.testing.assert_allclose(exact[46:] / default[46:], 1 / 16, rtol=1e-13)


def test_llama3_bands_llama31():
    inv_freq, attention = fp.rope_frequencies(128, base=500_000.0, scaling=LLAMA31)
    default = references.paper_frequencies(128, 500_000.0)
    ratio = inv_freq / default
    np.testing.assert_allclose(ratio[:29], 1.0, rtol=1e-14)
    assert np.all((ratio[29:35] > 1.0 / 8.0) & (ratio[29:35] < 1.0))
    assert np.all(np.diff(ratio[29:35]) < 0)
    np.testing.assert_allclose(ratio[35:], 1.0 / 8.0, rtol=1e-14)
    assert attention == 1.0
    expected = references.llama3_frequencies(128, 500_000.0, 8.0, 1.0, 4.0, 8192)
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-13)


@pytest.mark.parametrize(
    ("dim", "base", "factor", "low", "high", "original"),
    [(64, 10_000.0, 32.0, 1.0, 4.0, 8192), (32, 10_000.0, 4.0, 2.0, 8.0, 256)],
)
def test_llama3_matches_reference(dim, base, factor, low, high, original):
    scaling = fp.Llama3Scaling(
        factor=factor,
        low_freq_factor=low,
        high_freq_factor=high,
        original_max_position_embeddings=original,
    )
    inv_freq, _ = fp.rope_frequencies(dim, base=base, scaling=scaling)
    expected = references.llama3_frequencies(dim, base, factor, low, high, original)
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-13)


def test_type_alias_and_default():
    aliased = fp.rope_frequencies(16, scaling={"type": "linear", "factor": 2.0})
    named = fp.rope_frequencies(16, scaling={"rope_type": "linear", "factor": 2.0})
    np.testing.assert_array_equal(aliased[0], named[0])
    np.testing.assert_allclose(
        aliased[0], references.paper_frequencies(16) / 2.0, rtol=1e-14
    )
    for config in ({"rope_type": "default"}, {"type": "default"}):
        inv_freq, attention = fp.rope_frequencies(16, scaling=config)
        np.testing.assert_allclose(
            inv_freq, references.paper_frequencies(16), rtol=1e-14
        )
        assert attention == 1.0


@pytest.mark.parametrize(
    ("typed", "config", "seq_len"),
    [
        (fp.LinearScaling(factor=4.0), {"rope_type": "linear", "factor": 4.0}, None),
        (
            fp.DynamicNTKScaling(factor=2.0, original_max_position_embeddings=64),
            {
                "rope_type": "dynamic",
                "factor": 2.0,
                "original_max_position_embeddings": 64,
            },
            200,
        ),
        (
            fp.YarnScaling(
                factor=8.0, original_max_position_embeddings=512, beta_fast=16.0
            ),
            {
                "type": "yarn",
                "factor": 8.0,
                "original_max_position_embeddings": 512,
                "beta_fast": 16.0,
            },
            None,
        ),
        (
            fp.Llama3Scaling(**{k: v for k, v in LLAMA31.items() if k != "rope_type"}),
            LLAMA31,
            None,
        ),
    ],
    ids=["linear", "dynamic", "yarn", "llama3"],
)
def test_typed_equals_dict(typed, config, seq_len):
    a = fp.rope_frequencies(64, base=500_000.0, scaling=typed, seq_len=seq_len)
    b = fp.rope_frequencies(64, base=500_000.0, scaling=config, seq_len=seq_len)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    unscaled = fp.rope_frequencies(64, base=500_000.0)[0]
    assert not np.allclose(a[0], unscaled)


def test_unknown_scaling_type_lists_allowed():
    with pytest.raises(ValueError, match="ntk") as info:
        fp.rope_frequencies(16, scaling={"rope_type": "ntk", "factor": 2.0})
    for allowed in ("default", "linear", "dynamic", "yarn", "llama3"):
        assert repr(allowed) in str(info.value)


def test_missing_key_is_named():
    config = {k: v for k, v in LLAMA31.items() if k != "high_freq_factor"}
    with pytest.raises(ValueError, match="high_freq_factor"):
        fp.rope_frequencies(128, scaling=config)
    with pytest.raises(ValueError, match="original_max_position_embeddings"):
        fp.rope_frequencies(16, scaling={"rope_type": "yarn", "factor": 2.0})
    with pytest.raises(ValueError, match="factor"):
        fp.rope_frequencies(16, scaling={"rope_type": "linear"})


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "linear", "factor": 0.5},
        fp.LinearScaling(factor=0.999),
        {"rope_type": "yarn", "factor": 0.5, "original_max_position_embeddings": 64},
        {**LLAMA31, "factor": 0.25},
        {"rope_type": "dynamic", "factor": 0.0, "original_max_position_embeddings": 8},
    ],
)
def test_factor_below_one_raises(scaling):
    with pytest.raises(ValueError, match="factor"):
        fp.rope_frequencies(16, scaling=scaling, seq_len=32)


@pytest.mark.parametrize("dim", [7, 1, 0])
def test_bad_dim_raises(dim):
    with pytest.raises(ValueError, match=str(dim)):
        fp.rope_frequencies(dim)


@pytest.mark.parametrize(
    "scaling", ["linear", 2.0, [("rope_type", "linear")], ("linear", 2.0)]
)
def test_scaling_of_wrong_type_raises(scaling):
    with pytest.raises(TypeError, match="scaling"):
        fp.rope_frequencies(16, scaling=scaling)


@pytest.mark.parametrize(("low", "high"), [(4.0, 3.999), (4.0, 1.0)])
def test_llama3_high_below_low_raises(low, high):
    config = {**LLAMA31, "low_freq_factor": low, "high_freq_factor": high}
    with pytest.raises(ValueError, match="high_freq_factor"):
        fp.rope_frequencies(128, base=500_000.0, scaling=config)


def test_scaling_dataclasses_are_frozen():
    scaling = fp.LinearScaling(factor=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scaling.factor = 3.0  # type: ignore[misc]


# ------------------------------------------------------------------ apply_rope

SHAPE = (2, 5, 3, 8)  # [batch, seq, heads, head_dim]; shared to reuse compilations
POSITIONS = np.array([[0, 1, 2, 3, 4], [7, 100, 4095, 4096, 65_000]])
rope_jit = jax.jit(
    fp.apply_rope, static_argnames=("base", "layout", "rotary_dim", "scaling")
)


def test_dynamic_without_seq_len_reads_it_from_concrete_positions():
    x = _random(SHAPE, seed=4)
    dynamic = {"rope_type": "dynamic", "factor": 2.0}
    positions = np.arange(SHAPE[-3]) + 90  # largest + 1 = seq_len
    seq_len = int(positions.max()) + 1
    out = fp.apply_rope(
        jnp.asarray(x), positions, scaling=dynamic, max_position_embeddings=16
    )
    grown = references.rope_dynamic_base(8, 10_000.0, 2.0, 16, seq_len)
    expected = references.rope(x, positions, references.paper_frequencies(8, grown))
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)
    with pytest.raises(ValueError, match=r"traced positions.*pass seq_len="):
        jax.jit(
            lambda x, p: fp.apply_rope(
                x, p, scaling=dynamic, max_position_embeddings=16
            )
        )(jnp.asarray(x), positions)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("head_dim", "base"), [(2, 10_000.0), (8, 10_000.0), (8, 500_000.0), (8, 3.0)]
)
def test_apply_rope_matches_reference(transform, layout, head_dim, base):
    x = _random((*SHAPE[:-1], head_dim))
    fn = transform(lambda x, p: fp.apply_rope(x, p, base=base, layout=layout))
    out = fn(jnp.asarray(x), jnp.asarray(POSITIONS))
    chex.assert_shape(out, x.shape)
    chex.assert_type(out, jnp.float32)
    expected = references.rope(
        x, POSITIONS, references.paper_frequencies(head_dim, base), layout
    )
    chex.assert_trees_all_close(f64(out), expected, atol=2e-6)


def test_apply_rope_position_zero_is_identity():
    x = _random(SHAPE)
    out = fp.apply_rope(jnp.asarray(x), jnp.zeros(SHAPE[:2], jnp.int32))
    np.testing.assert_array_equal(np.asarray(out), x)


@pytest.mark.parametrize(
    ("position", "cos_minus_sin", "cos_plus_sin"),
    [
        (1, [-0.301168678940, 0.989950167082], [1.381773290676, 1.009949833751]),
        (2, [-1.325444263373, 0.979801339973], [0.493150590279, 1.019798673360]),
        (100, [1.368684513397, -0.301168678940], [0.355953231178, 1.381773290676]),
    ],
)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_ones_vector_closed_form(layout, position, cos_minus_sin, cos_plus_sin):
    """head_dim 4, base 1e4: angles p and p / 100; RoPE(1) = (cos - sin, sin + cos)."""
    out = f64(rope_jit(jnp.ones((1, 1, 4)), jnp.array([position]), layout=layout))
    if layout == "halves":
        expected = [*cos_minus_sin, *cos_plus_sin]
    else:
        (a, b), (c, d) = cos_minus_sin, cos_plus_sin
        expected = [a, c, b, d]
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_partial_rotary(transform, layout):
    x = _random(SHAPE, seed=1)
    fn = transform(lambda x, p: fp.apply_rope(x, p, layout=layout, rotary_dim=4))
    out = fn(jnp.asarray(x), jnp.asarray(POSITIONS))
    chex.assert_shape(out, x.shape)
    np.testing.assert_array_equal(np.asarray(out)[..., 4:], x[..., 4:])
    expected = references.rope(
        x, POSITIONS, references.paper_frequencies(4), layout, rotary_dim=4
    )
    chex.assert_trees_all_close(f64(out), expected, atol=2e-6)
    head_only = rope_jit(jnp.asarray(x[..., :4]), POSITIONS, layout=layout)
    chex.assert_trees_all_close(out[..., :4], head_only, atol=1e-6)


def test_partial_rotary_bf16_tail_bit_identical():
    x = jnp.asarray(_random(SHAPE, seed=2), jnp.bfloat16)
    out = rope_jit(x, POSITIONS, rotary_dim=2)
    chex.assert_type(out, jnp.bfloat16)
    np.testing.assert_array_equal(
        np.asarray(out[..., 2:]).view(np.uint16), np.asarray(x[..., 2:]).view(np.uint16)
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_yarn_scaling_path(transform, layout):
    scaling = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    x = _random(SHAPE, seed=3)
    fn = transform(lambda x, p: fp.apply_rope(x, p, layout=layout, scaling=scaling))
    out = fn(jnp.asarray(x), jnp.asarray(POSITIONS))
    inv_freq, attention = references.yarn_frequencies(8, 10_000.0, 4.0, 64)
    assert attention > 1.1
    assert not np.allclose(inv_freq, references.paper_frequencies(8))
    expected = references.rope(
        x, POSITIONS, inv_freq, layout, attention_factor=attention
    )
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)
    # the attention factor scales every rotated vector's norm
    np.testing.assert_allclose(
        np.linalg.norm(f64(out), axis=-1),
        attention * np.linalg.norm(f64(x), axis=-1),
        rtol=1e-5,
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_llama3_and_dynamic_scaling_paths(transform):
    x = _random(SHAPE, seed=4)
    llama = fp.Llama3Scaling(
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=64,
    )
    out = transform(lambda x: fp.apply_rope(x, POSITIONS, base=500.0, scaling=llama))(
        jnp.asarray(x)
    )
    inv_freq = references.llama3_frequencies(8, 500.0, 8.0, 1.0, 4.0, 64)
    assert not np.allclose(inv_freq, references.paper_frequencies(8, 500.0))
    chex.assert_trees_all_close(
        f64(out), references.rope(x, POSITIONS, inv_freq), atol=3e-6
    )
    dynamic = {
        "rope_type": "dynamic",
        "factor": 2.0,
        "original_max_position_embeddings": 64,
    }
    out = transform(
        lambda x: fp.apply_rope(x, POSITIONS, scaling=dynamic, seq_len=256)
    )(jnp.asarray(x))
    grown = references.rope_dynamic_base(8, 10_000.0, 2.0, 64, 256)
    expected = references.rope(x, POSITIONS, references.paper_frequencies(8, grown))
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_row_positions(layout):
    """[batch, seq] positions: each row is rotated by its own positions."""
    x = _random(SHAPE, seed=5)
    offsets = np.array([17, 4096])
    positions = offsets[:, None] + np.arange(5)
    out = rope_jit(jnp.asarray(x), positions, layout=layout)
    expected = references.rope(x, positions, references.paper_frequencies(8), layout)
    chex.assert_trees_all_close(f64(out), expected, atol=2e-6)
    for row in range(2):
        single = rope_jit(jnp.asarray(x[row : row + 1]), positions[row], layout=layout)
        chex.assert_trees_all_close(out[row : row + 1], single, atol=1e-6)
    shared = rope_jit(jnp.asarray(x), positions[0], layout=layout)
    assert not np.allclose(shared[1], out[1], atol=1e-3)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_negative_positions_undo_the_rotation(layout):
    x = _random(SHAPE, seed=8)
    rotated = rope_jit(jnp.asarray(x), POSITIONS, layout=layout)
    back = rope_jit(rotated, -POSITIONS, layout=layout)
    chex.assert_trees_all_close(f64(back), f64(x), atol=1e-5)
    expected = references.rope(x, -POSITIONS, references.paper_frequencies(8), layout)
    chex.assert_trees_all_close(
        f64(rope_jit(jnp.asarray(x), -POSITIONS, layout=layout)), expected, atol=2e-6
    )


@pytest.mark.parametrize(("dtype", "atol"), [(jnp.bfloat16, 2e-2), (jnp.float16, 3e-3)])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_low_precision_inputs(transform, dtype, atol):
    x = jnp.asarray(_random(SHAPE, seed=6), dtype)
    out = transform(fp.apply_rope)(x, POSITIONS)
    chex.assert_type(out, dtype)
    chex.assert_shape(out, x.shape)
    expected = references.rope(x, POSITIONS, references.paper_frequencies(8))
    chex.assert_trees_all_close(f64(out), expected, atol=atol)
    # one rounding of the float32 result
    exact = rope_jit(x.astype(jnp.float32), POSITIONS)
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(f64(out), f64(exact), rtol=eps, atol=1e-7)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_accuracy_near_2_pow_20(layout):
    """float32 under jit within 1e-6 of float64; naive p * inv_freq is ~2e-2 off."""
    positions = np.array([2**20 - 1, 2**20 - 2, 2**20 - 12_345, 999_999, 2**19 + 7])
    phase = np.random.default_rng(7).uniform(0, 2 * np.pi, (5, 2, 16))
    # unit-norm pairs, so the error is that of cos and sin themselves
    x = np.zeros((5, 2, 32), np.float32)
    first, second = (_halves_pairs if layout == "halves" else _interleaved_pairs)(32)
    x[..., first], x[..., second] = np.cos(phase), np.sin(phase)
    out = rope_jit(jnp.asarray(x), jnp.asarray(positions), layout=layout)
    expected = references.rope(x, positions, references.paper_frequencies(32), layout)
    chex.assert_trees_all_close(f64(out), expected, atol=1e-6)


# ------------------------------------------------------------------ properties

seeds = st.integers(0, 2**16)
layouts = st.sampled_from(LAYOUTS)
positions_strategy = st.lists(st.integers(0, 200_000), min_size=5, max_size=5).map(
    np.array
)


@PROPERTY
@given(seed=seeds, positions=positions_strategy, layout=layouts)
def test_property_pair_norms_preserved(seed, positions, layout):
    x = _random(SHAPE, seed=seed)
    out = f64(rope_jit(jnp.asarray(x), positions, layout=layout))
    first, second = (_halves_pairs if layout == "halves" else _interleaved_pairs)(8)
    x = f64(x)
    np.testing.assert_allclose(
        np.hypot(out[..., first], out[..., second]),
        np.hypot(x[..., first], x[..., second]),
        rtol=1e-5,
        atol=1e-6,
    )


@PROPERTY
@given(
    seed=seeds,
    m=st.integers(0, 50_000),
    n=st.integers(0, 50_000),
    shift=st.integers(-50_000, 50_000),
    layout=layouts,
)
def test_property_scores_depend_on_offset_only(seed, m, n, shift, layout):
    q, k = _random((2, 1, 1, 16), seed=seed)
    shift = max(shift, -min(m, n))

    def score(pm, pn):
        rq = rope_jit(jnp.asarray(q), jnp.array([pm]), layout=layout)
        rk = rope_jit(jnp.asarray(k), jnp.array([pn]), layout=layout)
        return float(jnp.sum(rq * rk))

    expected = references.rope(q, [m - n], references.paper_frequencies(16), layout)
    expected = float(np.sum(expected * f64(k)))
    assert score(m, n) == pytest.approx(expected, abs=5e-5)
    assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=5e-5)


@PROPERTY
@given(seed=seeds, positions=positions_strategy, rotary_dim=st.sampled_from([2, 4, 8]))
def test_property_interleaved_is_permuted_halves(seed, positions, rotary_dim):
    x = _random(SHAPE, seed=seed)
    half = rotary_dim // 2
    # interleaved feature 2i <-> halves feature i, 2i + 1 <-> i + r/2
    perm = np.concatenate(
        [
            np.stack([np.arange(half), np.arange(half) + half], 1).reshape(-1),
            np.arange(rotary_dim, 8),
        ]
    )
    halves = rope_jit(jnp.asarray(x), positions, rotary_dim=rotary_dim)
    interleaved = rope_jit(
        jnp.asarray(x[..., perm]),
        positions,
        layout="interleaved",
        rotary_dim=rotary_dim,
    )
    chex.assert_trees_all_close(interleaved, halves[..., perm], atol=1e-6)


@PROPERTY
@given(
    seed=seeds,
    scaled=st.lists(st.integers(0, 20_000), min_size=5, max_size=5).map(np.array),
    factor=st.sampled_from([(2.0, 2, 1), (8.0, 8, 1), (2.5, 5, 2), (1.0, 1, 1)]),
    layout=layouts,
)
def test_property_linear_scaling_divides_positions(seed, scaled, factor, layout):
    s, numerator, denominator = factor  # s = numerator / denominator
    x = jnp.asarray(_random(SHAPE, seed=seed))
    positions = scaled * numerator  # multiples of s: positions / s = scaled * den
    out = rope_jit(x, positions, layout=layout, scaling=fp.LinearScaling(factor=s))
    divided = rope_jit(x, scaled * denominator, layout=layout)
    chex.assert_trees_all_close(out, divided, atol=5e-6)


@PROPERTY
@given(
    seed=seeds,
    offsets=st.lists(st.integers(0, 100_000), min_size=2, max_size=2).map(np.array),
    layout=layouts,
)
def test_property_decoding_one_token_at_a_time(seed, offsets, layout):
    x = jnp.asarray(_random(SHAPE, seed=seed))
    whole = rope_jit(x, offsets[:, None] + np.arange(5), layout=layout)
    steps = [
        rope_jit(x[:, t : t + 1], offsets[:, None] + t, layout=layout) for t in range(5)
    ]
    chex.assert_trees_all_close(jnp.concatenate(steps, axis=1), whole, atol=1e-6)


@PROPERTY
@given(
    seed=seeds,
    lengths=st.sampled_from([(5,), (2, 3), (3, 2), (1, 4), (1, 1, 3), (2, 2, 1)]),
    layout=layouts,
)
def test_property_packed_segments(seed, lengths, layout):
    x = jnp.asarray(_random(SHAPE, seed=seed))
    bounds = np.cumsum([0, *lengths])
    positions = np.concatenate([np.arange(n) for n in lengths])
    packed = rope_jit(x, positions, layout=layout)
    for lo, hi in itertools.pairwise(bounds):
        alone = rope_jit(x[:, lo:hi], np.arange(hi - lo), layout=layout)
        chex.assert_trees_all_close(packed[:, lo:hi], alone, atol=1e-6)
    if len(lengths) > 1:  # and differs from the unpacked row
        unpacked = rope_jit(x, np.arange(5), layout=layout)
        assert not np.allclose(unpacked, packed, atol=1e-3)


# ---------------------------------------------------------------------- errors


def test_rank_below_3_raises():
    with pytest.raises(ValueError, match="shape"):
        fp.apply_rope(jnp.ones((4, 8)), jnp.arange(4))


@pytest.mark.parametrize("rotary_dim", [3, 10, 0])
def test_bad_rotary_dim_raises(rotary_dim):
    with pytest.raises(ValueError, match=str(rotary_dim)):
        fp.apply_rope(jnp.ones(SHAPE), POSITIONS, rotary_dim=rotary_dim)


def test_odd_head_dim_needs_rotary_dim():
    x = jnp.ones((*SHAPE[:-1], 7))
    with pytest.raises(ValueError, match="7"):
        fp.apply_rope(x, POSITIONS)
    out = rope_jit(x, POSITIONS, rotary_dim=6)
    np.testing.assert_array_equal(np.asarray(out[..., 6]), 1.0)


def test_unknown_layout_raises():
    with pytest.raises(ValueError, match="interleaved") as info:
        fp.apply_rope(jnp.ones(SHAPE), POSITIONS, layout="neox")
    assert "neox" in str(info.value)


def test_float_positions_raise():
    with pytest.raises(TypeError, match="positions"):
        fp.apply_rope(jnp.ones(SHAPE), POSITIONS.astype(np.float32))


def test_int_x_raises():
    with pytest.raises(TypeError, match="floating"):
        fp.apply_rope(jnp.ones(SHAPE, jnp.int32), POSITIONS)


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 4), (3, 1)])
def test_positions_that_do_not_broadcast_raise(shape):
    with pytest.raises(ValueError, match="broadcast"):
        fp.apply_rope(jnp.ones(SHAPE), jnp.zeros(shape, jnp.int32))


@pytest.mark.parametrize(
    ("x_shape", "positions_shape", "rotary_dim"),
    [((5, 3, 8), (2, 5), None), ((2, 5, 3, 8), (2, 1, 5), 4)],
)
def test_positions_may_not_grow_x(x_shape, positions_shape, rotary_dim):
    """The result has x's shape, so positions that would enlarge it are rejected.

    np.broadcast_shapes(positions, x.shape[:-2]) succeeds here, but the result
    could not have x's shape: a ValueError naming the shapes is expected, not an
    error from deep inside the computation.
    """
    with pytest.raises(ValueError, match="broadcast"):
        fp.apply_rope(
            jnp.ones(x_shape),
            jnp.zeros(positions_shape, jnp.int32),
            rotary_dim=rotary_dim,
        )


def test_max_position_embeddings_fills_a_dicts_missing_original_length():
    # Published dynamic configs carry only {"type": "dynamic", "factor": ...}:
    # the original length is the model config's max_position_embeddings.
    dim, base, factor, length = 64, 10_000.0, 2.0, 4096
    inv_freq, _ = fp.rope_frequencies(
        dim,
        base=base,
        scaling={"type": "dynamic", "factor": factor},
        seq_len=3 * length,
        max_position_embeddings=length,
    )
    grown = base * (factor * 3 * length / length - (factor - 1)) ** (dim / (dim - 2))
    expected = 1.0 / grown ** (np.arange(0, dim, 2) / dim)
    np.testing.assert_allclose(inv_freq, expected, rtol=1e-12)
    # A key in the dict wins over the keyword.
    explicit = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    np.testing.assert_array_equal(
        fp.rope_frequencies(dim, scaling=explicit, max_position_embeddings=9999)[0],
        fp.rope_frequencies(dim, scaling=explicit)[0],
    )
    with pytest.raises(ValueError, match="max_position_embeddings= from the model"):
        fp.rope_frequencies(dim, scaling={"type": "dynamic", "factor": 2.0})


# -- argument errors not covered above -----------------------------------------

DYNAMIC = {
    "rope_type": "dynamic",
    "factor": 2.0,
    "original_max_position_embeddings": 64,
}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"base": -1.0}, ValueError, "base"),
        ({"base": float("inf")}, ValueError, "base"),
        ({"scaling": {"factor": 2.0}}, ValueError, "linear"),
        (
            {"scaling": {**DYNAMIC, "original_max_position_embeddings": 0}},
            ValueError,
            "original_max_position_embeddings",
        ),
        (
            {"scaling": {**DYNAMIC, "original_max_position_embeddings": 64.5}},
            TypeError,
            "original_max_position_embeddings",
        ),
        ({"scaling": DYNAMIC, "seq_len": 0}, ValueError, "seq_len"),
        ({"scaling": DYNAMIC, "seq_len": -5}, ValueError, "seq_len"),
        ({"scaling": DYNAMIC, "seq_len": 100.0}, TypeError, "seq_len"),
    ],
    ids=lambda v: None if isinstance(v, dict) else str(v),
)
def test_rope_frequencies_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fp.rope_frequencies(16, **kwargs)


def test_apply_rope_float_rotary_dim_raises():
    with pytest.raises(TypeError, match="rotary_dim"):
        fp.apply_rope(jnp.ones((1, 4, 2, 8)), jnp.arange(4)[None], rotary_dim=4.0)
