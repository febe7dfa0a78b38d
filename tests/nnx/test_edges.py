"""Bad and extreme arguments of the NNX twins: the linen twins' errors."""

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

KEY = jax.random.key(0)
IDS = jnp.array([[1, 2]])
X = jnp.ones((1, 2, 4))


def rngs():
    return nnx.Rngs(0)


@pytest.mark.parametrize(
    ("make_linen", "make_nnx"),
    [
        (
            lambda: linen.TokenEmbedding(10, 4, dtype=jnp.int32).init(KEY, IDS),
            lambda: pnnx.TokenEmbedding(10, 4, dtype=jnp.int32, rngs=rngs()),
        ),
        (
            lambda: linen.LearnedPositionEmbedding(8, 4, dtype=jnp.int8).init(KEY, X),
            lambda: pnnx.LearnedPositionEmbedding(8, 4, dtype=jnp.int8, rngs=rngs()),
        ),
        (
            lambda: linen.RelativePositionBias(2, dtype=jnp.int32).init(
                KEY, jnp.arange(3)
            ),
            lambda: pnnx.RelativePositionBias(2, dtype=jnp.int32, rngs=rngs()),
        ),
        (
            lambda: linen.RelativePositionBias(-1).init(KEY, jnp.arange(3)),
            lambda: pnnx.RelativePositionBias(-1, rngs=rngs()),
        ),
        (
            lambda: linen.RelativePositionBias(2, num_buckets=0).init(
                KEY, jnp.arange(3)
            ),
            lambda: pnnx.RelativePositionBias(2, num_buckets=0, rngs=rngs()),
        ),
        (
            lambda: linen.RelativePositionBias(2, num_buckets=3).init(
                KEY, jnp.arange(3)
            ),
            lambda: pnnx.RelativePositionBias(2, num_buckets=3, rngs=rngs()),
        ),
        (
            lambda: linen.InputEmbedding(10, 4, dropout_rate=1.5).init(KEY, IDS),
            lambda: pnnx.InputEmbedding(10, 4, dropout_rate=1.5, rngs=rngs()),
        ),
        (
            lambda: linen.Residual(nn.Dense(4), dropout_rate=-0.5).init(KEY, X),
            lambda: pnnx.Residual(
                nnx.Linear(4, 4, rngs=rngs()),
                pnnx.LayerNorm(4, rngs=rngs()),
                dropout_rate=-0.5,
                rngs=rngs(),
            ),
        ),
        (
            lambda: linen.MultiHeadAttention(2, 2, dropout_rate=1.0).init(KEY, X),
            lambda: pnnx.MultiHeadAttention(
                2, 2, in_features=4, dropout_rate=1.0, rngs=rngs()
            ),
        ),
        (
            lambda: linen.InputEmbedding(10, 4, position="sinusoidal").init(KEY, IDS),
            lambda: pnnx.InputEmbedding(10, 4, position="sinusoidal", rngs=rngs()),
        ),
        (
            lambda: linen.MultiHeadAttention(2, 2, position_bias="alibi").init(KEY, X),
            lambda: pnnx.MultiHeadAttention(
                2, 2, in_features=4, position_bias="alibi", rngs=rngs()
            ),
        ),
        (
            lambda: linen.RMSNorm(epsilon="1e-5").init(KEY, X),
            lambda: pnnx.RMSNorm(4, epsilon="1e-5", rngs=rngs()),
        ),
    ],
    ids=[
        "token-int-dtype",
        "learned-int-dtype",
        "relative-int-dtype",
        "relative-heads",
        "relative-buckets-0",
        "relative-buckets-odd",
        "input-dropout",
        "residual-dropout",
        "attention-dropout",
        "input-position-name",
        "attention-bias-name",
        "epsilon-string",
    ],
)
def test_same_errors_as_linen(make_linen, make_nnx):
    with pytest.raises((TypeError, ValueError)) as linen_error:
        make_linen()
    with pytest.raises(type(linen_error.value)) as nnx_error:
        make_nnx()
    assert str(nnx_error.value) == str(linen_error.value)


@pytest.mark.filterwarnings("error::DeprecationWarning")  # jnp.shape(list)
def test_rotary_takes_lists():
    q = np.arange(8.0).reshape(1, 2, 1, 4) / 8
    got_q, got_k = pnnx.RotaryEmbedding()(q.tolist(), q.tolist())
    expected = references.rope(q, np.arange(2), references.paper_frequencies(4))
    np.testing.assert_allclose(f64(got_q), expected, atol=1e-6)
    np.testing.assert_allclose(f64(got_k), expected, atol=1e-6)


def test_norm_numpy_integer_axis():
    x = jnp.arange(6.0).reshape(2, 3)
    module = pnnx.LayerNorm(2, axis=np.int64(0), rngs=rngs())
    np.testing.assert_allclose(
        f64(module(x)), references.layer_norm(x, axis=0), atol=1e-5
    )
