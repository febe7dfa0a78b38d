"""Context parallelism over a device mesh: the order that balances causal work.

What goes here: what a ring of devices needs to share one long sequence.
Each device holds one shard of the sequence; under a causal mask the shard
of the first tokens has far less to attend to than the last, so the tokens
are reordered before sharding (the "zig-zag" or dual-chunk order of Llama 3's
context parallelism, also MaxText's). Masks are computed from positions, so
permuting tokens, positions and segments together leaves every mask exact:
no mask code knows about the order.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from flax_posenc._src import validation
from flax_posenc._src.attention import blockwise, checks, masks


def load_balanced_order(length: int, num_shards: int) -> jax.Array:
    """The permutation of ``arange(length)`` that balances causal attention over shards.

    The sequence is cut into ``2 * num_shards`` equal chunks; shard ``i`` (of
    the result split into ``num_shards`` equal parts) takes chunk ``i`` and
    chunk ``2 * num_shards - 1 - i``, so each shard holds one early and one
    late chunk and every shard's queries see the same number of keys under a
    causal mask. Apply it to the tokens, their positions and their segments
    alike (``x[..., order, :]``, ``positions[..., order]``) before sharding the
    sequence axis; ``jnp.argsort(order)`` restores the original order.

    Args:
      length: the sequence length (static), a multiple of ``2 * num_shards``.
      num_shards: the number of devices along the sequence (static, >= 1).

    Returns:
      int32 ``[length]``: a permutation of ``arange(length)``.

    Raises:
      ValueError: ``length`` not a positive multiple of ``2 * num_shards``,
        ``num_shards < 1``.
      TypeError: sizes not ints.

    Examples:
      >>> import flax_posenc as fp
      >>> fp.load_balanced_order(8, 2).tolist()
      [0, 1, 6, 7, 2, 3, 4, 5]

    References:
      Llama Team, "The Llama 3 Herd of Models", 2024 (section 3.3.2, context
      parallelism). https://arxiv.org/abs/2407.21783
    """
    num_shards = validation.check_int("num_shards", num_shards, minimum=1)
    length = validation.check_int("length", length, minimum=1)
    chunks = 2 * num_shards
    if length % chunks:
        raise ValueError(
            f"length {length} must be a multiple of 2 * num_shards = {chunks}: "
            "each shard takes two equal chunks of the sequence."
        )
    pieces = np.arange(length).reshape(chunks, length // chunks)
    firsts = np.arange(num_shards)
    order = np.stack([pieces[firsts], pieces[chunks - 1 - firsts]], axis=1)
    return jnp.asarray(order.reshape(length), jnp.int32)


def ring_attention(
    q: jax.typing.ArrayLike,
    k: jax.typing.ArrayLike,
    v: jax.typing.ArrayLike,
    *,
    axis_name: str,
    q_positions: jax.typing.ArrayLike,
    k_positions: jax.typing.ArrayLike,
    q_segments: jax.typing.ArrayLike | None = None,
    k_segments: jax.typing.ArrayLike | None = None,
    causal: bool = False,
    sliding_window: int | None = None,
    scale: float | None = None,
    softcap: float | None = None,
    bias: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> jax.Array:
    r"""Attention over a sequence sharded along a mesh axis (a ring of devices).

    Call it on the local shards inside ``jax.shard_map`` over ``axis_name``:
    each device holds a block of queries and a block of keys and values with
    their positions and segments. The key blocks travel once around the ring
    (``lax.ppermute``), and each device folds every visiting block into an
    online softmax in float32 (running maximum, sum and weighted values), so
    it never holds more than two key blocks and the result is
    $\mathrm{softmax}(q k^\top \cdot \mathrm{scale} + \text{mask})\, v$
    over the whole sequence, as `dot_product_attention` computes it on one
    device. The mask of each pair of blocks is computed from the blocks'
    positions and segments (`attention_mask`), so it stays exact for any
    order of the tokens: with `load_balanced_order` applied to tokens,
    positions and segments before sharding, causal work is balanced and no
    mask changes. Grouped key/value heads are read without copying keys;
    soft-capping is ``softcap * tanh(logits / softcap)`` before the mask. A
    query with no key to attend returns zeros with finite gradients.
    Gradients flow through the ring (``ppermute`` is differentiable).

    A bias is a function of positions, never a ``[q, k]`` array: each device
    calls ``bias(q_positions, k_positions)`` on its queries' positions and the
    visiting block's, and adds the result (broadcastable to ``[..., heads or
    1, q, k]``) to the logits after soft-capping, as `dot_product_attention`
    adds a bias; a ``-inf`` bias excludes a key. Learned parameters it reads
    (the T5 table of `flax_posenc.linen.RelativePositionBias.bias_function`)
    get their gradients: build the function inside the ``shard_map`` from
    the table passed in replicated.

    Args:
      q: local queries ``[..., q, heads, head_dim]``.
      k: local keys ``[..., k, kv_heads, head_dim]``; ``kv_heads`` divides
        ``heads``.
      v: local values ``[..., k, kv_heads, v_dim]``.
      axis_name: the mesh axis the sequence is sharded over.
      q_positions: integer ``[..., q]``: the local queries' positions.
      k_positions: integer ``[..., k]``: the local keys' positions.
      q_segments: integer ``[..., q]`` or None, as in `attention_mask`.
      k_segments: integer ``[..., k]``; given exactly when ``q_segments`` is.
      causal: keys at positions after the query's are excluded.
      sliding_window: keys ``sliding_window`` or more positions before the
        query are excluded.
      scale: multiplies ``q k^T``; default ``head_dim ** -0.5``.
      softcap: the soft-capping bound, or None.
      bias: ``bias(q_positions, k_positions) -> [..., heads or 1, q, k]``,
        called on the local queries' and each visiting block's positions, or
        None.

    Returns:
      The local outputs ``[..., q, heads, v_dim]`` in ``q``'s dtype.

    Raises:
      ValueError: shapes that do not fit, heads that do not group, segments
        given on one side only, and as `attention_mask`.
      TypeError: non-floating inputs, non-integer positions.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> mesh = jax.make_mesh(
      ...     (jax.device_count(),), ("context",),
      ...     axis_types=(jax.sharding.AxisType.Auto,))
      >>> q = jnp.ones((1, 4, 2, 8))  # [batch, seq, heads, head_dim]
      >>> p = jnp.arange(4)[None]
      >>> spec = jax.sharding.PartitionSpec(None, "context")
      >>> ring = jax.jit(jax.shard_map(
      ...     lambda q, p: fp.ring_attention(
      ...         q, q, q, axis_name="context", q_positions=p, k_positions=p,
      ...         causal=True),
      ...     mesh=mesh, in_specs=(spec, spec), out_specs=spec))
      >>> ring(q, p).shape
      (1, 4, 2, 8)

    References:
      Liu et al., "Ring Attention with Blockwise Transformers for
      Near-Infinite Context", 2023. https://arxiv.org/abs/2310.01889
    """
    q, k, v, _ = checks.check_qkv(q, k, v)
    if (q_segments is None) != (k_segments is None):
        raise ValueError("pass both q_segments and k_segments, or neither.")
    q_positions = validation.position_array("q_positions", q_positions)
    k_positions = validation.position_array("k_positions", k_positions)
    if q_segments is not None:
        q_segments = validation.integer_array("q_segments", q_segments)
        k_segments = validation.integer_array("k_segments", k_segments)
    causal = validation.check_bool("causal", causal)
    sliding_window = masks.check_window(sliding_window)
    scale, softcap = checks.check_scale_softcap(scale, softcap, q.shape[-1])
    bias = blockwise.bias_pytree(bias)
    return _ring(
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
        axis_name=axis_name,
        causal=causal,
        sliding_window=sliding_window,
    )


def _ring(
    q,
    k,
    v,
    q_pos,
    k_pos,
    q_seg,
    k_seg,
    scale,
    softcap,
    bias,
    *,
    axis_name,
    causal,
    sliding_window,
):
    devices = jax.lax.axis_size(axis_name)
    shift = [(i, (i + 1) % devices) for i in range(devices)]
    groups = q.shape[-2] // k.shape[-2]
    # [..., q, heads, d] -> [..., q, kv_heads, groups, d]: no key is copied.
    grouped = q.reshape(*q.shape[:-2], k.shape[-2], groups, q.shape[-1])
    grouped = grouped.astype(jnp.float32)
    logits_shape = (*grouped.shape[:-4], k.shape[-2], groups, q.shape[-3])
    state = (
        jnp.full(logits_shape, -jnp.inf, jnp.float32),  # running maximum
        jnp.zeros(logits_shape, jnp.float32),  # running sum
        jnp.zeros((*logits_shape, v.shape[-1]), jnp.float32),  # weighted values
    )

    def fold(state, block):
        high, total, acc = state
        k, v, k_pos, k_seg = block
        logits = jnp.einsum("...qkgd,...tkd->...kgqt", grouped, k.astype(jnp.float32))
        logits = logits * scale
        if softcap is not None:
            logits = softcap * jnp.tanh(logits / softcap)
        mask = masks.attention_mask(
            q_pos,
            k_pos,
            causal=causal,
            sliding_window=sliding_window,
            q_segments=q_seg,
            k_segments=k_seg,
        )  # [..., 1, q, t]
        if bias is not None:
            logits = logits + grouped_bias(k_pos)
        logits = jnp.where(mask[..., None, :, :], logits, -jnp.inf)
        # The running maximum only shifts the exponents, and the shift cancels
        # out of the result: a constant for the gradient.
        new_high = jax.lax.stop_gradient(jnp.maximum(high, logits.max(-1)))
        shift_by = jnp.where(jnp.isfinite(new_high), new_high, 0.0)
        weights = jnp.exp(logits - shift_by[..., None])
        keep = jnp.exp(jnp.where(jnp.isfinite(high), high, 0.0) - shift_by)
        keep = jnp.where(jnp.isfinite(high), keep, 0.0)
        total = total * keep + weights.sum(-1)
        acc = acc * keep[..., None] + jnp.einsum(
            "...kgqt,...tkd->...kgqd", weights, v.astype(jnp.float32)
        )
        return (new_high, total, acc)

    def grouped_bias(k_pos):
        # [..., heads or 1, q, t] -> [..., kv or 1, groups or 1, q, t]
        values = bias(q_pos, k_pos)
        batch = np.broadcast_shapes(
            q.shape[:-3], k.shape[:-3], q_pos.shape[:-1], k_pos.shape[:-1]
        )
        values = blockwise.check_bias_values(
            values, batch, q.shape[-2], q.shape[-3], k_pos.shape[-1]
        )
        rows = (1, 1) if values.shape[-3] == 1 else (k.shape[-2], groups)
        values = values.reshape(*values.shape[:-3], *rows, *values.shape[-2:])
        return values.astype(jnp.float32)

    def permute(block):
        return jax.tree.map(lambda x: jax.lax.ppermute(x, axis_name, shift), block)

    def step(carry, _):
        state, block = carry
        block = permute(block)  # the next device's keys arrive
        return (fold(state, block), block), None

    # The local block first, outside the loop: the loop's carry is then
    # per-device data from the start, as shard_map's scan requires.
    block = (k, v, k_pos, k_seg)
    state = fold(state, block)
    (state, _), _ = jax.lax.scan(step, (state, block), None, length=devices - 1)
    _, total, acc = state
    out = acc / jnp.where(total > 0, total, 1.0)[..., None]  # empty rows: zeros
    # [..., kv, g, q, e] -> [..., q, kv * g, e]
    out = jnp.moveaxis(out, -2, -4)
    return out.reshape(*out.shape[:-3], q.shape[-2], v.shape[-1]).astype(q.dtype)
