"""Learned attention sinks (gpt-oss): one logit per head in every denominator."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests import references

T, HEADS, KV_HEADS = 21, 4, 2  # blocks of 8: three, the last one partial


def _inputs():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, T, HEADS, 8)).astype(np.float32)
    k = rng.standard_normal((2, T, KV_HEADS, 8)).astype(np.float32)
    v = rng.standard_normal((2, T, KV_HEADS, 4)).astype(np.float32)
    sinks = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)
    # Row 1: a padded tail (segment 0): its queries attend nothing.
    segments = np.ones((2, T), np.int32)
    segments[1, -4:] = 0
    return q, k, v, sinks, segments


def _reference_and_sink_gradient(q, k, v, sinks, mask, cotangent):
    """float64: the outputs, and the gradient of sum(cotangent * out) with
    respect to each sink, -sum_i p_sink_i <cotangent_i, out_i> over the rows
    of its head (p_sink: the sink's share of the row's denominator)."""
    out = references.attention(q, k, v, mask=mask, sinks=sinks)
    # The sink as what it is, one more key: its logit sink_h (a zero key with
    # a bias) and a value that is 1 in a channel of its own, which then holds
    # the sink's share of every row.
    batch, length, kv_heads = k.shape[0], k.shape[1], k.shape[2]
    keys = np.concatenate([k, np.zeros((batch, 1, *k.shape[2:]))], axis=1)
    values = np.zeros((batch, length + 1, kv_heads, 1))
    values[:, -1] = 1.0
    bias = np.zeros((HEADS, length, length + 1))
    bias[:, :, -1] = np.asarray(sinks)[:, None]
    always = np.ones((*mask.shape[:-1], 1), bool)
    p_sink = references.attention(
        q, keys, values, mask=np.concatenate([mask, always], -1), bias=bias
    )[..., 0]
    grad = -(p_sink * (cotangent * out).sum(-1)).sum(axis=(0, 1))
    return out, grad


@pytest.mark.parametrize("implementation", ["xla", "blockwise"])
def test_sinks_are_the_formula_in_values_and_gradients(implementation):
    q, k, v, sinks, segments = _inputs()
    pos = np.arange(T)
    mask = np.asarray(
        fp.attention_mask(
            pos, pos, causal=True, q_segments=segments, k_segments=segments
        )
    )
    cotangent = np.cos(np.arange(2 * T * HEADS * 4)).reshape(2, T, HEADS, 4)
    extra = {"block_size": 8} if implementation == "blockwise" else {}

    def attend(q, k, v, sinks):
        return fp.dot_product_attention(
            q,
            k,
            v,
            causal=True,
            q_segments=segments,
            k_segments=segments,
            sinks=sinks,
            implementation=implementation,
            **extra,
        )

    def run(q, k, v, sinks):
        out, vjp = jax.vjp(attend, q, k, v, sinks)
        return out, vjp(jnp.asarray(cotangent, jnp.float32))

    out, (d_q, d_k, d_v, d_sinks) = jax.jit(run)(q, k, v, sinks)
    expected, d_sinks_expected = _reference_and_sink_gradient(
        q, k, v, sinks, mask, cotangent
    )
    np.testing.assert_allclose(out, expected, atol=2e-6)
    np.testing.assert_allclose(d_sinks, d_sinks_expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[1, -4:], 0.0)  # nothing to attend: zeros
    if implementation == "blockwise":
        # Its q, k, v gradients are the dense path's.
        def dense(q, k, v, sinks):
            out = fp.dot_product_attention(
                q, k, v, mask=mask, sinks=sinks, implementation="xla"
            )
            return (out * cotangent).sum()

        expected_grads = jax.jit(jax.grad(dense, argnums=(0, 1, 2)))(q, k, v, sinks)
        chex.assert_trees_all_close(
            (d_q, d_k, d_v), expected_grads, atol=1e-5, rtol=1e-5
        )
    assert all(np.isfinite(g).all() for g in (d_q, d_k, d_v, d_sinks))


@pytest.mark.parametrize("implementation", ["xla", "blockwise"])
def test_sinks_per_batch_row(implementation):
    # [batch, heads] sinks: each row with its own, as the row alone computes.
    q, k, v, sinks, _ = _inputs()
    rows = np.stack([sinks, sinks[::-1] - 1.0])
    extra = {"block_size": 8} if implementation == "blockwise" else {}
    out = fp.dot_product_attention(
        q, k, v, causal=True, sinks=rows, implementation=implementation, **extra
    )
    mask = references.attention_mask(np.arange(T), np.arange(T), causal=True)
    for row in range(2):
        expected = references.attention(
            q[row], k[row], v[row], mask=mask, sinks=rows[row]
        )
        np.testing.assert_allclose(out[row], expected, atol=2e-6)


def test_jax_nn_cannot_and_a_wrong_shape_is_named():
    q, k, v, sinks, _ = _inputs()
    with pytest.raises(ValueError, match="cannot do attention sinks"):
        fp.dot_product_attention(q, k, v, sinks=sinks, implementation="jax")
    with pytest.raises(ValueError, match=r"sinks must be \[heads\] = \(4,\)"):
        fp.dot_product_attention(q, k, v, sinks=sinks[:2])


def test_the_modules_sinks_are_a_parameter_in_both_twins():
    # linen against the formula in float64 from its own weights; the NNX twin
    # with the same weights. (Decoding: tests/linen/test_attention.py.)
    x = np.random.default_rng(5).standard_normal((2, 9, 16)).astype(np.float32)
    fields = dict(num_heads=HEADS, num_kv_heads=KV_HEADS, head_dim=8, causal=True)
    module = linen.MultiHeadAttention(
        **fields, sinks=True, sinks_init=jax.nn.initializers.normal(1.0)
    )
    params = module.init(jax.random.key(0), x)["params"]
    weights = jax.tree.map(np.asarray, nn.meta.unbox(params))
    assert weights["sinks"].shape == (HEADS,)
    q = np.einsum("btf,fhd->bthd", x, weights["query"]["kernel"])
    k = np.einsum("btf,fhd->bthd", x, weights["key"]["kernel"])
    v = np.einsum("btf,fhd->bthd", x, weights["value"]["kernel"])
    pos = np.arange(9)
    mask = references.attention_mask(pos, pos, causal=True)
    heads_out = references.attention(q, k, v, mask=mask, sinks=weights["sinks"])
    expected = np.einsum("bthd,hdf->btf", heads_out, weights["out"]["kernel"])
    out = module.apply({"params": params}, x)
    np.testing.assert_allclose(out, expected, atol=2e-5)

    twin = pnnx.MultiHeadAttention(
        HEADS,
        8,
        16,
        num_kv_heads=KV_HEADS,
        causal=True,
        sinks=True,
        rngs=nnx.Rngs(1),
    )
    pnnx.from_linen(twin, {"params": params})
    np.testing.assert_allclose(twin(x), out, atol=1e-6)

    grad = jax.grad(lambda p: module.apply({"params": p}, x).sum())(params)
    assert np.abs(np.asarray(nn.meta.unbox(grad)["sinks"])).max() > 0
