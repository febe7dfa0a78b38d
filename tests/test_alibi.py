"""alibi_slopes / alibi_bias against the paper's get_slopes and -m|i - j|."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from tests import references
from tests.references import f64

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]


# ----------------------------------------------------------------- alibi_slopes


def test_published_slopes_8_heads():
    expected = [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625]
    np.testing.assert_array_equal(fp.alibi_slopes(8), expected)


def test_published_slopes_12_heads():
    expected = [
        *[2.0**-k for k in range(1, 9)],
        0.7071067812,  # 2^-0.5
        0.3535533906,  # 2^-1.5
        0.1767766953,  # 2^-2.5
        0.08838834765,  # 2^-3.5
    ]
    np.testing.assert_allclose(fp.alibi_slopes(12), expected, rtol=1e-9)
    np.testing.assert_allclose(
        fp.alibi_slopes(12)[8:], 2.0 ** -np.array([0.5, 1.5, 2.5, 3.5]), rtol=1e-15
    )


def test_one_head():
    slopes = fp.alibi_slopes(1)
    assert slopes.shape == (1,)
    np.testing.assert_allclose(slopes, [2.0**-8], rtol=1e-15)


@pytest.mark.parametrize("num_heads", range(1, 65))
def test_slopes_match_paper_get_slopes(num_heads):
    slopes = fp.alibi_slopes(num_heads)
    assert slopes.shape == (num_heads,)
    assert slopes.dtype == np.float64
    np.testing.assert_allclose(
        slopes, references.alibi_get_slopes(num_heads), rtol=1e-14
    )
    assert len(set(slopes.tolist())) == num_heads
    assert np.all((slopes > 0) & (slopes < 1))


@pytest.mark.parametrize("num_heads", [0, -3])
def test_slopes_bad_count_raises(num_heads):
    with pytest.raises(ValueError, match=str(num_heads)):
        fp.alibi_slopes(num_heads)


@pytest.mark.parametrize("num_heads", [2.0, "8", True])
def test_slopes_non_int_raises(num_heads):
    with pytest.raises(TypeError, match="num_heads"):
        fp.alibi_slopes(num_heads)


# ------------------------------------------------------------------- alibi_bias


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("num_heads", [1, 4, 6])
def test_bias_matches_reference(transform, num_heads):
    """q_len != k_len, offsets, a batch of rows with their own positions."""
    q = np.array([[10, 11, 12], [0, 5, 7]])
    k = np.array(
        [[3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [0, 1, 2, 3, 4, 5, 6, 7, 8, 100, 1000]]
    )
    bias = transform(lambda q, k: fp.alibi_bias(q, k, num_heads))(
        jnp.asarray(q), jnp.asarray(k)
    )
    chex.assert_shape(bias, (2, num_heads, 3, 11))
    chex.assert_type(bias, jnp.float32)
    expected = references.alibi_bias(q, k, references.alibi_get_slopes(num_heads))
    chex.assert_trees_all_close(f64(bias), expected, atol=1e-6, rtol=1e-6)


def test_bias_known_values():
    bias = np.asarray(fp.alibi_bias(jnp.array([2]), jnp.arange(4), 2))
    # slopes for 2 heads: 2^-4, 2^-8
    np.testing.assert_array_equal(bias[0, 0], [-0.125, -0.0625, 0.0, -0.0625])
    np.testing.assert_array_equal(bias[1, 0], [-2 / 256, -1 / 256, 0.0, -1 / 256])


def test_bias_broadcasts_leading_axes():
    q = jnp.arange(4)[None, None]  # [1, 1, 4]
    k = jnp.arange(6).reshape(2, 1, 3) * 2  # [2, 1, 3]
    bias = fp.alibi_bias(q, k, 8)
    chex.assert_shape(bias, (2, 1, 8, 4, 3))
    expected = references.alibi_bias(
        np.asarray(q), np.asarray(k), references.alibi_get_slopes(8)
    )
    chex.assert_trees_all_close(f64(bias), expected, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_bias_dtype(dtype):
    positions = jnp.arange(20)
    bias = fp.alibi_bias(positions, positions, 12, dtype=dtype)
    chex.assert_type(bias, dtype)
    expected = references.alibi_bias(
        np.arange(20), np.arange(20), references.alibi_get_slopes(12)
    )
    eps = float(jnp.finfo(dtype).eps)
    chex.assert_trees_all_close(f64(bias), expected, rtol=eps, atol=1e-7)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_diagonal_is_positive_zero(transform):
    positions = jnp.array([[0, 3, 9, 27]])
    bias = np.asarray(transform(lambda p: fp.alibi_bias(p, p, 5))(positions))
    diagonal = np.diagonal(bias, axis1=-2, axis2=-1)
    np.testing.assert_array_equal(diagonal, 0.0)
    assert not np.signbit(diagonal).any()
    off = bias[..., ~np.eye(4, dtype=bool)]
    assert np.all(off < 0)


def test_causal_mask_gives_paper_bias():
    """With the causal mask, allowed entries are the paper's -m (i - j)."""
    n = 7
    bias = f64(fp.alibi_bias(jnp.arange(n), jnp.arange(n), 8))
    causal = np.where(np.tril(np.ones((n, n), bool)), 0.0, -np.inf)
    masked = bias + causal
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    slopes = np.array(references.alibi_get_slopes(8))[:, None, None]
    allowed = np.broadcast_to(j <= i, masked.shape)
    np.testing.assert_allclose(
        masked[allowed],
        np.broadcast_to(-slopes * (i - j), masked.shape)[allowed],
        atol=1e-7,
    )
    assert np.all(np.isneginf(masked[~allowed]))
    # each row: the paper's -m * [i - 1, ..., 1, 0] on keys up to the query
    np.testing.assert_allclose(masked[0, 3, :4], -0.5 * np.array([3, 2, 1, 0]))


