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
    q = np.array([INT32_MIN, 0, INT32_MAX])
    k = np.array([INT32_MAX, INT32_MIN, -5])
    alibi = fp.alibi_bias(q, k, 1, dtype=jnp.float32)
    expected = references.alibi_bias(q, k, references.alibi_get_slopes(1))
    np.testing.assert_allclose(f64(alibi), expected, rtol=1e-6)
    bias = fp.relative_position_bias(jnp.arange(32.0)[None], q, k)
    buckets = references.t5_relative_position_bucket(k[None, :] - q[:, None])
    np.testing.assert_array_equal(f64(bias)[0], buckets)
    window = fp.attention_mask(q, k, sliding_window=2**31)[0]
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
    with pytest.raises(ValueError, match=r"int32 range.*got values from"):
        POSITION_FUNCTIONS[name](positions)


def test_traced_wide_positions_are_accepted():
    # Under jit only the dtype is known: uint32 positions are read as int32.
    positions = jnp.arange(3, dtype=jnp.uint32)
    got = jax.jit(lambda p: fp.sinusoidal_encoding(p, 4))(positions)
    expected = references.paper_sinusoidal(np.arange(3), 4)
    np.testing.assert_allclose(f64(got), expected, atol=1e-6)
