"""blockwise_attention against the dense path and float64 references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from flax_posenc._src.attention import blockwise
from flax_posenc._src.attention.blockwise import blockwise_attention
from tests import references

Q_LEN, K_LEN, BLOCK = 37, 45, 16  # several blocks each, the last one partial


def _inputs(heads=2, kv_heads=2, dtype=np.float32, q_len=Q_LEN, k_len=K_LEN):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, q_len, heads, 8)).astype(dtype)
    k = rng.standard_normal((2, k_len, kv_heads, 8)).astype(dtype)
    v = rng.standard_normal((2, k_len, kv_heads, 4)).astype(dtype)
    return q, k, v


def _value_and_grads(f):
    """Jitted: ``f``'s output and the q, k, v gradients of a scalar of it."""

    def run(q, k, v):
        out, vjp = jax.vjp(f, q, k, v)
        # A cotangent that weighs every output entry differently.
        return out, vjp(jnp.cos(jnp.arange(out.size).reshape(out.shape)))

    return jax.jit(run)


def _check(q_pos, k_pos, mask, *, heads=2, kv_heads=2, block=BLOCK, **kwargs):
    """Values and q, k, v gradients against the dense path with ``mask``."""
    q, k, v = _inputs(heads, kv_heads, q_len=q_pos.shape[-1], k_len=k_pos.shape[-1])
    attend = {"softcap": kwargs.pop("softcap", None)}
    blocks = {} if block is None else {"block_q": block, "block_k": block}

    def blockwise(q, k, v):
        return blockwise_attention(q, k, v, q_pos, k_pos, **kwargs, **attend, **blocks)

    def dense(q, k, v):
        return fp.dot_product_attention(q, k, v, mask=mask, **attend)

    out, grads = _value_and_grads(blockwise)(q, k, v)
    expected, expected_grads = _value_and_grads(dense)(q, k, v)
    chex.assert_shape(out, (*q.shape[:-1], v.shape[-1]))
    chex.assert_trees_all_close(out, expected, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(grads, expected_grads, atol=1e-5, rtol=1e-5)
    return (q, k, v), out, grads


Q_POS, K_POS = np.arange(Q_LEN) + 8, np.arange(K_LEN)


def test_no_mask_matches_the_formula():
    (q, k, v), out, _ = _check(Q_POS, K_POS, None)
    np.testing.assert_allclose(out, references.attention(q, k, v), atol=1e-5)


def test_causal_matches_the_formula():
    mask = fp.attention_mask(Q_POS, K_POS, causal=True)
    (q, k, v), out, _ = _check(Q_POS, K_POS, mask, causal=True)
    formula = references.attention_mask(Q_POS, K_POS, causal=True)[..., None, :, :]
    np.testing.assert_allclose(out, references.attention(q, k, v, formula), atol=1e-5)


@pytest.mark.parametrize("causal, window", [(True, 5), (False, 3)])
def test_sliding_window(causal, window):
    mask = fp.attention_mask(Q_POS, K_POS, causal=causal, sliding_window=window)
    _check(Q_POS, K_POS, mask, causal=causal, sliding_window=window)


# Default positions (neither given): each query block scans its band of key
# blocks only (a static plan), over lengths the blocks do not divide.
BAND_CASES = {
    "causal-window": dict(causal=True, sliding_window=11),
    "bidirectional-window": dict(sliding_window=6),
    "causal-chunks": dict(causal=True, chunk_size=12),
}


@pytest.mark.parametrize("case", BAND_CASES.values(), ids=BAND_CASES)
def test_default_positions_scan_a_band_that_holds_the_mask(case):
    length, block = K_LEN, 8
    positions = np.arange(length)
    formula = references.attention_mask(
        positions,
        positions,
        causal=case.get("causal", False),
        window=case.get("sliding_window"),
    )
    formula = formula.reshape(length, length)
    if "chunk_size" in case:
        formula &= _chunk_mask(positions, positions, case["chunk_size"], False)[0]
    width, starts = blockwise.static_plan(
        length,
        length,
        block,
        block,
        causal=case.get("causal", False),
        window=case.get("sliding_window"),
        chunk_size=case.get("chunk_size"),
    )
    blocks = -(-length // block)
    assert width < blocks - 1  # a band, narrower than the keys
    for i, start in enumerate(starts):
        rows = formula[i * block : (i + 1) * block]
        reached = {j // block for j in np.flatnonzero(rows.any(0))}
        assert reached <= set(range(start, start + width)), (i, reached, start)
        assert 0 <= start <= blocks - width
    mask = fp.attention_mask(positions, positions, **case)
    q, k, v = _inputs(q_len=length, k_len=length)

    def banded(q, k, v):
        return blockwise_attention(q, k, v, None, None, **case, block_q=8, block_k=8)

    def dense(q, k, v):
        return fp.dot_product_attention(q, k, v, mask=mask)

    out, grads = _value_and_grads(banded)(q, k, v)
    expected, expected_grads = _value_and_grads(dense)(q, k, v)
    chex.assert_trees_all_close(out, expected, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(grads, expected_grads, atol=1e-5, rtol=1e-5)


def test_full_causal_has_no_band():
    # The last query block reaches every key block: the plain scan.
    assert (
        blockwise.static_plan(45, 45, 8, 8, causal=True, window=None, chunk_size=None)
        is None
    )


def _chunk_mask(q_pos, k_pos, chunk, causal):
    # The formula, on Python ints: same chunk (floor division), and causal.
    return np.array(
        [
            [qi // chunk == kj // chunk and (kj <= qi or not causal) for kj in k_pos]
            for qi in q_pos
        ]
    )[None]


def test_chunked_attention_with_negative_positions():
    q_pos, k_pos = np.arange(Q_LEN) - 7, np.arange(K_LEN) - 7
    mask = _chunk_mask(q_pos.tolist(), k_pos.tolist(), 10, causal=True)
    _check(q_pos, k_pos, mask, causal=True, chunk_size=10)


def test_chunked_attention_of_uint32_positions():
    # Positions past 2**31: chunks of 7 (which does not divide 2**31) stay exact.
    start = 2**32 - 60
    q_pos = np.arange(start, start + Q_LEN, dtype=np.uint32)
    k_pos = np.arange(start - 8, start - 8 + K_LEN, dtype=np.uint32)
    mask = _chunk_mask([int(p) for p in q_pos], [int(p) for p in k_pos], 7, False)
    _check(q_pos, k_pos, mask, chunk_size=7)


def test_segments_with_padding():
    q_seg = np.array([[1] * 12 + [2] * 20 + [0] * 5, [0] * 4 + [3] * 33])
    k_seg = np.array([[1] * 20 + [2] * 20 + [0] * 5, [0] * 10 + [3] * 35])
    mask = fp.attention_mask(
        Q_POS, K_POS, causal=True, q_segments=q_seg, k_segments=k_seg
    )
    _, out, _ = _check(
        Q_POS, K_POS, mask, causal=True, q_segments=q_seg, k_segments=k_seg
    )
    np.testing.assert_array_equal(out[0, -5:], 0.0)  # padding queries attend nothing


def test_decode_offsets_single_query_block():
    # Queries at 100.. read a cache at 0..; one query block (default sizes).
    q_pos = np.arange(100, 103)
    mask = fp.attention_mask(q_pos, K_POS, causal=True, sliding_window=70)
    _check(q_pos, K_POS, mask, block=None, causal=True, sliding_window=70)


def test_single_block_equals_dense():
    mask = fp.attention_mask(Q_POS, K_POS, causal=True)
    _check(Q_POS, K_POS, mask, block=None, causal=True)


def test_grouped_query_heads():
    mask = fp.attention_mask(Q_POS, K_POS, causal=True)
    (q, k, v), out, _ = _check(Q_POS, K_POS, mask, heads=8, kv_heads=2, causal=True)
    expected = references.attention(q, k, v, np.asarray(mask))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_softcap():
    mask = fp.attention_mask(Q_POS, K_POS, causal=True)
    (q, k, v), out, _ = _check(Q_POS, K_POS, mask, causal=True, softcap=2.0)
    expected = references.attention(q, k, v, np.asarray(mask), softcap=2.0)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_rows_with_nothing_to_attend_are_zero_with_finite_gradients():
    # The first 5 queries sit before every key.
    q_pos = np.arange(Q_LEN) - 5
    mask = fp.attention_mask(q_pos, K_POS, causal=True)
    _, out, grads = _check(q_pos, K_POS, mask, causal=True)
    np.testing.assert_array_equal(out[:, :5], 0.0)
    assert np.abs(out[:, 5:]).max() > 0.1
    for g in grads:
        assert np.isfinite(g).all()
    np.testing.assert_array_equal(grads[0][:, :5], 0.0)


def test_bfloat16_to_its_rounding():
    q, k, v = _inputs(dtype=jnp.bfloat16)
    out = blockwise_attention(q, k, v, Q_POS, K_POS, causal=True, block_q=16, block_k=9)
    chex.assert_type(out, jnp.bfloat16)
    mask = references.attention_mask(Q_POS, K_POS, causal=True)[..., None, :, :]
    expected = references.attention(q, k, v, mask)
    # Computed in float32, then rounded once to bfloat16 (8 significant bits).
    np.testing.assert_allclose(
        np.asarray(out, np.float64), expected, rtol=2**-8, atol=1e-5
    )


def _shapes(jaxpr):
    # Every intermediate's shape, sub-programs (scan, cond, remat) included.
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield var.aval.shape
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    yield from _shapes(sub)


def test_no_query_by_key_array_forward_or_backward():
    q_len = k_len = 96
    q, k, v = _inputs(q_len=q_len, k_len=k_len)
    pos = np.arange(q_len)

    def loss(q, k, v):
        out = blockwise_attention(q, k, v, pos, pos, causal=True, block_q=16, block_k=8)
        return out.sum()

    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v).jaxpr
    sizes = [int(np.prod(s)) for s in _shapes(jaxpr)]
    assert max(sizes) < q_len * k_len  # the largest is one block pair's logits


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"block_q": 0}, r"block_q must be >= 1, got 0"),
        ({"block_k": -1}, r"block_k must be >= 1, got -1"),
        ({"chunk_size": 0}, r"chunk_size must be >= 1, got 0"),
        ({"chunk_size": 2**31}, r"chunk_size must be < 2\*\*31"),
        ({"sliding_window": 0}, r"sliding_window must be >= 1, got 0"),
        ({"softcap": -1.0}, r"softcap must be a finite number > 0"),
        ({"q_positions": np.arange(5)}, r"q_positions \(5,\) must be \[\.\.\., seq\]"),
        ({"k_positions": np.zeros((3, K_LEN), int)}, r"leading axes of the positions"),
        ({"q_segments": np.ones(5, int)}, r"q_segments \(5,\) must have the length"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    q, k, v = _inputs()
    args = {"q_positions": Q_POS, "k_positions": K_POS} | kwargs
    with pytest.raises(ValueError, match=match):
        blockwise_attention(q, k, v, **args)


def test_input_shape_errors_are_dot_product_attentions():
    q, k, v = _inputs(heads=3)
    with pytest.raises(ValueError, match=r"kv_heads 2 must divide the query heads 3"):
        blockwise_attention(q, k, v, Q_POS, K_POS)


# -- dot_product_attention with the mask given as positions -------------------

SEGS_Q = np.where(np.arange(Q_LEN) < 20, 1, 2)
SEGS_K = np.where(np.arange(K_LEN) < 25, 1, 2)
SPEC = dict(
    q_positions=Q_POS,
    k_positions=K_POS,
    causal=True,
    sliding_window=30,
    q_segments=SEGS_Q,
    k_segments=SEGS_K,
)


def test_positions_keywords_are_the_mask_they_name():
    q, k, v = _inputs(heads=4)
    mask = fp.attention_mask(
        Q_POS,
        K_POS,
        causal=True,
        sliding_window=30,
        q_segments=SEGS_Q,
        k_segments=SEGS_K,
    )
    # Dense by default at this size: the same program as the explicit mask.
    np.testing.assert_array_equal(
        fp.dot_product_attention(q, k, v, **SPEC),
        fp.dot_product_attention(q, k, v, mask=mask),
    )
    # "and" with an explicit mask.
    extra = np.arange(K_LEN) % 3 != 0
    np.testing.assert_array_equal(
        fp.dot_product_attention(q, k, v, mask=extra, **SPEC),
        fp.dot_product_attention(q, k, v, mask=mask & extra),
    )


def test_blockwise_through_dot_product_attention_equals_dense():
    q, k, v = _inputs(heads=4, kv_heads=2)
    blockwise = fp.dot_product_attention(q, k, v, block_size=BLOCK, **SPEC)
    named = fp.dot_product_attention(q, k, v, implementation="blockwise", **SPEC)
    dense = fp.dot_product_attention(q, k, v, implementation="xla", **SPEC)
    chex.assert_trees_all_close(blockwise, dense, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(named, dense, atol=1e-5, rtol=1e-5)


def test_large_requests_default_to_blockwise(monkeypatch):
    from flax_posenc._src.attention import api

    q = _inputs(q_len=Q_LEN)[0]
    dense = fp.dot_product_attention(q, q, q, causal=True)
    monkeypatch.setattr(api, "BLOCKWISE_FROM", Q_LEN * Q_LEN)  # as if large
    calls = []
    real = api.blockwise.blockwise_attention

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(api.blockwise, "blockwise_attention", counted)
    out = fp.dot_product_attention(q, q, q, causal=True)
    assert len(calls) == 1
    chex.assert_trees_all_close(out, dense, atol=1e-5, rtol=1e-5)
    # An array mask keeps the dense path: it cannot be split into blocks.
    fp.dot_product_attention(q, q, q, mask=np.tril(np.ones((Q_LEN, Q_LEN), bool)))
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(implementation="blockwise", mask=np.ones((1, 1), bool)), r"array mask"),
        (dict(implementation="blockwise", bias=np.zeros((1, 1))), r"array bias"),
        (
            dict(block_size=8, dropout_rate=0.5, dropout_rng=jax.random.key(0)),
            r"cannot express dropout",
        ),
        (dict(implementation="xla", block_size=8), r"block_size is the blockwise"),
        (dict(causal=True), r"causal with 37 queries and 45 keys needs both"),
        (dict(implementation="flash"), r"implementation must be one of"),
    ],
)
def test_what_a_path_cannot_express_raises(kwargs, match):
    q, k, v = _inputs()
    with pytest.raises(ValueError, match=match):
        fp.dot_product_attention(q, k, v, **kwargs)


def test_a_module_without_positions_scans_the_band(monkeypatch):
    # No positions given, no decoding: the module's positions are the default
    # arange, so the blockwise path plans its band when tracing; the output is
    # the dense path's with the positions given.
    from flax_posenc import linen

    plans = []
    planned = blockwise.static_plan

    def spy(*args, **kwargs):
        plans.append(planned(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(blockwise, "static_plan", spy)
    module = linen.MultiHeadAttention(
        num_heads=2, head_dim=8, causal=True, sliding_window=5, block_size=8
    )
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 29, 16)), jnp.float32)
    params = module.init(jax.random.key(0), x)
    out = module.apply(params, x)
    dense = module.clone(implementation="xla", block_size=None)
    expected = dense.apply(params, x, positions=jnp.arange(29))
    chex.assert_trees_all_close(out, expected, atol=1e-5, rtol=1e-5)
    assert plans and plans[-1] is not None and plans[-1][0] == 2