def test_bias_jit_matches_eager():
    q = jnp.arange(5) + 3
    eager = fp.alibi_bias(q, q, 3)
    jitted = jax.jit(fp.alibi_bias, static_argnums=2)(q, q, 3)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))


def test_bias_float_positions_raise():
    with pytest.raises(TypeError, match="q_positions"):
        fp.alibi_bias(jnp.arange(3.0), jnp.arange(3), 2)
    with pytest.raises(TypeError, match="k_positions"):
        fp.alibi_bias(jnp.arange(3), jnp.arange(3.0), 2)


def test_bias_int_dtype_raises():
    with pytest.raises(TypeError, match="dtype"):
        fp.alibi_bias(jnp.arange(3), jnp.arange(3), 2, dtype=jnp.int32)


def test_bias_scalar_positions_raise():
    with pytest.raises(ValueError, match="positions"):
        fp.alibi_bias(jnp.array(3), jnp.arange(3), 2)


def test_bias_bad_head_count_raises():
    with pytest.raises(ValueError, match="num_heads"):
        fp.alibi_bias(jnp.arange(3), jnp.arange(3), 0)


# ---------------------------------------------- the keys' form (BLOOM, Falcon-RW)


@pytest.mark.parametrize("num_heads", [32, 71])  # Falcon-RW-1B's; not a power of 2
def test_falcon_rw_form_is_its_code_to_the_bit(num_heads):
    """Positions to 4095: past 256 bfloat16 rounds the positions too."""
    keys = np.arange(4096)
    ours = fp.alibi_bias(
        jnp.arange(2),
        keys,
        num_heads,
        form="key_position",
        slope_dtype=jnp.bfloat16,
        scale=64**-0.5,
    )
    want = references.falcon_rw_alibi(num_heads, keys, 64)
    np.testing.assert_array_equal(ours, np.broadcast_to(want[:, None], ours.shape))


def test_key_form_is_the_same_causal_attention():
    """m k_j against the paper's -m (q_i - k_j): each query's row differs by
    m q_i, which a causal softmax removes."""
    pos = np.arange(12)
    keys = f64(fp.alibi_bias(pos, pos, 8, form="key_position"))
    want = fp.alibi_slopes(8)[:, None, None] * pos  # the same in every row
    np.testing.assert_array_equal(keys, np.broadcast_to(want, keys.shape))
    distance = f64(fp.alibi_bias(pos, pos, 8))
    causal = pos[:, None] >= pos[None]

    def softmax(b):
        b = np.where(causal, b, -np.inf)
        e = np.exp(b - b.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    np.testing.assert_allclose(softmax(keys), softmax(distance), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"form": "keys"}, ValueError, "form"),
        ({"scale": float("inf")}, ValueError, "scale"),
        ({"scale": "0.5"}, TypeError, "scale"),
        ({"slope_dtype": jnp.int8}, TypeError, "slope_dtype"),
    ],
)
def test_key_form_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fp.alibi_bias(jnp.arange(3), jnp.arange(3), 4, **kwargs)


def test_modules_and_their_functions_take_the_form():
    from flax_posenc import linen
    from flax_posenc import nnx as pnnx

    fields = dict(form="key_position", slope_dtype=jnp.bfloat16, scale=0.125)
    pos = jnp.arange(300)
    want = references.falcon_rw_alibi(32, np.arange(300), 64)
    module = pnnx.ALiBiBias(32, **fields)
    np.testing.assert_array_equal(module(pos)[:, 0], want)
    np.testing.assert_array_equal(module.bias_function()(pos, pos)[:, 5], want)
    module = linen.ALiBiBias(32, **fields)
    np.testing.assert_array_equal(module.apply({}, pos)[:, 7], want)
    np.testing.assert_array_equal(module.bias_function()(pos, pos)[:, 9], want)
