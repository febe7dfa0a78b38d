"""A bias given as a function of positions: blockwise against the dense path.

The dense path adds the bias materialized as a ``[..., heads, q, k]`` array;
the blockwise path calls the function on each block's positions. Values and
gradients (of q, k, v and of a T5 table the function reads) agree to float32
rounding. The bias modules' ``bias_function()`` equals their ``__call__``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen
from flax_posenc import nnx as pnnx
from flax_posenc._src.attention import api
from flax_posenc._src.attention.blockwise import blockwise_attention
from tests import references

Q_LEN, K_LEN, BLOCK = 37, 45, 16  # several blocks each, the last one partial
HEADS, KV_HEADS = 4, 2  # grouped-query heads
# Row 0: queries at 8.. after the keys at 0..; row 1: both from 0 (decode-like
# and self-attention-like offsets in one batch, so each row's bias differs).
Q_POS = np.stack([np.arange(Q_LEN) + 8, np.arange(Q_LEN)])
K_POS = np.stack([np.arange(K_LEN), np.arange(K_LEN)])
TOLERANCE = dict(atol=2e-5, rtol=2e-5)


def _inputs(q_len=Q_LEN, k_len=K_LEN):
    q = references.normal(0, (2, q_len, HEADS, 8))
    k = references.normal(1, (2, k_len, KV_HEADS, 8))
    v = references.normal(2, (2, k_len, KV_HEADS, 4))
    return q, k, v


def _alibi(q_pos, k_pos):
    return fp.alibi_bias(q_pos, k_pos, HEADS)


def _t5(table, q_pos, k_pos):
    return fp.relative_position_bias(table, q_pos, k_pos, bidirectional=False)


def _value_and_grads(f, *args):
    """Jitted: ``f(*args)`` and the gradients of a scalar of it wrt ``args``."""

    def run(*args):
        out, vjp = jax.vjp(f, *args)
        # A cotangent that weighs every output entry differently.
        return out, vjp(jnp.cos(jnp.arange(out.size).reshape(out.shape)))

    return jax.jit(run)(*args)


def _check(blockwise, dense, *args):
    out, grads = _value_and_grads(blockwise, *args)
    expected, expected_grads = _value_and_grads(dense, *args)
    chex.assert_trees_all_close(out, expected, **TOLERANCE)
    chex.assert_trees_all_close(grads, expected_grads, **TOLERANCE)
    return out, grads


def test_alibi_causal_gqa_equals_the_dense_bias_and_the_formula():
    q, k, v = _inputs()
    keywords = dict(q_positions=Q_POS, k_positions=K_POS, causal=True)

    def blockwise(q, k, v):
        return fp.dot_product_attention(
            q, k, v, bias=_alibi, block_size=BLOCK, **keywords
        )

    def dense(q, k, v):
        return fp.dot_product_attention(
            q, k, v, bias=_alibi(Q_POS, K_POS), implementation="xla", **keywords
        )

    out, _ = _check(blockwise, dense, q, k, v)
    mask = references.attention_mask(Q_POS, K_POS, causal=True)[..., None, :, :]
    slopes = references.alibi_get_slopes(HEADS)
    bias = references.alibi_bias(Q_POS, K_POS, slopes)
    expected = references.attention(q, k, v, mask, bias)
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_t5_table_gradients_flow_through_the_blocks():
    # The table is traced and the function closes over it. (Held as the
    # argument of a jax.tree_util.Partial instead, as the modules'
    # bias_function does: test_nnx_table_gradient_through_the_bias_function.)
    q, k, v = _inputs()
    table = references.normal(3, (HEADS, 32))

    def blockwise(q, k, v, table):
        def bias(q_pos, k_pos):
            return _t5(table, q_pos, k_pos)

        return blockwise_attention(
            q, k, v, Q_POS, K_POS, bias=bias, block_q=BLOCK, block_k=BLOCK
        )

    def dense(q, k, v, table):
        bias = _t5(table, Q_POS, K_POS)
        return fp.dot_product_attention(q, k, v, bias=bias, implementation="xla")

    _, grads = _check(blockwise, dense, q, k, v, table)
    assert np.abs(grads[3]).max() > 0.01  # the table has gradients


def test_minus_inf_bias_excludes_keys_and_empties_rows():
    # One bias for every head ([..., 1, q, k]); -inf at every fifth key and
    # for the first 12 queries of row 0, which then attend nothing.
    q, k, v = _inputs()

    def bias(q_pos, k_pos):
        distance = jnp.abs(q_pos[..., :, None] - k_pos[..., None, :])
        row = jnp.arange(2)[:, None, None]  # the batch row ([2, q, k])
        excluded = (k_pos[..., None, :] % 5 == 0) | (row == 0) & (
            q_pos[..., :, None] < 20
        )
        values = jnp.where(excluded, -jnp.inf, -0.1 * distance.astype(jnp.float32))
        return values[..., None, :, :]

    keywords = dict(q_positions=Q_POS, k_positions=K_POS)

    def blockwise(q, k, v):
        return fp.dot_product_attention(
            q, k, v, bias=bias, block_size=BLOCK, **keywords
        )

    def dense(q, k, v):
        return fp.dot_product_attention(
            q, k, v, bias=bias(Q_POS, K_POS), implementation="xla", **keywords
        )

    out, grads = _check(blockwise, dense, q, k, v)
    np.testing.assert_array_equal(out[0, :12], 0.0)  # queries at 8..19
    assert np.abs(out[0, 12:]).max() > 0.1
    for g in grads:
        assert np.isfinite(g).all()
    expected = references.attention(q, k, v, bias=np.asarray(bias(Q_POS, K_POS)))
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_no_query_by_key_array_forward_or_backward_with_a_table():
    q_len = k_len = 96
    q, k, v = _inputs(q_len, k_len)
    table = references.normal(3, (HEADS, 32))
    pos = np.arange(q_len)

    def loss(q, k, v, table):
        out = blockwise_attention(
            q,
            k,
            v,
            pos,
            pos,
            causal=True,
            bias=jax.tree_util.Partial(_t5, table),
            block_q=16,
            block_k=8,
        )
        return out.sum()

    grad = jax.grad(loss, argnums=(0, 1, 2, 3))
    jaxpr = jax.make_jaxpr(grad)(q, k, v, table).jaxpr

    def shapes(jaxpr):
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                yield var.aval.shape
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    sub = getattr(sub, "jaxpr", sub)
                    if hasattr(sub, "eqns"):
                        yield from shapes(sub)

    sizes = [int(np.prod(s)) for s in shapes(jaxpr)]
    # The largest per head is one block pair's logits (the batch is 2).
    assert max(sizes) < HEADS * q_len * k_len


def test_the_default_takes_blockwise_for_a_bias_function_when_large(monkeypatch):
    # No mask keyword at all: the positions default to arange for the bias.
    q, k, v = _inputs(Q_LEN, Q_LEN)
    arange = np.arange(Q_LEN)
    dense = fp.dot_product_attention(q, k, v, bias=_alibi(arange, arange))
    monkeypatch.setattr(api, "BLOCKWISE_FROM", Q_LEN * Q_LEN)  # as if large
    calls = []
    real = api.blockwise.blockwise_attention

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **{**kwargs, "block_q": BLOCK, "block_k": BLOCK})

    monkeypatch.setattr(api.blockwise, "blockwise_attention", counted)
    out = fp.dot_product_attention(q, k, v, bias=_alibi)
    assert len(calls) == 1 and calls[0]["bias"] is _alibi
    chex.assert_trees_all_close(out, dense, **TOLERANCE)
    # An array bias keeps the dense path.
    fp.dot_product_attention(q, k, v, bias=_alibi(arange, arange))
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("bias", "error", "match"),
    [
        (lambda q, k: jnp.zeros((3, 1, 1)), ValueError, r"returned \(3, 1, 1\)"),
        (lambda q, k: jnp.zeros((2, 3, 16, 16)), ValueError, r"heads or 1"),
        (lambda q, k: jnp.zeros((16, 16), int), TypeError, r"floating values"),
        (np.zeros((1, 1)), TypeError, r"must be a callable"),
    ],
)
def test_bias_function_errors(bias, error, match):
    q, k, v = _inputs()
    with pytest.raises(error, match=match):
        blockwise_attention(q, k, v, Q_POS, K_POS, bias=bias, block_q=16, block_k=16)


# -- The modules' bias_function() ---------------------------------------------

POS_Q, POS_K = jnp.arange(7) + 3, jnp.arange(9)


@pytest.mark.parametrize("kind", ["alibi", "relative"])
def test_linen_bias_function_equals_the_call(kind):
    if kind == "alibi":
        module = linen.ALiBiBias(HEADS)
    else:
        module = linen.RelativePositionBias(HEADS, bidirectional=False)
    variables = module.init(jax.random.key(0), POS_Q, POS_K)
    function = module.apply(variables, method="bias_function")
    assert isinstance(function, jax.tree_util.Partial)
    np.testing.assert_array_equal(
        function(POS_Q, POS_K), module.apply(variables, POS_Q, POS_K)
    )
    # The same configuration gives the same pytree structure: a jit taking
    # it compiles once.
    again = module.apply(variables, method="bias_function")
    assert jax.tree.structure(again) == jax.tree.structure(function)


@pytest.mark.parametrize("kind", ["alibi", "relative"])
def test_nnx_bias_function_equals_the_call(kind):
    if kind == "alibi":
        module = pnnx.ALiBiBias(HEADS)
    else:
        module = pnnx.RelativePositionBias(HEADS, bidirectional=False, rngs=nnx.Rngs(0))
    function = module.bias_function()
    assert isinstance(function, jax.tree_util.Partial)
    np.testing.assert_array_equal(function(POS_Q, POS_K), module(POS_Q, POS_K))


def test_nnx_table_gradient_through_the_bias_function():
    module = pnnx.RelativePositionBias(HEADS, bidirectional=False, rngs=nnx.Rngs(0))
    q, k, v = _inputs()

    def loss(attend):
        def weighted(module):
            out = attend(module)
            return (out * jnp.cos(jnp.arange(out.size).reshape(out.shape))).sum()

        return nnx.grad(weighted)(module).rel_embedding[...]

    blockwise = loss(
        lambda module: fp.dot_product_attention(
            q,
            k,
            v,
            bias=module.bias_function(),
            q_positions=Q_POS,
            k_positions=K_POS,
            block_size=BLOCK,
        )
    )
    dense = loss(
        lambda module: fp.dot_product_attention(q, k, v, bias=module(Q_POS, K_POS))
    )
    chex.assert_trees_all_close(blockwise, dense, **TOLERANCE)
