"""relative_position_bucket / relative_position_bias against T5's formula."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from tests import references
from tests.references import f64

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
PUBLISHED_RP = [-128, -16, -8, -1, 0, 1, 8, 16, 128]
ALL_RP = np.arange(-3000, 3001)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_published_bidirectional(transform):
    buckets = transform(fp.relative_position_bucket)(jnp.array(PUBLISHED_RP))
    chex.assert_type(buckets, jnp.int32)
    assert buckets.tolist() == [15, 10, 8, 1, 0, 17, 24, 26, 31]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_published_causal(transform):
    fn = transform(lambda r: fp.relative_position_bucket(r, bidirectional=False))
    buckets = fn(jnp.array(PUBLISHED_RP))
    chex.assert_type(buckets, jnp.int32)
    assert buckets.tolist() == [31, 16, 8, 1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(
    ("num_buckets", "max_distance"), [(32, 128), (64, 256), (16, 32)]
)
def test_matches_reference_everywhere(
    transform, bidirectional, num_buckets, max_distance
):
    fn = transform(
        lambda r: fp.relative_position_bucket(
            r,
            bidirectional=bidirectional,
            num_buckets=num_buckets,
            max_distance=max_distance,
        )
    )
    buckets = np.asarray(fn(jnp.asarray(ALL_RP)))
    expected = references.t5_relative_position_bucket(
        ALL_RP, bidirectional, num_buckets, max_distance
    )
    np.testing.assert_array_equal(buckets, expected)
    assert buckets.min() == 0 and buckets.max() == num_buckets - 1
    # every bucket is used (but num_buckets / 2: a later key is never at distance 0)
    unused = {num_buckets // 2} if bidirectional else set()
    assert set(buckets.tolist()) == set(range(num_buckets)) - unused


def test_known_ranges_bidirectional():
    """Bucket ranges for (32, 128): 24 <- 8..11, 26 <- 16..22, 31 <- >= 91."""
    buckets = np.asarray(fp.relative_position_bucket(jnp.arange(1, 200)))
    distance = np.arange(1, 200)
    np.testing.assert_array_equal(buckets[distance < 8], 16 + distance[distance < 8])
    assert set(distance[buckets == 24].tolist()) == set(range(8, 12))
    assert set(distance[buckets == 26].tolist()) == set(range(16, 23))
    assert set(distance[buckets == 31].tolist()) == set(range(91, 200))


def test_values_in_range_and_shape():
    rp = jnp.asarray(np.random.default_rng(0).integers(-(10**6), 10**6, (3, 4, 5)))
    for bidirectional in (True, False):
        buckets = fp.relative_position_bucket(rp, bidirectional=bidirectional)
        chex.assert_shape(buckets, (3, 4, 5))
        assert int(buckets.min()) >= 0 and int(buckets.max()) < 32


def test_small_int_dtypes():
    rp = np.array([-100, -20, -3, 0, 3, 20, 100])
    for dtype in (jnp.int8, jnp.int16, jnp.uint8):
        values = rp if dtype != jnp.uint8 else np.abs(rp)
        buckets = fp.relative_position_bucket(jnp.asarray(values, dtype))
        np.testing.assert_array_equal(
            np.asarray(buckets), references.t5_relative_position_bucket(values)
        )


@pytest.mark.parametrize("num_buckets", [31, 3, 2])
def test_odd_or_too_few_buckets_bidirectional_raises(num_buckets):
    with pytest.raises(ValueError, match=str(num_buckets)):
        fp.relative_position_bucket(jnp.arange(3), num_buckets=num_buckets)


def test_odd_buckets_causal_is_fine():
    buckets = fp.relative_position_bucket(
        -jnp.arange(200), bidirectional=False, num_buckets=31
    )
    expected = references.t5_relative_position_bucket(-np.arange(200), False, 31, 128)
    np.testing.assert_array_equal(np.asarray(buckets), expected)


@pytest.mark.parametrize(
    ("bidirectional", "max_distance"), [(True, 8), (True, 4), (False, 16)]
)
def test_max_distance_too_small_raises(bidirectional, max_distance):
    with pytest.raises(ValueError, match="max_distance"):
        fp.relative_position_bucket(
            jnp.arange(3), bidirectional=bidirectional, max_distance=max_distance
        )


def test_float_input_raises():
    with pytest.raises(TypeError, match="relative_position"):
        fp.relative_position_bucket(jnp.arange(3.0))


# ------------------------------------------------------- relative_position_bias


def _expected_bias(table, q, k, bidirectional, max_distance=128):
    """table[:, bucket(k - q)] moved to [..., heads, q, k]."""
    q, k = np.asarray(q), np.asarray(k)
    rel = k[..., None, :] - q[..., :, None]
    buckets = references.t5_relative_position_bucket(
        rel, bidirectional, table.shape[1], max_distance
    )
    return np.moveaxis(np.asarray(table)[:, buckets], 0, -3)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_bias_matches_table_lookup(transform, bidirectional):
    table = np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32)
    q = np.array([[5, 6, 7], [100, 101, 102]])
    k = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [0, 10, 50, 90, 100, 101, 150, 300]])
    fn = transform(
        lambda t, q, k: fp.relative_position_bias(t, q, k, bidirectional=bidirectional)
    )
    bias = fn(jnp.asarray(table), jnp.asarray(q), jnp.asarray(k))
    chex.assert_shape(bias, (2, 3, 3, 8))
    chex.assert_type(bias, jnp.float32)
    expected = _expected_bias(table, q, k, bidirectional)
    chex.assert_trees_all_close(f64(bias), f64(expected), atol=0.0)


def test_bias_known_values():
    table = jnp.arange(2 * 32.0).reshape(2, 32)
    bias = fp.relative_position_bias(table, jnp.arange(3), jnp.arange(3))
    # rows are queries: k - q = 0 -> bucket 0, k after q -> 17.., before -> 1..
    assert bias[1].tolist() == [
        [32.0, 49.0, 50.0],
        [33.0, 32.0, 49.0],
        [34.0, 33.0, 32.0],
    ]
    causal = fp.relative_position_bias(
        table, jnp.arange(3), jnp.arange(3), bidirectional=False
    )
    assert causal[0].tolist() == [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 1.0, 0.0]]


def test_bias_dtype_follows_table_and_max_distance():
    table = jnp.asarray(np.random.default_rng(2).standard_normal((2, 16)), jnp.bfloat16)
    q, k = np.arange(40), np.arange(40)
    bias = fp.relative_position_bias(table, q, k, max_distance=32)
    chex.assert_type(bias, jnp.bfloat16)
    chex.assert_trees_all_close(
        f64(bias), f64(_expected_bias(f64(table), q, k, True, 32)), atol=0.0
    )


def test_bias_errors():
    with pytest.raises(ValueError, match="table"):
        fp.relative_position_bias(jnp.zeros((32,)), jnp.arange(3), jnp.arange(3))
    with pytest.raises(ValueError, match="positions"):
        fp.relative_position_bias(jnp.zeros((2, 32)), jnp.array(1), jnp.arange(3))
    with pytest.raises(TypeError, match="k_positions"):
        fp.relative_position_bias(jnp.zeros((2, 32)), jnp.arange(3), jnp.arange(3.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_buckets": 32.0}, "num_buckets"), ({"max_distance": 128.0}, "max_distance")],
)
def test_non_int_sizes_raise(kwargs, match):
    with pytest.raises(TypeError, match=match):
        fp.relative_position_bucket(jnp.arange(-3, 4), **kwargs)
