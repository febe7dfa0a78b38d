"""MultiHeadAttention's cross-attention (kv=) and explicit mask (mask=), both
twins, against float64 attention written from the formula."""

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

HEADS, KV_HEADS, DIM, FEATURES = 4, 2, 8, 16
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((2, 5, FEATURES)).astype(np.float32))
KV = jnp.asarray(RNG.standard_normal((2, 7, FEATURES)).astype(np.float32))
MASK = RNG.random((2, 1, 5, 7)) < 0.7
MASK[..., 0] = True  # every query sees a key
KV_SEGMENTS = np.ones((2, 7), np.int32)
KV_SEGMENTS[1, -2:] = 0  # row 1: two padding keys


def _weights(params):
    return {
        name: f64(params[name]["kernel"]) for name in ("query", "key", "value", "out")
    }


def _reference(w, x, kv, mask):
    q = np.einsum("bsi,ihd->bshd", f64(x), w["query"])
    k = np.einsum("bsi,ihd->bshd", f64(kv), w["key"])
    v = np.einsum("bsi,ihd->bshd", f64(kv), w["value"])
    out = references.attention(q, k, v, mask=mask)
    return np.einsum("bshd,hdo->bso", out, w["out"])


def _both(**fields):
    module = linen.MultiHeadAttention(HEADS, DIM, num_kv_heads=KV_HEADS, **fields)
    twin = pnnx.MultiHeadAttention(
        HEADS, DIM, FEATURES, num_kv_heads=KV_HEADS, rngs=nnx.Rngs(0), **fields
    )
    return module, twin


def test_cross_attention_reads_keys_and_values_from_kv_with_their_mask():
    module, twin = _both()
    call = dict(
        kv=KV,
        mask=jnp.asarray(MASK),
        segments=jnp.ones((2, 5), jnp.int32),
        kv_segments=jnp.asarray(KV_SEGMENTS),
    )
    params = nn.meta.unbox(module.init(jax.random.key(0), X, **call)["params"])
    pnnx.from_linen(twin, {"params": params})
    padding = (KV_SEGMENTS != 0)[:, None, None, :]
    want = _reference(_weights(params), X, KV, MASK & padding)
    got = module.apply({"params": params}, X, **call)
    np.testing.assert_allclose(f64(got), want, atol=2e-6)
    got = nnx.jit(
        lambda m, x, kv, mask, s, ks: m(x, kv=kv, mask=mask, segments=s, kv_segments=ks)
    )(twin, X, KV, call["mask"], call["segments"], call["kv_segments"])
    np.testing.assert_allclose(f64(got), want, atol=2e-6)


def test_an_explicit_mask_is_anded_with_the_causal_one():
    module, twin = _both(causal=True)
    mask = RNG.random((2, HEADS, 5, 5)) < 0.6
    mask[..., 0] = True
    params = nn.meta.unbox(module.init(jax.random.key(1), X)["params"])
    pnnx.from_linen(twin, {"params": params})
    causal = np.tril(np.ones((5, 5), bool))
    want = _reference(_weights(params), X, X, mask & causal)
    got = module.apply({"params": params}, X, mask=jnp.asarray(mask))
    np.testing.assert_allclose(f64(got), want, atol=2e-6)
    np.testing.assert_allclose(f64(twin(X, mask=jnp.asarray(mask))), want, atol=2e-6)


@pytest.mark.parametrize(
    "fields, call, error, match",
    [
        ({"rotary": pnnx.RotaryEmbedding()}, {"kv": KV}, ValueError, "takes no rotary"),
        ({}, {"kv_positions": jnp.arange(7)}, ValueError, "pass kv= too"),
        ({}, {"mask": jnp.ones((5, 5))}, TypeError, "mask must be boolean"),
        (
            {},
            {"kv": KV, "kv_segments": jnp.ones((2, 7), jnp.int32)},
            ValueError,
            "segments and kv_segments together",
        ),
        ({}, {"kv": KV[..., :8]}, ValueError, "kv has 8 features"),
    ],
)
def test_cross_attention_refusals(fields, call, error, match):
    twin = pnnx.MultiHeadAttention(HEADS, DIM, FEATURES, rngs=nnx.Rngs(0), **fields)
    with pytest.raises(error, match=match):
        twin(X, **call)


def test_no_cross_attention_or_mask_when_decoding():
    twin = pnnx.MultiHeadAttention(HEADS, DIM, FEATURES, rngs=nnx.Rngs(0))
    twin.init_cache((2, 8, FEATURES))
    with pytest.raises(ValueError, match="has no decode cache"):
        twin(X, kv=KV, decode=True)
    with pytest.raises(ValueError, match="not taken with decode=True"):
        twin(X, mask=jnp.ones((5, 8), bool), decode=True)
