"""Position-dependent query temperature: Llama 4's and Ministral 3's factors."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen
from flax_posenc import nnx as pnnx

# Block edges, and positions far past them.
POSITIONS = np.array([0, 1, 8190, 8191, 8192, 16382, 16383, 10**5, 10**6, 2**24 + 7])


def test_llama4_temperature_is_its_formula():
    # transformers' Llama4TextAttention, written in float64 on Python ints:
    # log(floor((p + 1) / floor_scale) + 1) * attn_scale + 1.
    expected = [math.log((int(p) + 1) // 8192 + 1) * 0.1 + 1 for p in POSITIONS]
    found = fp.temperature_tuning_scale(POSITIONS, floor_scale=8192, attn_scale=0.1)
    assert found.dtype == jnp.float32
    np.testing.assert_allclose(found, expected, rtol=1e-7)
    assert found[2] == 1.0 and found[3] > 1.0  # position 8191 starts block 1


def test_ministral3_scaling_is_its_formula():
    # 1 + beta * log(1 + floor(p / original_max)).
    expected = [1 + 0.1 * math.log(1 + int(p) // 16384) for p in POSITIONS]
    found = fp.llama_4_scaling(
        POSITIONS, beta=0.1, original_max_position_embeddings=16384
    )
    np.testing.assert_allclose(found, expected, rtol=1e-7)
    assert found[6] == 1.0  # 16383 is still the first block


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: fp.temperature_tuning_scale([0.5]), TypeError, "positions"),
        (lambda: fp.temperature_tuning_scale([0], floor_scale=0), ValueError, ">= 1"),
        (
            lambda: fp.llama_4_scaling(
                [0], beta=float("nan"), original_max_position_embeddings=8
            ),
            ValueError,
            "beta",
        ),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_modules_scale_their_queries_by_position():
    # A query scaled by s is attention with its logits scaled by s: the module
    # with query_scale equals the module whose queries are scaled by hand.
    scale = functools.partial(
        fp.temperature_tuning_scale, floor_scale=4, attn_scale=0.5
    )
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 11, 16)), jnp.float32)
    fields = dict(num_heads=4, num_kv_heads=2, head_dim=8, causal=True)
    module = linen.MultiHeadAttention(**fields, query_scale=scale)
    params = module.init(jax.random.key(0), x)
    out = module.apply(params, x)

    def by_hand(module, params, x):
        p = params["params"]
        q = jnp.einsum("btf,fhd->bthd", x, p["query"]["kernel"].value)
        k = jnp.einsum("btf,fhd->bthd", x, p["key"]["kernel"].value)
        v = jnp.einsum("btf,fhd->bthd", x, p["value"]["kernel"].value)
        q = q * scale(jnp.arange(11))[:, None, None]
        heads = fp.dot_product_attention(q, k, v, causal=True)
        return jnp.einsum("bthd,hdf->btf", heads, p["out"]["kernel"].value)

    np.testing.assert_allclose(out, by_hand(module, params, x), atol=1e-5)
    plain = linen.MultiHeadAttention(**fields).apply(params, x)
    assert np.abs(np.asarray(out - plain)).max() > 1e-3  # it changes something

    twin = pnnx.MultiHeadAttention(
        4, 8, 16, num_kv_heads=2, causal=True, query_scale=scale, rngs=nnx.Rngs(1)
    )
    pnnx.from_linen(twin, params)
    np.testing.assert_allclose(twin(x), out, atol=1e-6)
    with pytest.raises(TypeError, match="query_scale must be a function"):
        pnnx.MultiHeadAttention(4, 8, 16, query_scale=2.0, rngs=nnx.Rngs(1))
