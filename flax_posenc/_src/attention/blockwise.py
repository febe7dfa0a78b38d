"""Blockwise attention: masks from positions, one block at a time, O(T) memory.

What goes here: `blockwise_attention`, softmax attention whose mask is
computed per (query block, key block) from that block's positions and
segments by `masks.block_mask` (the rule `masks.attention_mask` states, plus
chunked attention), and whose bias, a function of positions, is evaluated on
the block's positions, with an online softmax over the key blocks. No
``[q, k]`` array is ever built, in the forward or the backward pass (each
block step is rematerialized by `jax.checkpoint`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flax_posenc._src import validation
from flax_posenc._src.attention import checks, masks


def blockwise_attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    q_positions: ArrayLike | None,
    k_positions: ArrayLike | None,
    q_segments: ArrayLike | None = None,
    k_segments: ArrayLike | None = None,
    *,
    causal: bool = False,
    sliding_window: int | None = None,
    chunk_size: int | None = None,
    scale: float | None = None,
    softcap: float | None = None,
    bias: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    block_q: int = 512,
    block_k: int = 512,
    sinks: ArrayLike | None = None,
) -> jax.Array:
    r"""Softmax attention with the mask from positions, computed block by block.

    Computes what ``dot_product_attention(q, k, v, mask=attention_mask(...))``
    computes, with ``scale`` and ``softcap`` as there, in memory linear in the
    lengths: the queries are cut into blocks of ``block_q``, the keys into
    blocks of ``block_k``; each block pair's mask comes from its positions
    and segments, and an online softmax (running maximum, running sum and
    accumulator, in at least float32) combines the key blocks. The mask is
    `attention_mask`'s (``causal``, ``sliding_window``, segments with id 0 as
    padding) and, with ``chunk_size=c``, chunked attention (Llama 4's
    ``attention_chunk_size``): $\lfloor q_i / c \rfloor = \lfloor k_j / c
    \rfloor$. A query with no key to attend returns zeros with finite
    gradients. Lengths that the block sizes do not divide are padded; no query
    attends the padding.

    **Skipped blocks.** A key block is skipped when the position ranges of
    it and the query block cannot meet the mask (a run-time test on the
    traced positions, ``lax.cond``), for any positions. When neither
    position is given (both ``arange``), the reachable key blocks of each
    query block are known when tracing: under a window or chunks each query
    block then scans its band of key blocks only (`static_plan`), so the
    cost is O(q * window), not O(q * k) tests.

    ``bias`` is a function of positions, ``bias(q_positions, k_positions)``,
    called on each block pair inside the loop: it receives integer
    ``[*batch, block_q]`` and ``[*batch, block_k]`` arrays, the block's
    positions (as given, broadcast to ``batch``, the broadcast leading axes of
    the inputs, positions and segments), and returns an array broadcastable
    to ``[*batch, heads or 1, block_q, block_k]``, added to the logits after
    soft-capping, as the dense path adds an array bias. A ``-inf`` bias
    excludes a key. In a partial last block the padding's positions repeat
    the last position (what the bias returns there is masked). Which blocks
    are skipped is decided by the mask alone: a bias never skips a block.
    The function must be pure (traced once, inside `jax.checkpoint` and
    ``lax.scan``); learned parameters it reads get their gradients either
    way it holds them: closed over (a traced table in the enclosing
    function), or as the arguments of a ``jax.tree_util.Partial`` (they are
    then arguments of the compiled program, and a call with new values of
    them does not compile again). `flax_posenc.linen.RelativePositionBias`
    and `flax_posenc.linen.ALiBiBias` (and their NNX twins) give theirs by
    ``bias_function()``.

    Args:
      q: ``[..., q, heads, head_dim]`` queries.
      k: ``[..., k, kv_heads, head_dim]`` keys; ``kv_heads`` divides ``heads``:
        query head ``h`` reads key head ``h // (heads // kv_heads)``.
      v: ``[..., k, kv_heads, v_dim]`` values.
      q_positions: integer ``[..., q]``, leading axes broadcastable with the
        inputs'; as `attention_mask` takes them. None is ``arange(q)``.
      k_positions: integer ``[..., k]``; None is ``arange(k)``.
      q_segments: integer ``[..., q]`` segment ids, or None.
      k_segments: integer ``[..., k]``; None takes ``q_segments``.
      causal: keys at later positions are masked.
      sliding_window: the window ``w >= 1``, as `attention_mask`'s; or None.
      chunk_size: the chunk ``c >= 1`` of chunked attention, or None.
      scale: multiplies ``q k^T`` (default ``head_dim ** -0.5``).
      softcap: the soft-capping bound, or None.
      bias: ``bias(q_positions, k_positions) -> [*batch, heads or 1, q, k]``
        for the block's positions (above), or None.
      block_q: the query block's length (at most the query length is used).
      block_k: the key block's length (at most the key length is used).
      sinks: floating ``[heads]`` attention sinks, as `dot_product_attention`
        takes them, or None: applied once after the key blocks, as
        ``out * sigmoid(lse - sink)`` with ``lse`` the row's log-sum-exp.

    Returns:
      ``[..., q, heads, v_dim]`` in ``q``'s dtype.

    Raises:
      ValueError: shapes that do not fit (as `dot_product_attention`'s),
        positions or segments whose lengths or leading axes do not fit, a
        window, chunk size or block size below 1, a chunk size of 2**31 or
        more, a non-positive softcap, a bias whose values do not broadcast to
        ``[*batch, heads or 1, block_q, block_k]``.
      TypeError: non-floating inputs, non-integer positions or segments, a
        ``bias`` that is not callable or returns non-floating values.
    """
    default = q_positions is None and k_positions is None
    if q_positions is None:
        q_positions = jnp.arange(jnp.shape(q)[-3], dtype=jnp.int32)
    if k_positions is None:
        k_positions = jnp.arange(jnp.shape(k)[-3], dtype=jnp.int32)
    args, options = prepare(
        q,
        k,
        v,
        q_positions,
        k_positions,
        q_segments,
        k_segments,
        causal=causal,
        sliding_window=sliding_window,
        chunk_size=chunk_size,
        scale=scale,
        softcap=softcap,
        bias=bias,
    )
    sinks = checks.check_sinks(sinks, args[0].shape[-2], options["batch"])
    block_q = validation.check_int("block_q", block_q, minimum=1)
    block_k = validation.check_int("block_k", block_k, minimum=1)
    q, k, v = args[:3]
    q_len, k_len = q.shape[-3], k.shape[-3]
    if q_len == 0 or k_len == 0:
        # No queries, or no keys: every query attends nothing.
        shape = (*options["batch"], q_len, q.shape[-2], v.shape[-1])
        return jnp.zeros(shape, q.dtype)
    block_q, block_k = min(block_q, q_len), min(block_k, k_len)
    plan = None
    if default:
        plan = static_plan(
            q_len,
            k_len,
            block_q,
            block_k,
            causal=options["causal"],
            window=options["window"],
            chunk_size=options["chunk_size"],
        )
    return _blockwise(
        *args,
        **options,
        block_q=block_q,
        block_k=block_k,
        plan=plan,
        sinks=sinks,
    )


def prepare(
    q,
    k,
    v,
    q_positions,
    k_positions,
    q_segments,
    k_segments,
    *,
    causal,
    sliding_window,
    chunk_size,
    scale,
    softcap,
    bias,
):
    """The checks of a blockwise call (`blockwise_attention`, the ring's).

    Returns ``(args, options)``: the arrays ``(q, k, v, q_positions,
    k_positions, q_segments, k_segments, scale, softcap, bias)`` as
    `attend_blocks` takes them, and its static keywords but the block sizes.
    """
    q, k, v, batch = checks.check_qkv(q, k, v)
    unsigned = masks.unsigned_pair(q_positions, k_positions)
    q_positions, k_positions = masks.mask_positions(q_positions, k_positions)
    for name, pos, x in (
        ("q_positions", q_positions, q),
        ("k_positions", k_positions, k),
    ):
        if pos.ndim < 1 or pos.shape[-1] != x.shape[-3]:
            raise ValueError(
                f"{name} {pos.shape} must be [..., seq] with the length of its "
                f"inputs {x.shape} ([..., seq, heads, dim])."
            )
    q_segments, k_segments = masks.check_segments(
        q_segments, k_segments, q_positions, k_positions
    )
    leading = [q_positions, k_positions]
    leading += [] if q_segments is None else [q_segments, k_segments]
    try:
        batch = np.broadcast_shapes(batch, *(x.shape[:-1] for x in leading))
    except ValueError:
        shapes = ", ".join(str(x.shape) for x in leading)
        raise ValueError(
            f"the leading axes of the positions and segments ({shapes}) must "
            f"broadcast with the inputs' {batch} (q {q.shape}, k {k.shape})."
        ) from None
    causal = validation.check_bool("causal", causal)
    window = masks.check_window(sliding_window)
    chunk = masks.check_chunk_size(chunk_size, unsigned)
    chunk_size, chunk_offset = (None, 0) if chunk is None else chunk
    scale, softcap = checks.check_scale_softcap(scale, softcap, q.shape[-1])
    args = (
        q,
        k,
        v,
        q_positions,
        k_positions,
        q_segments,
        k_segments,
        scale,
        softcap,
        bias_pytree(bias),
    )
    options = dict(
        batch=tuple(batch),
        causal=causal,
        window=window,
        chunk_size=chunk_size,
        chunk_offset=chunk_offset,
    )
    return args, options


@functools.partial(
    jax.jit,
    static_argnames=(
        "batch",
        "causal",
        "window",
        "chunk_size",
        "chunk_offset",
        "block_q",
        "block_k",
        "plan",
    ),
)
def _blockwise(*args, sinks=None, **options):
    # The one compiled program of `blockwise_attention`: `attend_blocks`'
    # output, with the sinks, in the queries' dtype.
    out, lse = attend_blocks(*args, **options)
    return with_sinks(out, lse, sinks).astype(args[0].dtype)


def with_sinks(out, lse, sinks):
    """Attention ``out`` over some keys, with its rows' log-sum-exp ``lse``
    ``[..., q, heads]``, after one more logit per head without a value (the
    sink, ``sinks [..., heads]``) joins each denominator: ``out * exp(lse -
    logaddexp(lse, sink))``, that is ``out * sigmoid(lse - sink)``; ``out``
    unchanged for None."""
    if sinks is None:
        return out
    share = jax.nn.sigmoid(lse - jnp.asarray(sinks, lse.dtype)[..., None, :])
    return out * share[..., None]


def attend_blocks(
    q,
    k,
    v,
    q_positions,
    k_positions,
    q_segments,
    k_segments,
    scale,
    softcap,
    bias,
    *,
    batch,
    causal,
    window,
    chunk_size,
    chunk_offset,
    block_q,
    block_k,
    plan=None,
):
    """The blockwise computation, traced (inside a jit, or the ring's scan).

    Takes what `prepare` returns, with block sizes at most the lengths (both
    at least 1), and optionally `static_plan`'s ``plan``: each query block
    then scans only its band of key blocks. Returns ``(out, lse)``: ``out
    [*batch, q, heads, v_dim]`` in the compute dtype (zeros for a row with
    nothing to attend) and the log-sum-exp of each row's kept logits ``lse
    [*batch, q, heads]`` (``-inf`` for such a row), with which the ring
    combines key blocks.
    """
    n = math.prod(batch)
    q_len, heads, head_dim = q.shape[-3:]
    k_len, kv_heads, v_dim = v.shape[-3:]
    groups = heads // kv_heads
    work = validation.compute_dtype(q.dtype)
    q_blocks, k_blocks = -(-q_len // block_q), -(-k_len // block_k)
    q_pad, k_pad = q_blocks * block_q - q_len, k_blocks * block_k - k_len

    def flat(x, length_axes):
        # Broadcast to the batch, flatten it to one axis [n, ...].
        x = jnp.broadcast_to(x, (*batch, *x.shape[x.ndim - length_axes :]))
        return x.reshape(n, *x.shape[len(batch) :])

    def pad(x, amount):
        # Pads the length axis (axis 1) at its end; positions and segments
        # repeat their last value so that a block's range stays the same.
        widths = [(0, 0)] * x.ndim
        widths[1] = (0, amount)
        return jnp.pad(x, widths, mode="constant" if x.ndim > 2 else "edge")

    def blocks(x, count):
        # [n, count * size, ...] -> [count, n, size, ...]
        return jnp.moveaxis(x.reshape(n, count, -1, *x.shape[2:]), 1, 0)

    def chunks(positions):
        if chunk_size is None:
            return None
        return masks.chunk_ids(positions, chunk_size, chunk_offset)

    # Queries: [n, t, kv * g, d] -> [q_blocks, n, kv, block_q * g, d], rows
    # (t, g) as in `xla`: no key is copied.
    qf = pad(flat(q, 3), q_pad).reshape(n, q_blocks, block_q, kv_heads, groups, -1)
    qf = jnp.transpose(qf, (1, 0, 3, 2, 4, 5)).reshape(
        q_blocks, n, kv_heads, block_q * groups, head_dim
    )
    qp = pad(flat(q_positions, 1), q_pad)
    kp = pad(flat(k_positions, 1), k_pad)
    q_side = (qf, blocks(qp, q_blocks), _maybe(blocks, chunks(qp), q_blocks))
    k_side = (
        blocks(pad(flat(k, 3), k_pad), k_blocks),
        blocks(pad(flat(v, 3), k_pad), k_blocks),
        blocks(kp, k_blocks),
        _maybe(blocks, chunks(kp), k_blocks),
        (jnp.arange(k_blocks * block_k) < k_len).reshape(k_blocks, block_k),
    )
    if q_segments is not None:
        q_side += (blocks(pad(flat(q_segments, 1), q_pad), q_blocks),)
        k_side += (blocks(pad(flat(k_segments, 1), k_pad), k_blocks),)

    def step(carry, k_block, q_block):
        qb, qpb, qcb, *qsb = q_block
        kb, vb, kpb, kcb, valid, *ksb = k_block
        mask = masks.block_mask(
            qpb,
            kpb,
            qsb[0] if qsb else None,
            ksb[0] if ksb else None,
            causal=causal,
            window=window,
            q_chunks=qcb,
            k_chunks=kcb,
        )
        mask &= valid
        # [n, block_q, block_k] -> [n, 1, block_q * g, block_k], rows (t, g)
        mask = jnp.broadcast_to(
            mask[:, None, :, None, :], (n, 1, block_q, groups, block_k)
        ).reshape(n, 1, block_q * groups, block_k)
        logits = jnp.einsum(
            "nkrd,ntkd->nkrt", qb, kb, preferred_element_type=work
        ).astype(work)
        logits = logits * jnp.asarray(scale, work)
        if softcap is not None:
            logits = softcap * jnp.tanh(logits / softcap)
        if bias is not None:
            logits = logits + block_bias(qpb, kpb).astype(work)
        logits = jnp.where(mask, logits, -jnp.inf)
        running_max, total, acc = carry
        # The output does not depend on the maximum: no gradient through it.
        new_max = jax.lax.stop_gradient(jnp.maximum(running_max, logits.max(-1)))
        # A row with no key yet keeps a finite reference 0: exp(-inf) = 0.
        ref = jnp.where(new_max == -jnp.inf, 0.0, new_max)
        weights = jnp.exp(logits - ref[..., None])
        rescale = jnp.exp(running_max - ref)
        total = total * rescale + weights.sum(-1)
        acc = acc * rescale[..., None] + jnp.einsum(
            "nkrt,ntke->nkre", weights, vb.astype(work)
        )
        return new_max, total, acc

    def block_bias(qpb, kpb):
        # The callable on the block's positions, with the user's leading axes:
        # [n, block] -> [*batch, block]; its values [*batch, heads or 1,
        # block_q, block_k] -> [n, kv or 1, block_q * g, block_k], rows (t, g).
        values = bias(qpb.reshape(*batch, block_q), kpb.reshape(*batch, block_k))
        values = check_bias_values(values, batch, heads, block_q, block_k)
        values = values.reshape(n, -1, block_q, block_k)
        if values.shape[1] == 1:
            values = jnp.broadcast_to(
                values[:, :, :, None, :], (n, 1, block_q, groups, block_k)
            )
        else:
            values = values.reshape(n, kv_heads, groups, block_q, block_k)
            values = jnp.swapaxes(values, 2, 3)
        return values.reshape(n, -1, block_q * groups, block_k)

    def may_attend(q_block, k_block):
        # False only when no pair of the blocks' position ranges meets the
        # mask (segments are not looked at): that key block is skipped.
        q_lo, q_hi = q_block[1].min(), q_block[1].max()
        k_lo, k_hi = k_block[2].min(), k_block[2].max()
        meets = jnp.bool_(True)
        if causal:
            meets &= k_lo <= q_hi
        if window is not None:
            # The smallest |q - k| (for causal, q - k >= 0) of the two ranges.
            before = jnp.where(q_lo > k_hi, validation.abs_distance(q_lo, k_hi), 0)
            after = jnp.where(k_lo > q_hi, validation.abs_distance(k_lo, q_hi), 0)
            gap = before if causal else jnp.maximum(before, after)
            meets &= gap < jnp.uint32(window)
        if chunk_size is not None:
            meets &= (k_block[3].min() <= q_block[2].max()) & (
                q_block[2].min() <= k_block[3].max()
            )
        return meets

    @jax.checkpoint
    def query_block(q_block, start):
        # Made "like" the queries, so that inside a shard_map (the ring) the
        # carry varies over the mesh axes as the block step's output does.
        like = q_block[0][..., 0]  # [n, kv, block_q * g]
        zeros = jnp.zeros_like(like, work)
        init = (
            jnp.full_like(like, -jnp.inf, work),
            zeros,
            jnp.broadcast_to(zeros[..., None], (*zeros.shape, v_dim)),
        )

        @jax.checkpoint
        def scan_step(carry, k_block):
            if not (causal or window is not None or chunk_size is not None):
                return step(carry, k_block, q_block), None
            carry = jax.lax.cond(
                may_attend(q_block, k_block),
                lambda c: step(c, k_block, q_block),
                lambda c: c,
                carry,
            )
            return carry, None

        if plan is None:
            (high, total, acc), _ = jax.lax.scan(scan_step, init, k_side)
        else:
            # The static plan: this query block's band of key blocks only.
            def band_step(carry, j):
                k_block = jax.tree.map(
                    lambda x: jax.lax.dynamic_index_in_dim(x, start + j, 0, False),
                    k_side,
                )
                return scan_step(carry, k_block)

            (high, total, acc), _ = jax.lax.scan(
                band_step, init, jnp.arange(plan[0], dtype=jnp.int32)
            )
        empty = total == 0.0
        safe = jnp.where(empty, 1.0, total)
        out = jnp.where(empty[..., None], 0.0, acc / safe[..., None])
        return out, jnp.where(empty, -jnp.inf, high + jnp.log(safe))

    starts = jnp.zeros(q_blocks, jnp.int32) if plan is None else jnp.asarray(plan[1])
    out, lse = jax.lax.map(lambda xs: query_block(*xs), (q_side, starts))
    # [q_blocks, n, kv, block_q * g, ...] -> [..., q, heads, ...]
    out = out.reshape(q_blocks, n, kv_heads, block_q, groups, v_dim)
    out = jnp.transpose(out, (1, 0, 3, 2, 4, 5)).reshape(
        n, q_blocks * block_q, heads, v_dim
    )
    lse = lse.reshape(q_blocks, n, kv_heads, block_q, groups)
    lse = jnp.transpose(lse, (1, 0, 3, 2, 4)).reshape(n, q_blocks * block_q, heads)
    return (
        out[:, :q_len].reshape(*batch, q_len, heads, v_dim),
        lse[:, :q_len].reshape(*batch, q_len, heads),
    )


def static_plan(q_len, k_len, block_q, block_k, *, causal, window, chunk_size):
    """The key blocks each query block can reach, when the positions are the
    default ``arange`` (so known when tracing): ``(width, starts)``, each
    query block ``i`` scanning key blocks ``starts[i] .. starts[i] + width -
    1`` (the blocks of its band, padded at the edges to the common width),
    or None when some query block reaches every key block (full causal).
    The run-time range test still skips the band's padding."""
    if not (causal or window is not None or chunk_size is not None):
        return None
    k_blocks = -(-k_len // block_k)
    bands = []
    for first in range(0, q_len, block_q):
        q_lo, q_hi = first, min(first + block_q, q_len) - 1
        lo, hi = 0, k_len - 1
        if causal:
            hi = min(hi, q_hi)
        if window is not None:
            lo = max(lo, q_lo - (window - 1))
            if not causal:
                hi = min(hi, q_hi + window - 1)
        if chunk_size is not None:
            lo = max(lo, q_lo // chunk_size * chunk_size)
            hi = min(hi, (q_hi // chunk_size + 1) * chunk_size - 1)
        bands.append((lo // block_k, hi // block_k) if lo <= hi else (0, -1))
    width = max(1, *(hi - lo + 1 for lo, hi in bands))
    if width >= k_blocks:
        return None
    return width, tuple(min(lo, k_blocks - width) for lo, _ in bands)


def bias_pytree(bias):
    """``bias``, a callable or None, as a `jax.tree_util.Partial`: a pytree
    that a `jax.jit` takes as an argument (its arguments traced, its function
    static). Raises ``TypeError`` for anything else."""
    if bias is None or isinstance(bias, jax.tree_util.Partial):
        return bias
    if not callable(bias):
        raise TypeError(
            "bias must be a callable bias(q_positions, k_positions) -> [..., "
            f"heads or 1, q, k] here, got {type(bias).__name__}; an array bias "
            "needs the dense path (implementation='xla')."
        )
    return jax.tree_util.Partial(bias)


def check_bias_values(values, batch, heads, q_len, k_len):
    """A bias callable's values for ``q_len`` queries and ``k_len`` keys,
    broadcast to ``[*batch, heads or 1, q_len, k_len]``."""
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        raise TypeError(
            f"the bias callable must return floating values, got {values.dtype}."
        )
    rows = values.shape[-3] if values.ndim >= 3 else 1
    shape = (*batch, rows, q_len, k_len)
    try:
        fits = rows in (1, heads) and np.broadcast_shapes(values.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"the bias callable returned {values.shape} for {q_len} query and "
            f"{k_len} key positions; it must broadcast to [..., heads or 1, q, "
            f"k] {(*batch, heads, q_len, k_len)}."
        )
    return jnp.broadcast_to(values, shape)


def _maybe(f, x, *args):
    return None if x is None else f(x, *args)
