"""attention_mask and dot_product_attention against float64 references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from tests import references
from tests.references import f64

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
IMPLEMENTATIONS = ["jax", "xla"]


def _random(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------- attention_mask

# Two rows: plain positions, and a left-padded row decoding at an offset.
Q_POS = np.array([[0, 1, 2, 3, 4, 5], [0, 0, 7, 8, 9, 10]])
SEGMENTS = np.array([[1, 1, 1, 2, 2, 0], [0, 0, 1, 1, 1, 1]])


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [None, 1, 2, 4])
@pytest.mark.parametrize("segments", [False, True])
def test_mask_matches_definition(transform, causal, window, segments):
    kwargs = {"causal": causal, "sliding_window": window}
    if segments:
        kwargs["q_segments"] = SEGMENTS
    mask = transform(lambda q, k: fp.attention_mask(q, k, **kwargs))(Q_POS, Q_POS)
    chex.assert_shape(mask, (2, 1, 6, 6))
    assert mask.dtype == jnp.bool_
    expected = references.attention_mask(
        Q_POS, Q_POS, causal, window, SEGMENTS if segments else None
    )
    np.testing.assert_array_equal(np.asarray(mask)[:, 0], expected)


def test_mask_decoding_one_query_against_a_cache():
    # One new token at position 9 against 12 cache slots holding positions 0..11.
    mask = fp.attention_mask(jnp.array([[9]]), jnp.arange(12)[None], causal=True)
    np.testing.assert_array_equal(np.asarray(mask)[0, 0, 0], np.arange(12) <= 9)
    window = fp.attention_mask(
        jnp.array([[9]]), jnp.arange(12)[None], causal=True, sliding_window=3
    )
    np.testing.assert_array_equal(
        np.asarray(window)[0, 0, 0], np.isin(np.arange(12), [7, 8, 9])
    )


def test_mask_cross_segments():
    q_seg = np.array([[1, 2]])
    k_seg = np.array([[2, 2, 1, 0]])
    mask = fp.attention_mask(
        jnp.arange(2)[None], jnp.arange(4)[None], q_segments=q_seg, k_segments=k_seg
    )
    expected = references.attention_mask(
        np.arange(2)[None], np.arange(4)[None], q_segments=q_seg, k_segments=k_seg
    )
    np.testing.assert_array_equal(np.asarray(mask)[:, 0], expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sliding_window": 0}, ValueError, "sliding_window"),
        ({"sliding_window": 2.0}, TypeError, "sliding_window"),
        ({"k_segments": np.ones((1, 3), int)}, ValueError, "needs q_segments"),
        ({"q_segments": np.ones((1, 2), int)}, ValueError, "length of its positions"),
        ({"q_segments": np.ones((1, 3))}, TypeError, "q_segments"),
    ],
)
def test_mask_errors(kwargs, error, match):
    pos = jnp.arange(3)[None]
    with pytest.raises(error, match=match):
        fp.attention_mask(pos, pos, **kwargs)


def test_mask_position_errors():
    with pytest.raises(TypeError, match="q_positions"):
        fp.attention_mask(jnp.arange(3.0), jnp.arange(3))
    with pytest.raises(ValueError, match="broadcast"):
        fp.attention_mask(jnp.zeros((2, 3), int), jnp.zeros((3, 3), int))
    with pytest.raises(ValueError, match="scalar"):
        fp.attention_mask(jnp.array(1), jnp.arange(3))


# ------------------------------------------------------- dot_product_attention


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_reference(transform, implementation, kv_heads, masked):
    q = _random((2, 6, 4, 8), 0)
    k = _random((2, 6, kv_heads, 8), 1)
    v = _random((2, 6, kv_heads, 8), 2)
    mask = (
        fp.attention_mask(Q_POS, Q_POS, causal=True, q_segments=SEGMENTS)
        if masked
        else None
    )
    fn = transform(
        lambda q, k, v: fp.dot_product_attention(
            q, k, v, mask=mask, implementation=implementation
        )
    )
    out = fn(q, k, v)
    chex.assert_shape(out, q.shape)
    chex.assert_type(out, jnp.float32)
    expected = references.attention(q, k, v, None if mask is None else np.asarray(mask))
    chex.assert_trees_all_close(f64(out), expected, atol=2e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bias_and_scale(implementation):
    q, k, v = (
        _random((1, 5, 4, 8), 3),
        _random((1, 7, 2, 8), 4),
        _random((1, 7, 2, 8), 5),
    )
    bias = fp.alibi_bias(jnp.arange(5)[None], jnp.arange(7)[None], 4)
    out = fp.dot_product_attention(
        q, k, v, bias=bias, scale=1.0, implementation=implementation
    )
    expected = references.attention(q, k, v, bias=np.asarray(bias), scale=1.0)
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_softcap(transform):
    q, k, v = (
        _random((2, 4, 2, 8), 6) * 6,
        _random((2, 4, 2, 8), 7) * 6,
        _random((2, 4, 2, 8), 8),
    )
    mask = fp.attention_mask(jnp.arange(4), jnp.arange(4), causal=True)
    out = transform(
        lambda q, k, v: fp.dot_product_attention(q, k, v, mask=mask, softcap=5.0)
    )(q, k, v)
    expected = references.attention(q, k, v, np.asarray(mask), softcap=5.0)
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)
    uncapped = references.attention(q, k, v, np.asarray(mask))
    assert np.abs(expected - uncapped).max() > 1e-2  # the cap changes the result


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_rows_with_nothing_to_attend_are_zero_with_finite_gradients(implementation):
    q, k, v = (
        _random((1, 3, 2, 4), 9),
        _random((1, 3, 2, 4), 10),
        _random((1, 3, 2, 4), 11),
    )
    segments = jnp.array([[1, 0, 1]])  # the middle query is padding
    mask = fp.attention_mask(
        jnp.arange(3)[None], jnp.arange(3)[None], q_segments=segments
    )

    def loss(q, k, v):
        out = fp.dot_product_attention(
            q, k, v, mask=mask, implementation=implementation
        )
        return jnp.sum(out**2), out

    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v)
    np.testing.assert_array_equal(np.asarray(out)[0, 1], 0.0)
    assert np.abs(np.asarray(out)[0, 0]).sum() > 0
    for grad in grads:
        assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_array_equal(np.asarray(grads[0])[0, 1], 0.0)


# A causal mask, and a padding bias of -inf on the first two keys: query 0
# sees only padding (every key it may attend is -inf, the rest masked).
PAD_BIAS = np.array([-np.inf, -np.inf, 0.0, 0.0])[None, None, None, :]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "bias",
    [
        pytest.param(PAD_BIAS, id="padding-bias-and-causal-mask"),
        pytest.param(np.full((1, 1, 4, 4), -np.inf), id="all-minus-inf"),
    ],
)
def test_a_minus_inf_bias_excludes_a_key_as_the_mask_does(implementation, bias):
    q, k, v = (
        _random((1, 4, 2, 4), 21),
        _random((1, 4, 1, 4), 22),
        _random((1, 4, 1, 4), 23),
    )
    mask = references.attention_mask(np.arange(4), np.arange(4), causal=True)
    mask = mask if bias is PAD_BIAS else None

    def loss(q, bias):
        out = fp.dot_product_attention(
            q, k, v, mask=mask, bias=bias, implementation=implementation
        )
        return jnp.sum(jnp.sin(out)), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        q, bias
    )
    expected = references.attention(q, k, v, mask, bias)
    np.testing.assert_allclose(f64(out), expected, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out)[0, 0], 0.0)  # nothing to attend
    for grad in grads:
        assert np.isfinite(np.asarray(grad)).all()


def test_a_float_mask_points_to_bias():
    q = _random((1, 2, 1, 4))
    with pytest.raises(TypeError, match=r"mask must be boolean.*bias="):
        fp.dot_product_attention(q, q, q, mask=np.ones((2, 2)))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(("dtype", "atol"), [(jnp.bfloat16, 3e-2), (jnp.float16, 4e-3)])
def test_low_precision_inputs(transform, dtype, atol):
    q, k, v = (jnp.asarray(_random((2, 6, 4, 8), s), dtype) for s in (12, 13, 14))
    mask = fp.attention_mask(Q_POS, Q_POS, causal=True)
    out = transform(lambda q, k, v: fp.dot_product_attention(q, k, v, mask=mask))(
        q, k, v
    )
    chex.assert_type(out, dtype)
    expected = references.attention(q, k, v, np.asarray(mask))
    chex.assert_trees_all_close(f64(out), expected, atol=atol)


def test_gqa_equals_mha_with_repeated_keys():
    q, k, v = (
        _random((2, 5, 6, 8), 15),
        _random((2, 5, 2, 8), 16),
        _random((2, 5, 2, 8), 17),
    )
    mask = fp.attention_mask(jnp.arange(5), jnp.arange(5), causal=True)
    grouped = fp.dot_product_attention(q, k, v, mask=mask)
    repeated = fp.dot_product_attention(
        q, np.repeat(k, 3, axis=-2), np.repeat(v, 3, axis=-2), mask=mask
    )
    chex.assert_trees_all_close(grouped, repeated, atol=1e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_packed_row_equals_its_sequences_run_separately(implementation):
    lengths = (3, 4)
    x = _random((1, 7, 2, 8), 18)
    positions = jnp.array([[0, 1, 2, 0, 1, 2, 3]])
    segments = jnp.array([[1, 1, 1, 2, 2, 2, 2]])
    rope = fp.apply_rope(x, positions)
    mask = fp.attention_mask(positions, positions, causal=True, q_segments=segments)
    packed = fp.dot_product_attention(
        rope, rope, rope, mask=mask, implementation=implementation
    )
    start = 0
    for n in lengths:
        part = x[:, start : start + n]
        part_rope = fp.apply_rope(part, jnp.arange(n)[None])
        own = fp.attention_mask(jnp.arange(n), jnp.arange(n), causal=True)
        alone = fp.dot_product_attention(
            part_rope, part_rope, part_rope, mask=own, implementation=implementation
        )
        chex.assert_trees_all_close(packed[:, start : start + n], alone, atol=1e-6)
        start += n


def test_leading_axes_broadcast():
    q = _random((3, 2, 4, 2, 8), 19)  # [batch, beams, q, heads, d]
    k = v = _random((2, 5, 1, 8), 20)  # shared over the first axis
    out = fp.dot_product_attention(q, k, v)
    expected = references.attention(
        q, np.broadcast_to(k, (3, 2, 5, 1, 8)), np.broadcast_to(v, (3, 2, 5, 1, 8))
    )
    chex.assert_trees_all_close(f64(out), expected, atol=2e-6)


@pytest.mark.parametrize(
    ("shapes", "kwargs", "error", "match"),
    [
        (((4, 8), (4, 8), (4, 8)), {}, ValueError, "must be"),
        (((1, 2, 4, 8), (1, 2, 3, 8), (1, 2, 3, 8)), {}, ValueError, "must divide"),
        (((1, 2, 4, 8), (1, 2, 2, 4), (1, 2, 2, 4)), {}, ValueError, "head_dim"),
        (((1, 2, 4, 8), (1, 2, 2, 8), (1, 3, 2, 8)), {}, ValueError, "v must have"),
        (
            ((1, 2, 4, 8), (1, 2, 2, 8), (1, 2, 2, 8)),
            {"softcap": 0.0},
            ValueError,
            "softcap",
        ),
        (
            ((1, 2, 4, 8), (1, 2, 2, 8), (1, 2, 2, 8)),
            {"softcap": 5.0, "implementation": "jax"},
            ValueError,
            "soft-capping",
        ),
        (
            ((1, 2, 4, 8), (1, 2, 2, 8), (1, 2, 2, 8)),
            {"implementation": "cudnn"},
            ValueError,
            "implementation",
        ),
        (
            ((1, 2, 4, 8), (1, 2, 2, 8), (1, 2, 2, 8)),
            {"mask": np.ones((3, 2, 2), bool)},
            ValueError,
            "mask",
        ),
        (
            ((1, 2, 4, 8), (1, 2, 2, 8), (1, 2, 2, 8)),
            {"mask": np.ones((1, 2, 2))},
            TypeError,
            "boolean",
        ),
        (
            ((1, 2, 4, 8), (1, 2, 2, 8), (1, 2, 2, 8)),
            {"bias": np.ones((1, 4, 2, 3))},
            ValueError,
            "bias",
        ),
    ],
)
def test_attention_errors(shapes, kwargs, error, match):
    q, k, v = (np.ones(s, np.float32) for s in shapes)
    with pytest.raises(error, match=match):
        fp.dot_product_attention(q, k, v, **kwargs)


def test_integer_inputs_raise():
    with pytest.raises(TypeError, match="q"):
        fp.dot_product_attention(
            np.ones((1, 2, 1, 4), int), np.ones((1, 2, 1, 4)), np.ones((1, 2, 1, 4))
        )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_per_head_mask_and_bias_with_groups(implementation, kv_heads):
    """Masks and biases that differ per query head reach the right head."""
    rng = np.random.default_rng(21)
    q = _random((2, 5, 4, 8), 22)
    k, v = _random((2, 6, kv_heads, 8), 23), _random((2, 6, kv_heads, 8), 24)
    mask = rng.random((2, 4, 5, 6)) < 0.7
    bias = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    out = fp.dot_product_attention(
        q, k, v, mask=mask, bias=bias, implementation=implementation
    )
    expected = references.attention(q, k, v, mask, bias)
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", [(2, 1, 1, 6), (6,), (2, 4, 1, 6)])
def test_masks_with_a_query_axis_of_one_under_gqa(implementation, shape):
    """Padding masks [B, 1, 1, k] (and kin) broadcast over queries and groups."""
    q = _random((2, 5, 4, 8), 25)
    k, v = _random((2, 6, 2, 8), 26), _random((2, 6, 2, 8), 27)
    mask = np.random.default_rng(28).random(shape) < 0.7
    mask[..., 0] = True
    out = fp.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
    expected = references.attention(q, k, v, np.broadcast_to(mask, (2, 4, 5, 6)))
    chex.assert_trees_all_close(f64(out), expected, atol=3e-6)


@pytest.mark.parametrize(
    ("positions", "dtype"),
    [
        (list(range(-7, 13)), np.int32),  # negative positions: floor division
        ([2**32 - 9 + i for i in range(9)] + [2**31 - 2, 2**31 + 3], np.uint32),
    ],
    ids=["negative", "uint32-past-2**31"],
)
def test_chunked_attention_mask_sees_its_own_chunk(positions, dtype):
    chunk = 5
    expected = np.array(
        [[q // chunk == k // chunk and k <= q for k in positions] for q in positions]
    )
    pos = np.asarray(positions, dtype)
    mask = fp.attention_mask(pos, pos, causal=True, chunk_size=chunk)
    np.testing.assert_array_equal(np.asarray(mask[0]), expected)


@pytest.mark.parametrize(
    ("chunk_size", "error", "match"),
    [
        (0, ValueError, r"chunk_size must be >= 1"),
        (2**31, ValueError, r"chunk_size must be < 2\*\*31"),
        (2.0, TypeError, r"chunk_size must be an int"),
    ],
)
def test_chunk_size_errors(chunk_size, error, match):
    with pytest.raises(error, match=match):
        fp.attention_mask(jnp.arange(3), jnp.arange(3), chunk_size=chunk_size)
