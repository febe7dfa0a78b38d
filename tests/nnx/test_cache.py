"""The decode cache of both MultiHeadAttention twins: nothing clamped, ever.

A step that does not fit the cache (batch, length, slots left) is a
``ValueError`` where that is known, a ``checkify`` error with ``checked=True``
under ``jit``, and NaN outputs (cache keys untouched) under ``jit`` without it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import checkify

from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests.references import normal

FEATURES, SLOTS = 8, 4
X = normal(3, (2, SLOTS + 1, FEATURES))
TWINS = ["linen", "nnx"]


class Decoder:
    """One twin with a ``[2, SLOTS]`` cache, stepped eagerly or jitted."""

    def __init__(self, twin, *, checked=False, dtype=None, batch=2, slots=SLOTS):
        self.twin = twin
        kwargs = dict(causal=True, checked=checked, dtype=dtype)
        shape = (batch, slots, FEATURES)
        if twin == "linen":
            self.module = linen.MultiHeadAttention(num_heads=2, head_dim=4, **kwargs)
            variables = self.module.init(
                jax.random.key(0), jnp.zeros(shape), decode=True
            )
            self.params, self.cache = variables["params"], variables["cache"]
        else:
            module = pnnx.MultiHeadAttention(2, 4, FEATURES, rngs=nnx.Rngs(0), **kwargs)
            module.init_cache(shape)
            self.graphdef, self.cache = nnx.split(module)

    def _step(self, cache, x):
        if self.twin == "linen":
            out, state = self.module.apply(
                {"params": self.params, "cache": cache},
                x,
                decode=True,
                mutable=["cache"],
            )
            return out, state["cache"]
        module = nnx.merge(self.graphdef, cache)
        out = module(x, decode=True)
        return out, nnx.state(module)

    def step(self, x, *, jit=False):
        out, self.cache = (jax.jit(self._step) if jit else self._step)(self.cache, x)
        return out

    def checked_step(self, x):
        error, (out, self.cache) = checkify.checkify(jax.jit(self._step))(self.cache, x)
        return error, out

    def keys(self):
        if self.twin == "linen":
            return np.asarray(self.cache["cached_key"])
        return np.asarray(nnx.merge(self.graphdef, self.cache).cached_key[...])


@pytest.mark.parametrize("twin", TWINS)
def test_step_past_max_length_raises_when_eager(twin):
    decoder = Decoder(twin)
    decoder.step(X[:, :SLOTS])
    with pytest.raises(ValueError, match=r"cache is full.*max_length 4"):
        decoder.step(X[:, SLOTS:])


@pytest.mark.parametrize("twin", TWINS)
def test_step_past_max_length_under_jit_is_nan_and_keeps_the_cache(twin):
    decoder = Decoder(twin)
    inside = decoder.step(X[:, :SLOTS], jit=True)
    assert np.isfinite(np.asarray(inside)).all()
    before = decoder.keys()
    for _ in range(2):  # every later step too
        assert np.isnan(np.asarray(decoder.step(X[:, SLOTS:], jit=True))).all()
        np.testing.assert_array_equal(decoder.keys(), before)


@pytest.mark.parametrize("twin", TWINS)
def test_checked_overflow_is_a_checkify_error(twin):
    decoder = Decoder(twin, checked=True)
    error, out = decoder.checked_step(X[:, :SLOTS])
    assert error.get() is None
    assert np.isfinite(np.asarray(out)).all()
    error, _ = decoder.checked_step(X[:, SLOTS:])
    assert "max_length 4 is full: 4 tokens held, 1 more" in error.get()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("twin", TWINS)
def test_step_with_another_batch_raises(twin, batch):
    decoder = Decoder(twin)
    x = normal(4, (batch, 1, FEATURES))
    message = rf"made for batch \(2,\).*batch \({batch},\)"
    with pytest.raises(ValueError, match=message):
        decoder.step(x)


@pytest.mark.parametrize("twin", TWINS)
def test_prefill_longer_than_the_cache_raises(twin):
    with pytest.raises(ValueError, match=r"5 new tokens do not fit.*max_length 4"):
        Decoder(twin).step(X)


def test_linen_decode_without_a_cache_raises():
    module = linen.MultiHeadAttention(num_heads=2, head_dim=4, causal=True)
    params = module.init(jax.random.key(0), X)["params"]
    with pytest.raises(ValueError, match=r"decode=True needs a cache.*init\("):
        module.apply({"params": params}, X[:, :1], decode=True, mutable=["cache"])


@pytest.mark.parametrize(
    ("kwargs", "cache_dtype", "expected"),
    [
        ({"dtype": jnp.bfloat16}, None, jnp.bfloat16),
        ({"param_dtype": jnp.float16}, None, jnp.float16),
        ({}, None, jnp.float32),
        ({"dtype": jnp.bfloat16}, jnp.float32, jnp.float32),
    ],
)
def test_nnx_cache_dtype_follows_the_module(kwargs, cache_dtype, expected):
    module = pnnx.MultiHeadAttention(2, 4, FEATURES, rngs=nnx.Rngs(0), **kwargs)
    module.init_cache((1, SLOTS, FEATURES), dtype=cache_dtype)
    assert module.cached_key.dtype == expected
    assert module.cached_value.dtype == expected


def test_nnx_init_cache_shape_checked():
    module = pnnx.MultiHeadAttention(2, 4, FEATURES, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"input_shape \[batch..., max_length"):
        module.init_cache((SLOTS,))
    with pytest.raises(ValueError, match="input_shape must be >= 1"):
        module.init_cache((1, 0, FEATURES))
