"""Bad and extreme inputs of the core functions: right results or clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from tests import references
from tests.references import f64

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# ------------------------------------------------------ integer position dtypes

NARROW_DTYPES = [jnp.uint8, jnp.uint16, jnp.uint32, jnp.int8, jnp.int16]


def extreme_positions(dtype):
    """Query and key positions at both ends of ``dtype`` (and of int32)."""
    info = np.iinfo(dtype)
    low, high = int(info.min), min(int(info.max), INT32_MAX)
    return np.array([low, 3, high, 0]), np.array([high, 0, low, 1])


@pytest.mark.parametrize("dtype", NARROW_DTYPES, ids=lambda d: d.__name__)
def test_alibi_bias_any_integer_dtype(dtype):
    q, k = extreme_positions(dtype)
    got = fp.alibi_bias(jnp.asarray(q, dtype), jnp.asarray(k, dtype), 2)
    expected = references.alibi_bias(q, k, references.alibi_get_slopes(2))
    np.testing.assert_allclose(f64(got), expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", NARROW_DTYPES, ids=lambda d: d.__name__)
def test_relative_position_bias_any_integer_dtype(dtype):
    q, k = extreme_positions(dtype)
    table = jnp.arange(2 * 32.0).reshape(2, 32)
    got = fp.relative_position_bias(table, jnp.asarray(q, dtype), jnp.asarray(k, dtype))
    buckets = references.t5_relative_position_bucket(k[None, :] - q[:, None])
    np.testing.assert_array_equal(f64(got), f64(table)[:, buckets])


@pytest.mark.parametrize("causal", [False, True])
def test_attention_mask_window_unsigned_positions(causal):
    q = k = np.arange(4)
    got = fp.attention_mask(
        jnp.asarray(q, jnp.uint32),
        jnp.asarray(k, jnp.uint32),
        causal=causal,
        sliding_window=2,
    )
    expected = references.attention_mask(q, k, causal=causal, window=2)
    np.testing.assert_array_equal(np.asarray(got)[0], expected)


def test_distances_exact_across_the_int32_range():
    q = np.array([INT32_MIN, 0, INT32_MAX], np.int32)
    k = np.array([INT32_MAX, INT32_MIN, -5], np.int32)

    @jax.jit
    def all_three(q, k):
        return (
            fp.alibi_bias(q, k, 1),
            fp.relative_position_bias(jnp.arange(32.0)[None], q, k),
            fp.attention_mask(q, k, sliding_window=2**31)[0],
        )

    alibi, bias, window = all_three(q, k)
    expected = references.alibi_bias(q, k, references.alibi_get_slopes(1))
    np.testing.assert_allclose(f64(alibi), expected, rtol=1e-6)
    buckets = references.t5_relative_position_bucket(
        k[None, :].astype(np.int64) - q[:, None]
    )
    np.testing.assert_array_equal(f64(bias)[0], buckets)
    reference = references.attention_mask(q, k, window=2**31)
    np.testing.assert_array_equal(np.asarray(window), reference)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_int32_extremes(bidirectional):
    relative = np.array([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX])
    got = fp.relative_position_bucket(relative, bidirectional=bidirectional)
    expected = references.t5_relative_position_bucket(
        relative, bidirectional=bidirectional
    )
    np.testing.assert_array_equal(np.asarray(got), expected)


POSITION_FUNCTIONS = {
    "apply_rope": lambda p: fp.apply_rope(jnp.ones((1, 1, 2)), p),
    "sinusoidal_encoding": lambda p: fp.sinusoidal_encoding(p, 2),
    "alibi_bias": lambda p: fp.alibi_bias(p, p, 1),
    "relative_position_bias": lambda p: fp.relative_position_bias(
        jnp.zeros((1, 32)), p, p
    ),
    "relative_position_bucket": lambda p: fp.relative_position_bucket(p),
    "attention_mask": lambda p: fp.attention_mask(p, p, causal=True),
}


@pytest.mark.parametrize("name", sorted(POSITION_FUNCTIONS))
@pytest.mark.parametrize(
    "positions",
    [
        np.array([2**31]),
        np.array([-(2**31) - 1]),
        np.array([2**40], np.int64),
        np.array([2**32 - 1], np.uint32),
        [0, 2**33],
    ],
    ids=["2**31", "-2**31-1", "int64", "uint32", "list"],
)
def test_positions_beyond_int32_raise(name, positions):
    if name == "attention_mask" and getattr(positions, "dtype", None) == np.uint32:
        # The mask reads uint32 pairs exactly (order and distances need no
        # int32 values): beyond int32 is no error there.
        got = POSITION_FUNCTIONS[name](positions)
        expected = references.attention_mask(positions, positions, causal=True)
        np.testing.assert_array_equal(np.asarray(got)[0], expected)
        return
    with pytest.raises(ValueError, match=r"int32 range.*got values from"):
        POSITION_FUNCTIONS[name](positions)


def test_traced_wide_positions_are_accepted():
    # Under jit only the dtype is known: uint32 positions are read as int32.
    positions = jnp.arange(3, dtype=jnp.uint32)
    got = jax.jit(lambda p: fp.sinusoidal_encoding(p, 4))(positions)
    expected = references.paper_sinusoidal(np.arange(3), 4)
    np.testing.assert_allclose(f64(got), expected, atol=1e-6)


# ------------------------------------------------------- numbers that are checked

X = jnp.ones((2, 1, 4))  # [seq, heads, head_dim]


@pytest.mark.parametrize(
    "scaling, match",
    [
        (fp.LinearScaling(float("inf")), "scaling factor must be a finite"),
        (fp.DynamicNTKScaling(float("inf"), 16), "scaling factor must be a finite"),
        (fp.YarnScaling(4.0, 64, beta_fast=0.0), "beta_fast must be a finite"),
        (fp.YarnScaling(4.0, 64, beta_slow=-1.0), "beta_slow must be a finite"),
        (fp.YarnScaling(4.0, 64, beta_fast=float("inf")), "beta_fast"),
        (fp.Llama3Scaling(8.0, 0.0, 4.0, 64), "low_freq_factor must be a finite"),
        (fp.Llama3Scaling(8.0, 1.0, float("inf"), 64), "high_freq_factor"),
        (fp.LongRopeScaling([1.0, float("inf")], [1.0, 1.0], 64), "short_factor"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else "",
)
def test_rope_scaling_numbers_are_checked(scaling, match):
    with pytest.raises(ValueError, match=match):
        fp.rope_frequencies(4, scaling=scaling)


def test_yarn_needs_base_above_one():
    with pytest.raises(ValueError, match=r"base > 1.*got 1\.0"):
        fp.rope_frequencies(8, base=1.0, scaling=fp.YarnScaling(4.0, 64))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_attention_dropout_rate_outside_unit_interval(rate):
    with pytest.raises(ValueError, match="dropout_rate"):
        fp.dot_product_attention(X, X, X, dropout_rate=rate)


@pytest.mark.parametrize(
    "scale, error",
    [
        (np.complex64(1 + 1j), TypeError),
        (1 + 1j, TypeError),
        (jnp.array(1 + 1j), TypeError),
        ("0.5", TypeError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
    ],
    ids=["np.complex64", "complex", "jnp complex", "str", "nan", "inf"],
)
def test_attention_scale_must_be_finite_real(scale, error):
    with pytest.raises(error, match="scale"):
        fp.dot_product_attention(X, X, X, scale=scale)


def test_attention_scale_numpy_real_accepted():
    q = jnp.arange(8.0).reshape(2, 1, 4) / 8
    got = fp.dot_product_attention(q, q, q, scale=np.float32(0.5))
    expected = references.attention(f64(q), f64(q), f64(q), scale=0.5)
    np.testing.assert_allclose(f64(got), expected, atol=1e-6)


@pytest.mark.parametrize("function", [fp.layer_norm, fp.rms_norm])
def test_norm_complex_scale_rejected(function):
    with pytest.raises(TypeError, match="scale must be real"):
        function(jnp.ones((1, 2)), jnp.array([1 + 1j, 1j]))


@pytest.mark.parametrize(
    "length, match",
    [
        (-5, "length must be >= 0, got -5"),
        (np.array([3, -1]), "length must be >= 0, got -1"),
        (np.array([3, 3, 3]), r"length must .* per row.*got \(3,\)"),
        (np.ones((2, 2), int), r"length must .* per row.*got \(2, 2\)"),
    ],
    ids=["negative", "negative row", "3 rows for 2", "rank 2"],
)
def test_fraction_encoding_length_checked(length, match):
    with pytest.raises(ValueError, match=match):
        fp.fraction_encoding(jnp.zeros((2, 3), int), 1, length=length)


def test_fraction_encoding_length_per_row_broadcasts():
    positions = np.arange(6).reshape(2, 3)
    lengths = np.array([[3], [5]])[:, 0]
    got = fp.fraction_encoding(positions, 1, length=lengths)[..., 0]
    np.testing.assert_allclose(f64(got), positions / (lengths[:, None] - 1.0))


def test_randomized_positions_range_beyond_int32():
    with pytest.raises(ValueError, match=r"max_position must be <= 2\*\*31 - 1"):
        fp.randomized_positions(jax.random.key(0), 3, 2**31)


# ------------------------------------------------------------- argument forms


@pytest.mark.parametrize("function", [fp.layer_norm, fp.rms_norm])
def test_norm_axis_numpy_integer_accepted(function):
    x = np.arange(6.0).reshape(2, 3)
    got = function(x, axis=np.int64(0), eps=1e-6)
    expected = function(x, axis=0, eps=1e-6)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    reference = (
        references.layer_norm(x, axis=0)
        if function is fp.layer_norm
        else references.rms_norm(x, axis=0)
    )
    np.testing.assert_allclose(f64(got), reference, atol=1e-5)


@pytest.mark.parametrize("axis", [1.0, "1", True, (0, 1.5)])
def test_norm_axis_of_another_type_rejected(axis):
    with pytest.raises(TypeError, match="axis must be an int"):
        fp.layer_norm(jnp.ones((2, 3)), axis=axis)


@pytest.mark.parametrize("function", [fp.layer_norm, fp.rms_norm])
@pytest.mark.parametrize(
    "eps, error",
    [
        ("1e-5", TypeError),
        (1j, TypeError),
        (float("nan"), ValueError),
        (-1e-6, ValueError),
    ],
    ids=["str", "complex", "nan", "negative"],
)
def test_norm_eps_checked(function, eps, error):
    with pytest.raises(error, match="eps"):
        function(jnp.ones((2, 3)), eps=eps)


@pytest.mark.parametrize(
    "function, reference",
    [(fp.layer_norm, references.layer_norm), (fp.rms_norm, references.rms_norm)],
    ids=["layer_norm", "rms_norm"],
)
def test_traced_eps_values_and_gradients(function, reference):
    x = np.array([[1.0, 2.0, 4.0], [0.5, -1.0, 3.0]])
    weights = np.arange(3.0)

    def loss(e):
        return (function(jnp.asarray(x, jnp.float32), eps=e) ** 2 * weights).sum()

    def expected(e):
        return (reference(x, eps=e) ** 2 * weights).sum()

    value, grad = jax.jit(jax.value_and_grad(loss))(0.5)
    np.testing.assert_allclose(value, expected(0.5), rtol=1e-5)
    step = 1e-6  # central difference of the float64 reference
    numeric = (expected(0.5 + step) - expected(0.5 - step)) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4)


def test_alibi_bias_mismatched_leading_axes_named():
    with pytest.raises(ValueError, match=r"q_positions \(2, 3\) and k_positions"):
        fp.alibi_bias(jnp.zeros((2, 3), int), jnp.zeros((3, 4), int), 1)


def test_relative_position_bias_mismatched_leading_axes_named():
    with pytest.raises(ValueError, match=r"q_positions \(2, 3\) and k_positions"):
        fp.relative_position_bias(
            jnp.zeros((1, 32)), jnp.zeros((2, 3), int), jnp.zeros((3, 4), int)
        )


# -------------------------------------------------------------- empty arrays


@pytest.mark.parametrize("layout", ["interleaved", "halves"])
@pytest.mark.parametrize("shape", [(0,), (2, 0)])
def test_sinusoidal_encoding_of_no_positions(layout, shape):
    got = fp.sinusoidal_encoding(np.zeros(shape, int), 5, layout=layout)
    assert got.shape == (*shape, 5)


def test_embedding_lookup_empty_table_rejected():
    with pytest.raises(ValueError, match=r"table has no rows \(shape \(0, 4\)\)"):
        fp.embedding_lookup(jnp.zeros((0, 4)), jnp.array([0]))


def test_embedding_lookup_checked_with_no_ids():
    from jax.experimental import checkify

    table = jnp.arange(6.0).reshape(3, 2)
    error, rows = checkify.checkify(
        lambda ids: fp.embedding_lookup(table, ids, checked=True)
    )(jnp.zeros((2, 0), int))
    assert error.get() is None
    assert rows.shape == (2, 0, 2)


# ------------------------------------------------------- eps = 0, documented NaN


@pytest.mark.parametrize("function", [fp.layer_norm, fp.rms_norm])
def test_eps_zero_on_zero_rows_is_nan_as_documented(function):
    x = jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 4.0]])
    y, grad = jax.jit(jax.value_and_grad(lambda v: function(v, eps=0.0)[0, 0]))(x)
    assert np.isnan(np.asarray(y))
    assert np.isnan(np.asarray(grad[0])).all()
    np.testing.assert_allclose(
        f64(jax.jit(lambda v: function(v, eps=0.0))(x)[1]),
        (references.layer_norm if function is fp.layer_norm else references.rms_norm)(
            np.array([1.0, 2.0, 4.0]), eps=0.0
        ),
        atol=1e-6,
    )
    assert "gradients are NaN" in function.__doc__


@pytest.mark.parametrize(
    "call",
    [
        lambda p: fp.index_encoding(p, 1),
        lambda p: fp.fraction_encoding(p, 1),
        lambda p: fp.embedding_lookup(jnp.zeros((3, 2)), p),
    ],
    ids=["index_encoding", "fraction_encoding", "embedding_lookup"],
)
def test_wide_integers_that_would_wrap_rejected(call):
    # 2**32 + 1 would wrap to 1 in int32: a valid id, a wrong position.
    with pytest.raises(ValueError, match=r"int32 range.*4294967297"):
        call(np.array([0, 2**32 + 1]))


@pytest.mark.parametrize(
    "frequencies, error",
    [
        ((np.array([1.0 + 1j]), 1.0), TypeError),
        ((np.array([np.inf]), 1.0), ValueError),
        ((np.array([1.0]), 1j), TypeError),
        ((np.array([1.0]), np.nan), ValueError),
    ],
    ids=["complex", "inf", "complex-factor", "nan-factor"],
)
def test_apply_rope_given_frequencies_checked(frequencies, error):
    with pytest.raises(error, match="frequencies"):
        fp.apply_rope(X[..., :2], jnp.arange(2), frequencies=frequencies)


# ---------------------------------------- static options, traced numbers, ids


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fp.attention_mask(POS3, POS3, causal="false"), "causal must be"),
        (lambda: fp.attention_mask(POS3, POS3, causal=1), "causal must be"),
        (
            lambda: fp.relative_position_bucket(POS3, bidirectional="no"),
            "bidirectional must be",
        ),
        (
            lambda: fp.rms_norm(jnp.ones((2, 4)), jnp.ones(4), unit_offset="yes"),
            "unit_offset must be",
        ),
        (
            lambda: fp.apply_rope(
                jnp.ones((1, 3, 1, 4)),
                np.zeros((3, 2), int),
                mrope_section=(1, 1),
                mrope_interleaved="false",
            ),
            "mrope_interleaved must be",
        ),
        (
            lambda: fp.embedding_lookup(jnp.ones((3, 2)), POS3, checked="false"),
            "checked must be",
        ),
        (
            lambda: jax.jit(lambda c: fp.attention_mask(POS3, POS3, causal=c))(True),
            "static",
        ),
    ],
    ids=[
        "causal-string",
        "causal-int",
        "bidirectional",
        "unit-offset",
        "mrope-interleaved",
        "checked",
        "causal-traced",
    ],
)
def test_switches_must_be_bools(call, match):
    with pytest.raises(TypeError, match=match):
        call()


POS3 = np.arange(3)


def test_a_concrete_boolean_array_is_a_bool():
    got = fp.attention_mask(POS3, POS3, causal=jnp.array(True))
    np.testing.assert_array_equal(
        np.asarray(got)[0], references.attention_mask(POS3, POS3, causal=True)
    )


QKV = references.normal(30, (1, 4, 2, 8))


def test_traced_scale_and_softcap():
    expected = references.attention(QKV, QKV, QKV, scale=0.3, softcap=2.0)
    got = jax.jit(
        lambda s, c: fp.dot_product_attention(QKV, QKV, QKV, scale=s, softcap=c)
    )(0.3, 2.0)
    np.testing.assert_allclose(f64(got), expected, atol=1e-6)


@pytest.mark.parametrize("implementation", ["jax", "xla"])
@pytest.mark.parametrize(("q_len", "k_len"), [(0, 4), (4, 0), (0, 0)])
def test_empty_queries_or_keys(implementation, q_len, k_len):
    q, kv = QKV[:, :q_len], QKV[:, :k_len]
    got = fp.dot_product_attention(q, kv, kv, implementation=implementation)
    assert got.shape == (1, q_len, 2, 8)
    np.testing.assert_array_equal(np.asarray(got), 0.0)


def test_negative_segment_ids_are_segments():
    # The rule: equal ids, both nonzero. -1 is a segment, only 0 is padding.
    segments = np.array([-1, -1, 0, 2])
    got = fp.attention_mask(np.arange(4), np.arange(4), q_segments=segments)
    expected = references.attention_mask(
        np.arange(4), np.arange(4), q_segments=segments
    )
    np.testing.assert_array_equal(np.asarray(got)[0], expected)
    assert expected[0, 1] and not expected[2].any()


@pytest.mark.parametrize("window", [None, 3])
def test_traced_uint32_positions_past_int32_in_the_mask(window):
    q = np.array([2**31 - 2, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1], np.int64)
    k = np.array([0, 2**31 - 1, 2**31 + 1, 2**32 - 2], np.int64)
    got = jax.jit(
        lambda q, k: fp.attention_mask(q, k, causal=True, sliding_window=window)
    )(jnp.asarray(q, jnp.uint32), jnp.asarray(k, jnp.uint32))
    expected = references.attention_mask(q, k, causal=True, window=window)
    np.testing.assert_array_equal(np.asarray(got)[0], expected)


def test_mrope_positions_that_could_be_text_positions_are_ambiguous():
    # batch == seq == axes: [3, 3] reads as [seq, axes] or [batch, seq].
    x = jnp.ones((3, 3, 1, 12))
    positions = np.arange(9).reshape(3, 3)
    with pytest.raises(ValueError, match=r"ambiguous.*positions\[None\]"):
        fp.apply_rope(x, positions, mrope_section=(2, 2, 2))
    # Either explicit form is read as it says.
    shared = fp.apply_rope(x, positions[None], mrope_section=(2, 2, 2))
    text = fp.apply_rope(x, positions[..., None], mrope_section=(2, 2, 2))
    np.testing.assert_allclose(
        f64(text),
        references.rope(x, positions, references.paper_frequencies(12)),
        atol=1e-6,
    )
    assert not np.allclose(f64(shared), f64(text))
