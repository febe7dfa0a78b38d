"""index_encoding and fraction_encoding (the baselines)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_index_encoding(transform):
    positions = np.array([[0, 1, 2], [5, 9, 100]])
    ours = transform(lambda p: fp.index_encoding(p, 4))(positions)
    chex.assert_shape(ours, (2, 3, 4))
    np.testing.assert_array_equal(ours, np.repeat(positions[..., None], 4, -1))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_fraction_encoding_default_length(transform):
    ours = transform(lambda p: fp.fraction_encoding(p, 3))(jnp.arange(11))
    expected = np.repeat((np.arange(11) / 10.0)[:, None], 3, -1)
    np.testing.assert_allclose(ours, expected, atol=1e-7)


def test_fraction_encoding_per_row_lengths():
    positions = np.tile(np.arange(6), (2, 1))
    lengths = np.array([6, 3])
    ours = fp.fraction_encoding(positions, 1, length=lengths)[..., 0]
    expected = positions / (lengths[:, None] - 1.0)
    np.testing.assert_allclose(ours, expected, atol=1e-7)


def test_fraction_meaning_depends_on_length():
    # The flaw the docs describe: "one step" is a different value per length.
    short = fp.fraction_encoding(jnp.arange(5), 1)[:, 0]
    long = fp.fraction_encoding(jnp.arange(50), 1)[:, 0]
    assert not np.isclose(short[1] - short[0], long[1] - long[0])


def test_length_one_is_zero():
    np.testing.assert_array_equal(fp.fraction_encoding(jnp.arange(1), 2), [[0.0, 0.0]])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_dtypes(dtype):
    chex.assert_type(fp.index_encoding(jnp.arange(4), 2, dtype=dtype), dtype)
    chex.assert_type(fp.fraction_encoding(jnp.arange(4), 2, dtype=dtype), dtype)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: fp.index_encoding(jnp.arange(3.0), 2), TypeError, "positions must"),
        (lambda: fp.index_encoding(jnp.arange(3), 0), ValueError, "dim must be >= 1"),
        (
            lambda: fp.fraction_encoding(jnp.arange(3), 2, length=2.5),
            TypeError,
            "length must have an integer dtype",
        ),
        (lambda: fp.fraction_encoding(3, 2), ValueError, "length is required"),
        (
            lambda: fp.index_encoding(jnp.arange(3), 2, dtype=jnp.int32),
            TypeError,
            "dtype must be a floating",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
