"""Where the attention modules normalize: QK norm before or after RoPE, V norm."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen
from flax_posenc import nnx as pnnx

X = jnp.asarray(np.random.default_rng(2).standard_normal((2, 7, 16)), jnp.float32)
FIELDS = dict(num_heads=4, num_kv_heads=2, head_dim=8, causal=True)


def _by_hand(params, *, qk_position, v_norm):
    # The projections, then the norms where the field puts them, from the
    # module's own weights and the library's pure functions.
    p = nn.meta.unbox(params)["params"]
    q = jnp.einsum("btf,fhd->bthd", X, p["query"]["kernel"])
    k = jnp.einsum("btf,fhd->bthd", X, p["key"]["kernel"])
    v = jnp.einsum("btf,fhd->bthd", X, p["value"]["kernel"])
    if v_norm:
        v = fp.rms_norm(v)
    positions = jnp.arange(7)

    def norm(q, k):
        return (
            fp.rms_norm(q, p["query_norm"]["scale"]),
            fp.rms_norm(k, p["key_norm"]["scale"]),
        )

    if qk_position == "before_rope":
        q, k = norm(q, k)
    q, k = fp.apply_rope(q, positions), fp.apply_rope(k, positions)
    if qk_position == "after_rope":
        q, k = norm(q, k)
    heads = fp.dot_product_attention(q, k, v, causal=True)
    return jnp.einsum("bthd,hdf->btf", heads, p["out"]["kernel"])


@pytest.mark.parametrize("qk_position", ["before_rope", "after_rope"])
def test_qk_norm_where_the_field_says_and_v_norm(qk_position):
    # A learned scale that is not uniform: before and after RoPE differ.
    norm = linen.RMSNorm(scale_init=jax.nn.initializers.uniform(2.0))
    module = linen.MultiHeadAttention(
        **FIELDS,
        rotary=linen.RotaryEmbedding(),
        qk_norm=norm,
        qk_norm_position=qk_position,
        v_norm=linen.RMSNorm(use_scale=False),
    )
    params = module.init(jax.random.key(0), X)
    out = module.apply(params, X)
    expected = _by_hand(params, qk_position=qk_position, v_norm=True)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    other = "after_rope" if qk_position == "before_rope" else "before_rope"
    moved = _by_hand(params, qk_position=other, v_norm=True)
    assert np.abs(np.asarray(out - moved)).max() > 1e-3  # the place matters

    twin = pnnx.MultiHeadAttention(
        4,
        8,
        16,
        num_kv_heads=2,
        causal=True,
        rotary=pnnx.RotaryEmbedding(),
        qk_norm=pnnx.RMSNorm,
        qk_norm_position=qk_position,
        v_norm=functools.partial(pnnx.RMSNorm, use_scale=False),
        rngs=nnx.Rngs(1),
    )
    pnnx.from_linen(twin, params)
    np.testing.assert_allclose(twin(X), out, atol=1e-6)


def test_a_norm_position_not_known_is_named():
    module = linen.MultiHeadAttention(**FIELDS, qk_norm_position="after_attention")
    with pytest.raises(ValueError, match="qk_norm_position"):
        module.init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="qk_norm_position"):
        pnnx.MultiHeadAttention(4, 8, 16, qk_norm_position="after", rngs=nnx.Rngs(0))
