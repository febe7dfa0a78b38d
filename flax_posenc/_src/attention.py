"""Softmax attention where positions act: masks from positions, GQA, soft-capping."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from jax.typing import ArrayLike

from flax_posenc._src import validation

IMPLEMENTATIONS = ("xla", "jax")


def attention_mask(
    q_positions: ArrayLike,
    k_positions: ArrayLike,
    *,
    causal: bool = False,
    sliding_window: int | None = None,
    q_segments: ArrayLike | None = None,
    k_segments: ArrayLike | None = None,
) -> jax.Array:
    r"""Which keys each query attends to, from positions and segments.

    True where query ``i`` may attend to key ``j``; the conditions combine with
    "and":

    - ``causal``: $k_j \le q_i$, on positions, not array indices: decode
      offsets, per-row left padding and packed rows whose positions restart all
      work unchanged.
    - ``sliding_window=w``: $q_i - k_j < w$ when causal (the query and the
      $w - 1$ keys before it), $|q_i - k_j| < w$ otherwise.
    - segments (packing): equal segment ids, and both nonzero. Id 0 marks
      padding, so a padding query attends nothing and no query attends a
      padding key; every other id (negative ones too) is a segment.

    Args:
      q_positions: integer ``[..., q]``, any integer dtype, values in the int32
        range (checked unless traced); distances are exact for all of them.
        When both are uint32, every uint32 value works, traced or not.
      k_positions: integer ``[..., k]``, leading axes broadcastable with
        ``q_positions``'.
      causal: keys at later positions are masked.
      sliding_window: the window ``w >= 1``; None for no window.
      q_segments: integer ``[..., q]`` segment ids, or None.
      k_segments: integer ``[..., k]``; None takes ``q_segments`` (self
        attention).

    Returns:
      bool ``[..., 1, q, k]``: broadcastable to ``[..., heads, q, k]``.

    Raises:
      ValueError: a window below 1, segments without positions' shapes,
        ``k_segments`` without ``q_segments``, leading axes that do not
        broadcast.
      TypeError: non-integer positions or segments, a non-int window.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> pos = jnp.arange(4)
      >>> fp.attention_mask(pos, pos, causal=True, sliding_window=2)[0].astype(int)
      Array([[1, 0, 0, 0],
             [1, 1, 0, 0],
             [0, 1, 1, 0],
             [0, 0, 1, 1]], dtype=int32)
    """
    q_positions, k_positions = _mask_positions(q_positions, k_positions)
    for name, value in (("q_positions", q_positions), ("k_positions", k_positions)):
        if value.ndim < 1:
            raise ValueError(f"{name} must be [..., seq], got a scalar.")
    _check_leading("q_positions", q_positions, "k_positions", k_positions)
    causal = validation.check_bool("causal", causal)
    window = None
    if sliding_window is not None:
        window = validation.check_int("sliding_window", sliding_window, minimum=1)
        if window >= 2**32:  # every distance of int32 positions is below 2**32
            window = None
    if q_segments is None and k_segments is not None:
        raise ValueError("k_segments needs q_segments (the queries' segment ids).")
    if q_segments is not None:
        q_segments = validation.integer_array("q_segments", q_segments)
        k_segments = (
            q_segments
            if k_segments is None
            else validation.integer_array("k_segments", k_segments)
        )
        for name, seg, pos in (
            ("q_segments", q_segments, q_positions),
            ("k_segments", k_segments, k_positions),
        ):
            if seg.ndim < 1 or seg.shape[-1] != pos.shape[-1]:
                raise ValueError(
                    f"{name} {seg.shape} must have the length of its positions "
                    f"{pos.shape}."
                )
    return _mask(
        q_positions, k_positions, q_segments, k_segments, causal=causal, window=window
    )


def _mask_positions(q_positions, k_positions):
    """int32 positions with the order and distances of the given ones.

    uint32 pairs are shifted by ``-2**31`` (the sign bit flipped), which keeps
    every uint32 value's order and distances in int32: a traced uint32
    position at or above ``2**31`` would wrap in a plain conversion.
    """
    q, k = (
        x if isinstance(x, (jax.Array, np.ndarray)) else np.asarray(x)
        for x in (q_positions, k_positions)
    )
    if q.dtype == k.dtype == np.uint32:
        return _flip_sign(jnp.asarray(q)), _flip_sign(jnp.asarray(k))
    return (
        validation.position_array("q_positions", q),
        validation.position_array("k_positions", k),
    )


def _flip_sign(x):
    return jax.lax.bitcast_convert_type(x ^ jnp.uint32(2**31), jnp.int32)


@functools.partial(jax.jit, static_argnames=("causal", "window"))
def _mask(q_positions, k_positions, q_segments, k_segments, *, causal, window):
    # One compiled program per call signature, not one per operation when
    # called eagerly.
    q = q_positions[..., :, None]
    k = k_positions[..., None, :]
    mask = jnp.ones(jnp.broadcast_shapes(q.shape, k.shape), dtype=bool)
    if causal:
        mask &= k <= q
    if window is not None:
        # Exact |q - k| (for causal, q - k on the entries it allows).
        mask &= validation.abs_distance(q, k) < jnp.uint32(window)
    if q_segments is not None:
        qs, ks = q_segments[..., :, None], k_segments[..., None, :]
        mask &= (qs == ks) & (qs != 0)
    return mask[..., None, :, :]


def _check_leading(name_a, a, name_b, b):
    try:
        np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    except ValueError:
        raise ValueError(
            f"the leading axes of {name_a} {a.shape} and {name_b} {b.shape} must "
            "broadcast."
        ) from None


def dot_product_attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    scale: float | None = None,
    softcap: float | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    implementation: str | None = None,
) -> jax.Array:
    r"""Softmax attention with grouped key/value heads, masks, biases, soft-capping.

    $$\mathrm{out} = \mathrm{softmax}(c(s\,q k^\top) + b,\ \text{masked})\,v,
    \qquad c(z) = \mathrm{softcap}\cdot\tanh(z / \mathrm{softcap})$$

    with ``s = scale`` (default ``head_dim ** -0.5``), ``c`` only when
    ``softcap`` is given (Gemma 2), ``b = bias``. Query head ``h`` reads
    key/value head ``h // (heads // kv_heads)``, as transformers groups them:
    multi-head (``kv_heads == heads``), grouped-query and multi-query
    (``kv_heads == 1``) attention, without copying keys. Logits and softmax are
    computed in at least float32; the output has ``q``'s dtype.

    A key is excluded from a query's softmax by ``mask`` False or by a bias
    of ``-inf``; the two agree. A query row with every key excluded returns
    zeros (not NaN, not an average of excluded values) and has finite
    gradients. Excluded keys must still be finite: a NaN or infinite value
    in ``v`` at an excluded key makes the outputs NaN (its weight 0 times
    NaN), and one in ``k`` makes the query gradients NaN though the outputs
    are finite. (An empty cache slot holds zeros.)

    Two paths compute the same thing:

    - ``"jax"``: `jax.nn.dot_product_attention`, so that a GPU or TPU gets
      what jax selects there. Used by default on those backends when there is
      no ``softcap`` or dropout (jax has neither) and the three inputs share a
      dtype and head size.
    - ``"xla"``: batched matmuls with the query groups folded into the query
      axis, softmax, and matmuls, written here. Used otherwise: always on CPU,
      where it runs the forward and backward passes in about 0.6x the time of
      jax's own XLA implementation (which also rejects float16 under jit
      there), and for soft-capping and dropout.

    Args:
      q: ``[..., q, heads, head_dim]`` queries.
      k: ``[..., k, kv_heads, head_dim]`` keys; ``kv_heads`` divides ``heads``.
      v: ``[..., k, kv_heads, v_dim]`` values.
      mask: bool, broadcastable to ``[..., heads, q, k]``; True attends (e.g.
        `attention_mask`).
      bias: broadcastable to ``[..., heads, q, k]``, added to the logits after
        soft-capping (`alibi_bias`, `relative_position_bias`).
      scale: multiplies ``q k^T``, a finite real number; T5 uses 1, Gemma 2
        ``query_pre_attn_scalar ** -0.5``.
      softcap: the soft-capping bound (Gemma 2: 50), or None.
      dropout_rate: dropout on the attention weights (kept ones scaled by
        ``1 / (1 - rate)``); needs ``dropout_rng``.
      dropout_rng: the PRNG key for dropout; None (or a rate of 0) for none.
      implementation: ``"jax"``, ``"xla"``, or None to choose as above.

    Returns:
      ``[..., q, heads, v_dim]`` in ``q``'s dtype.

    Raises:
      ValueError: ranks, head counts or sizes that do not fit, a mask or bias
        that does not broadcast, a non-positive softcap, a non-finite scale,
        ``dropout_rate`` outside ``[0, 1)``, an unknown implementation,
        ``"jax"`` with a softcap.
      TypeError: non-floating inputs, a non-boolean mask, a ``scale`` or
        ``softcap`` that is not a real number (complex, string).

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> q = jnp.ones((2, 5, 8, 16))  # [batch, q, heads, head_dim]
      >>> k = v = jnp.ones((2, 5, 2, 16))  # 2 kv heads: grouped-query attention
      >>> pos = jnp.arange(5)
      >>> mask = fp.attention_mask(pos, pos, causal=True)
      >>> fp.dot_product_attention(q, k, v, mask=mask).shape
      (2, 5, 8, 16)

    References:
      Vaswani et al., "Attention Is All You Need", 2017.
      https://arxiv.org/abs/1706.03762

      Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models
      from Multi-Head Checkpoints", 2023. https://arxiv.org/abs/2305.13245
    """
    q = validation.floating_array("q", q)
    k = validation.floating_array("k", k)
    v = validation.floating_array("v", v)
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim < 3:
            raise ValueError(f"{name} must be [..., seq, heads, dim], got {x.shape}.")
    heads, head_dim = q.shape[-2:]
    kv_heads = k.shape[-2]
    if k.shape[-1] != head_dim:
        raise ValueError(
            f"q and k must share head_dim; got q {q.shape} and k {k.shape}."
        )
    if v.shape[-3:-1] != k.shape[-3:-1]:
        raise ValueError(
            f"v must have k's length and kv_heads; got k {k.shape} and v {v.shape}."
        )
    if heads % kv_heads:
        raise ValueError(
            f"kv_heads {kv_heads} must divide the query heads {heads} (q {q.shape}, "
            f"k {k.shape})."
        )
    try:
        batch = np.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    except ValueError:
        raise ValueError(
            f"the leading axes of q {q.shape}, k {k.shape} and v {v.shape} must "
            "broadcast."
        ) from None
    logits_shape = (*batch, heads, q.shape[-3], k.shape[-3])
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(
                f"mask must be boolean (True attends), got {mask.dtype}; pass "
                "additive float values as bias= instead."
            )
        _check_broadcasts("mask", mask, logits_shape)
    if bias is not None:
        bias = validation.floating_array("bias", bias)
        _check_broadcasts("bias", bias, logits_shape)
    if scale is None:
        scale = head_dim**-0.5
    else:
        scale = validation.check_real_or_traced("scale", scale)
    if softcap is not None:
        softcap = validation.check_real_or_traced("softcap", softcap)
        if not isinstance(softcap, jax.Array):
            softcap = validation.check_positive("softcap", softcap)
    dropout_rate = validation.check_rate("dropout_rate", dropout_rate)
    dropout = dropout_rate if dropout_rng is not None else 0.0
    if implementation is None:
        fits = dropout == 0.0 and _jax_fits(q, k, v, softcap)
        implementation = "jax" if fits else "xla"
    validation.check_choice("implementation", implementation, IMPLEMENTATIONS)
    if implementation == "jax" and (softcap is not None or dropout):
        raise ValueError(
            "implementation='jax' has no soft-capping or dropout; use 'xla'."
        )
    if q.shape[-3] == 0 or k.shape[-3] == 0:
        # No queries, or no keys: every query attends nothing.
        out_shape = (*batch, q.shape[-3], heads, v.shape[-1])
        return jnp.zeros(out_shape, q.dtype)
    # One compiled program per call signature: called op by op (eagerly), the
    # math below would compile each of its dozens of operations on its own.
    return _attend(
        q,
        k,
        v,
        mask,
        bias,
        scale,
        softcap,
        dropout_rng if dropout else None,
        batch=batch,
        logits_shape=logits_shape,
        dropout=dropout,
        implementation=implementation,
    )


@functools.partial(
    jax.jit, static_argnames=("batch", "logits_shape", "dropout", "implementation")
)
def _attend(
    q,
    k,
    v,
    mask,
    bias,
    scale,
    softcap,
    rng,
    *,
    batch,
    logits_shape,
    dropout,
    implementation,
):
    if implementation == "jax":
        return _jax_attention(q, k, v, mask, bias, scale, batch, logits_shape)
    return _xla_attention(q, k, v, mask, bias, scale, softcap, batch, dropout, rng)


def _check_broadcasts(name, value, shape):
    try:
        fits = np.broadcast_shapes(value.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name} {value.shape} must broadcast to [..., heads, q, k] {tuple(shape)}."
        )


def _jax_fits(q, k, v, softcap) -> bool:
    # On CPU jax.nn's XLA implementation is the slower one (a 5-D grouped
    # einsum; benchmarks/attention.py measures it) and rejects float16 under
    # jit: the path here runs there.
    if softcap is not None or not (q.dtype == k.dtype == v.dtype):
        return False
    if q.shape[-1] != v.shape[-1]:
        return False
    return jax.default_backend() != "cpu"


def _flat_batch(x, batch):
    """``x`` broadcast to ``batch`` leading axes, then those folded into one."""
    x = jnp.broadcast_to(x, (*batch, *x.shape[-3:]))
    return x.reshape(-1, *x.shape[-3:])


def _jax_attention(q, k, v, mask, bias, scale, batch, logits_shape):
    size = math.prod(batch)

    def flat_logits(t):
        # [..., heads or 1, q, k] -> [B, heads or 1, q, k]
        n = t.shape[-3] if t.ndim >= 3 else 1
        t = jnp.broadcast_to(t, (*batch, n, *logits_shape[-2:]))
        return t.reshape(size, n, *logits_shape[-2:])

    # jax.nn fills masked logits with a large finite number, which outranks a
    # -inf bias: a key is excluded here by either, and a row with nothing
    # left attends everywhere (finite) before its output is zeroed.
    keep = mask
    if bias is not None:
        bias = bias.astype(jnp.float32)
        finite = bias != -jnp.inf
        keep = finite if keep is None else keep & finite
        bias = jnp.where(keep, bias, 0.0)
    anything = None
    if keep is not None:
        anything = jnp.any(keep, axis=-1, keepdims=True)  # [..., heads or 1, q, 1]
        keep = keep | ~anything
    out = jax.nn.dot_product_attention(
        _flat_batch(q, batch),
        _flat_batch(k, batch),
        _flat_batch(v, batch),
        bias=None if bias is None else flat_logits(bias),
        mask=None if keep is None else flat_logits(keep),
        scale=scale,
    )
    out = out.reshape(*batch, *out.shape[-3:])
    if anything is not None:
        anything = jnp.broadcast_to(anything, (*logits_shape[:-1], 1))
        anything = jnp.moveaxis(anything[..., 0], -1, -2)[..., None]
        out = jnp.where(anything, out, jnp.zeros((), out.dtype))
    return out


def _xla_attention(q, k, v, mask, bias, scale, softcap, batch, dropout, rng):
    """Grouped attention as batched matmuls with the groups folded into q.

    Query head ``h = kv * groups + g`` reads key head ``kv``. The queries of one
    key head become one ``[q * groups, d]`` matrix (rows ``(t, g)``), so each
    product is a plain batched matmul over ``[..., kv_heads]``: no key is
    copied, and XLA on CPU runs it ~2x faster than a 5-D grouped einsum.
    """
    heads, kv_heads = q.shape[-2], k.shape[-2]
    groups = heads // kv_heads
    q_len, k_len = q.shape[-3], k.shape[-3]
    work = validation.compute_dtype(q.dtype)
    # [..., t, kv, g, d] -> [..., kv, t * g, d]
    folded = jnp.swapaxes(
        q.reshape(*q.shape[:-2], kv_heads, groups, q.shape[-1]), -4, -3
    )
    folded = folded.reshape(*folded.shape[:-3], q_len * groups, q.shape[-1])
    logits = jnp.einsum(
        "...kqd,...tkd->...kqt", folded, k, preferred_element_type=work
    ).astype(work)
    logits = logits * jnp.asarray(scale, work)
    if softcap is not None:
        logits = softcap * jnp.tanh(logits / softcap)

    def fold(t):
        # [..., heads or 1, q, k] -> [..., kv or 1, q * groups, k], rows (t, g)
        if t.ndim < 3:
            t = t.reshape((1,) * (3 - t.ndim) + t.shape)
        if groups == 1:
            return t
        # A query axis of size 1 (a padding mask) must be broadcast before
        # the query rows are folded with the groups.
        t = jnp.broadcast_to(t, (*t.shape[:-2], q_len, k_len))
        if t.shape[-3] == 1:
            t = jnp.broadcast_to(t[..., None, :], (*t.shape[:-1], groups, k_len))
        else:
            t = t.reshape(*t.shape[:-3], kv_heads, groups, *t.shape[-2:])
            t = jnp.swapaxes(t, -3, -2)
        return t.reshape(*t.shape[:-3], q_len * groups, k_len)

    if bias is not None:
        logits = logits + fold(bias).astype(work)
    if mask is not None:
        # -inf, as a -inf bias: either excludes a key, and they agree.
        logits = jnp.where(fold(mask), logits, -jnp.inf)
    if mask is not None or bias is not None:
        # A row with every key excluded attends nothing: zeros, and finite
        # gradients (its softmax runs on zeros, then its weights are zeroed).
        empty = jnp.max(logits, axis=-1, keepdims=True) == -jnp.inf
        probs = jax.nn.softmax(jnp.where(empty, 0.0, logits), axis=-1)
        probs = jnp.where(empty, 0.0, probs)
    else:
        probs = jax.nn.softmax(logits, axis=-1)
    if dropout:
        keep = jax.random.bernoulli(rng, 1.0 - dropout, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout), 0.0)
    out = jnp.einsum("...kqt,...tkd->...kqd", probs, v.astype(work))
    # [..., kv, t * g, e] -> [..., t, kv * g, e]
    out = out.reshape(*out.shape[:-2], q_len, groups, v.shape[-1])
    out = jnp.swapaxes(out, -4, -3)
    return out.reshape(*out.shape[:-3], heads, v.shape[-1]).astype(q.dtype)


def write_cache(cache: dict, k, v, positions, segments, *, checked: bool = False):
    """Writes new keys at a KV cache's next slots (pure; linen and NNX).

    ``cache``: ``cached_key``/``cached_value`` ``[..., max_len, kv_heads, d]``,
    ``cached_positions``/``cached_segments`` ``[..., max_len]`` (segment 0:
    empty) and ``cache_index`` (the next slot). Returns ``(new_cache, keys,
    values, key_positions, query_segments, key_segments, fits)`` to attend
    over; ``fits`` is None when the write is known to fit, else a traced
    bool that `attend` turns into NaN outputs where it is False.

    Nothing is ever clamped: keys whose batch differs from the cache's, or
    more new tokens than ``max_len``, raise ``ValueError``, and so does a
    concrete ``cache_index`` (an eager call) with no room left. A traced
    index that overflows is a ``checkify`` error with ``checked``; without
    it the cache keeps its keys and the step returns NaN.
    """
    cached_key = cache["cached_key"]
    max_length = cached_key.shape[-3]
    new_tokens = k.shape[-3]
    if k.shape[:-3] != cached_key.shape[:-3]:
        raise ValueError(
            f"the decode cache was made for batch {tuple(cached_key.shape[:-3])} "
            f"(cached_key {tuple(cached_key.shape)}), but this call's input has "
            f"batch {tuple(k.shape[:-3])}: decode with the cache's batch, or "
            "make a new cache for this one."
        )
    if new_tokens > max_length:
        raise ValueError(
            f"{new_tokens} new tokens do not fit a decode cache of max_length "
            f"{max_length}: make the cache at least {new_tokens} long."
        )
    start = jnp.asarray(cache["cache_index"])
    end = start + new_tokens
    fits = None
    if not isinstance(start, jax.core.Tracer):
        if int(end) > max_length:
            raise ValueError(
                f"the decode cache is full: it holds {int(start)} of its "
                f"max_length {max_length} tokens and this call adds "
                f"{new_tokens}; make a cache of max_length >= {int(end)}."
            )
    else:
        fits = end <= max_length
        if checked:
            checkify.check(
                fits,
                f"decode cache of max_length {max_length} is full: "
                "{index} tokens held, "
                f"{new_tokens} more written",
                index=start,
            )
    new_segments = (
        jnp.ones(positions.shape, jnp.int32)
        if segments is None
        else segments.astype(jnp.int32)
    )
    axis = k.ndim - 3

    def write(old, new):
        written = jax.lax.dynamic_update_slice_in_dim(
            old, new.astype(old.dtype), start, axis=axis
        )
        # A write that does not fit would be clamped onto the last slots.
        return written if fits is None else jnp.where(fits, written, old)

    new = {
        "cached_key": write(cached_key, k),
        "cached_value": write(cache["cached_value"], v),
        "cached_positions": write(cache["cached_positions"], positions),
        "cached_segments": write(cache["cached_segments"], new_segments),
        "cache_index": end.astype(start.dtype),
    }
    return (
        new,
        new["cached_key"],
        new["cached_value"],
        new["cached_positions"],
        new_segments,
        new["cached_segments"],
        fits,
    )
