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
from flax_posenc._src.attention import blockwise, checks


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
    chunk_size: int | None = None,
    scale: float | None = None,
    softcap: float | None = None,
    bias: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    block_size: int = 512,
    sinks: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Attention over a sequence sharded along a mesh axis (a ring of devices).

    Call it on the local shards inside ``jax.shard_map`` over ``axis_name``:
    each device holds a block of queries and a block of keys and values with
    their positions and segments. The key blocks travel once around the ring
    (``lax.ppermute``). Each device attends to every visiting block as the
    blockwise path of `dot_product_attention` does on one device (blocks of
    ``block_size``, an online softmax in float32, key blocks the mask leaves
    empty skipped, gradients recomputed per block), and merges the visiting
    blocks' results by their rows' log-sum-exp. It never holds more than two
    key blocks, nor any ``[q, k]`` array, and the result is
    $\mathrm{softmax}(q k^\top \cdot \mathrm{scale} + \text{mask})\, v$
    over the whole sequence. The mask of each pair of blocks is computed from
    the blocks' positions and segments (as `attention_mask` with
    ``chunk_size`` computes it), so it stays exact for any order of the
    tokens: with `load_balanced_order` applied to tokens,
    positions and segments before sharding, causal work is balanced and no
    mask changes. Grouped key/value heads are read without copying keys;
    soft-capping is ``softcap * tanh(logits / softcap)`` before the mask. A
    query with no key to attend returns zeros with finite gradients.
    The backward pass is a second trip around the ring (a ``custom_vjp``):
    the key blocks travel again with their keys' and values' gradients, and
    each device recomputes its queries' attention to the visiting block and
    pulls that block's share of the output gradient back through it, so the
    backward too holds O(local length) per device, whatever the number of
    devices.

    A bias is a function of positions, never a ``[q, k]`` array: each device
    calls ``bias(q_positions, k_positions)`` on its queries' positions and the
    visiting block's, and adds the result (broadcastable to ``[..., heads or
    1, q, k]``) to the logits after soft-capping, as `dot_product_attention`
    adds a bias; a ``-inf`` bias excludes a key. Learned parameters it reads
    (the T5 table of `flax_posenc.linen.RelativePositionBias.bias_function`)
    get their gradients when the function holds them as the arguments of a
    ``jax.tree_util.Partial`` (``Partial(f, table)`` is called as ``f(table,
    q_positions, k_positions)``), as ``bias_function()`` does; build it
    inside the ``shard_map`` from the table passed in replicated. A bias
    that closes over a traced array is a ``ValueError``: the backward pass
    is traced apart from the function that built it.

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
      chunk_size: chunked attention (Llama 4): a query attends keys of its
        own chunk of positions only; or None.
      scale: multiplies ``q k^T``; default ``head_dim ** -0.5``.
      softcap: the soft-capping bound, or None.
      bias: ``bias(q_positions, k_positions) -> [..., heads or 1, q, k]``,
        called on the local queries' and each visiting block's positions, or
        None.
      block_size: the query and key blocks within a shard (>= 1).
      sinks: floating ``[heads]`` attention sinks (gpt-oss), as
        `dot_product_attention` takes them, applied once after the whole
        ring; or None.

    Returns:
      The local outputs ``[..., q, heads, v_dim]`` in ``q``'s dtype.

    Raises:
      ValueError: shapes that do not fit, heads that do not group, segments
        given on one side only, positions not given, a bias that closes
        over traced arrays, and as `attention_mask`.
      TypeError: non-floating inputs, non-integer positions, a bias that is
        not callable.

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
    if (q_segments is None) != (k_segments is None):
        raise ValueError("pass both q_segments and k_segments, or neither.")
    if q_positions is None or k_positions is None:
        raise ValueError(
            "ring_attention needs q_positions and k_positions: the local "
            "shard's positions in the whole sequence."
        )
    args, options = blockwise.prepare(
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
    block_size = validation.check_int("block_size", block_size, minimum=1)
    q, k, v = args[:3]
    sinks = checks.check_sinks(sinks, q.shape[-2], options["batch"])
    if q.shape[-3] == 0 or k.shape[-3] == 0:
        shape = (*options["batch"], q.shape[-3], q.shape[-2], v.shape[-1])
        return jnp.zeros(shape, q.dtype)
    out, lse = _ring(
        *args,
        axis_name=axis_name,
        block_q=min(block_size, q.shape[-3]),
        block_k=min(block_size, k.shape[-3]),
        **options,
    )
    return blockwise.with_sinks(out, lse, sinks).astype(q.dtype)


def _ring(
    q, k, v, q_pos, k_pos, q_seg, k_seg, scale, softcap, bias, *, axis_name, **options
):
    # The bias travels as an argument (a `jax.tree_util.Partial`, whose
    # arrays are its leaves), so that the custom VJP below returns the
    # gradients of the arrays it holds.
    _check_no_closed_over_arrays(bias, q_pos, k_pos, options)
    floats = (q, k, v, scale, softcap, bias)

    def attend(floats, q_pos, q_seg, k_pos, k_seg):
        # The local queries' attention to one key block: (out, lse).
        q, k, v, *rest = floats
        return blockwise.attend_blocks(
            q, k, v, q_pos, k_pos, q_seg, k_seg, *rest, **options
        )

    ring = _RingPass(axis_name)

    # Every array is an argument: the backward is traced apart from the
    # enclosing function, and may not close over its tracers.
    @jax.custom_vjp
    def run(floats, q_pos, q_seg, k_pos, k_seg):
        # (out, lse) over the whole ring, in the compute dtype.
        return forward(floats, q_pos, q_seg, k_pos, k_seg)[0]

    def forward(floats, q_pos, q_seg, k_pos, k_seg):
        q, k, v = floats[:3]

        def fold(state, block):
            k, v, k_pos, k_seg = block
            new = attend((q, k, v, *floats[3:]), q_pos, q_seg, k_pos, k_seg)
            return merge(state, new), block

        local = attend(floats, q_pos, q_seg, k_pos, k_seg)
        (out, lse), _ = ring.visit(fold, local, (k, v, k_pos, k_seg))
        return (out, lse), (floats, q_pos, q_seg, k_pos, k_seg, out, lse)

    def backward(residuals, cotangents):
        # Ring Attention's backward: the key blocks travel around the ring
        # again, with the gradients of their keys and values; each device
        # recomputes its queries' attention to the visiting block and pulls
        # the block's share of the output's gradient back through it (the
        # block's own blockwise backward). Memory stays O(local length).
        floats, q_pos, q_seg, k_pos, k_seg, out, lse = residuals
        # A replicated argument (the bias table, a traced scale) is made
        # per-device here, so that the sum of its gradient over the devices
        # is taken once below, not inside a block's `lax.cond`, which some
        # devices skip.
        spread = jax.tree.map(ring.per_device, floats)
        q, k, v = spread[:3]
        d_out, d_lse = (d.astype(out.dtype) for d in cotangents)

        def pull(grads, block):
            k, v, k_pos, k_seg, d_k, d_v = block
            (block_out, block_lse), vjp = jax.vjp(
                lambda f: attend(f, q_pos, q_seg, k_pos, k_seg), (q, k, v, *spread[3:])
            )
            # out = sum_j exp(lse_j - lse) out_j and lse = logsumexp_j lse_j:
            # the cotangents of block j's out_j and lse_j.
            share = jnp.where(lse == -jnp.inf, 0.0, jnp.exp(block_lse - lse))
            d_block_out = share[..., None] * d_out
            d_block_lse = share * (jnp.sum(d_out * (block_out - out), axis=-1) + d_lse)
            d_block_lse = jnp.where(share > 0, d_block_lse, 0.0)
            (d_q, d_kj, d_vj, *d_rest) = vjp((d_block_out, d_block_lse))[0]
            grads = jax.tree.map(jnp.add, grads, (d_q, *d_rest))
            return grads, (k, v, k_pos, k_seg, d_k + d_kj, d_v + d_vj)

        # Gradients are summed in at least float32, and cast at the end.
        zeros = jax.tree.map(_zeros_to_sum, (q, *spread[3:]))
        block = (k, v, k_pos, k_seg, _zeros_to_sum(k), _zeros_to_sum(v))
        grads, block = ring.visit(pull, *pull(zeros, block))
        # Each key block's gradient is one device short of home.
        d_k, d_v = ring.permute(block[4:])
        d_q, *d_rest = grads

        def finish(d, x):
            # A replicated argument's gradient: the sum of every device's.
            d = d if ring.varies(x) else jax.lax.psum(d, axis_name)
            return d.astype(jnp.result_type(x))

        d_floats = jax.tree.map(finish, (d_q, d_k, d_v, *d_rest), floats)
        return d_floats, None, None, None, None

    run.defvjp(forward, backward)
    return run(floats, q_pos, q_seg, k_pos, k_seg)


def _zeros_to_sum(x):
    return jnp.zeros(jnp.shape(x), validation.compute_dtype(jnp.result_type(x)))


def _check_no_closed_over_arrays(bias, q_pos, k_pos, options):
    # The ring's backward pass is traced apart from the function that built
    # the bias: a traced array it closes over could not get its gradient.
    if bias is None:
        return
    batch = options["batch"]
    examples = (
        jnp.zeros((*batch, options["block_q"]), q_pos.dtype),
        jnp.zeros((*batch, options["block_k"]), k_pos.dtype),
    )
    _, closed_over = jax.closure_convert(lambda b, *p: b(*p), bias, *examples)
    if closed_over:
        shapes = ", ".join(str(jnp.shape(x)) for x in closed_over)
        raise ValueError(
            f"ring_attention's bias closes over traced arrays ({shapes}); "
            "pass them as arguments of a jax.tree_util.Partial instead "
            "(Partial(f, table) is called as f(table, q_positions, "
            "k_positions)), as the bias modules' bias_function() does: the "
            "ring's backward pass is traced apart from the function that "
            "built the bias."
        )


def merge(state, new):
    """Two partial attentions of the same queries, ``(out, lse)`` each, over
    disjoint key sets, as one: each output weighted by its share of the
    rows' total, ``exp(lse_i - lse)``."""
    (out, lse), (new_out, new_lse) = state, new
    high = jax.lax.stop_gradient(jnp.maximum(lse, new_lse))
    high = jnp.where(high == -jnp.inf, 0.0, high)
    old_share, new_share = jnp.exp(lse - high), jnp.exp(new_lse - high)
    total = old_share + new_share
    safe = jnp.where(total > 0, total, 1.0)  # nothing kept yet: zeros
    out = (out * old_share[..., None] + new_out * new_share[..., None]) / safe[
        ..., None
    ]
    lse = jnp.where(total > 0, high + jnp.log(safe), -jnp.inf)
    return out, lse


class _RingPass:
    """The blocks' trip around the mesh axis: ``lax.ppermute`` to the next
    device, ``devices - 1`` times, with a fold at each stop."""

    def __init__(self, axis_name):
        self.axis_name = axis_name
        devices = jax.lax.axis_size(axis_name)
        self.devices = devices
        self.shift = [(i, (i + 1) % devices) for i in range(devices)]

    def permute(self, block):
        return jax.tree.map(
            lambda x: jax.lax.ppermute(x, self.axis_name, self.shift), block
        )

    def visit(self, fold, state, block):
        """``fold(state, block) -> (state, block)`` at each other device's
        block as it arrives (``state`` already holds the local ``block``).
        Returns ``(state, block)``, with the last block visited."""

        def step(carry, _):
            state, block = carry
            return fold(state, self.permute(block)), None

        (state, block), _ = jax.lax.scan(
            step, (state, block), None, length=self.devices - 1
        )
        return state, block

    def per_device(self, x):
        """``x`` as per-device data along the axis (``lax.pcast``)."""
        if self.varies(x):
            return x
        if hasattr(jax.lax, "pcast"):
            return jax.lax.pcast(x, self.axis_name, to="varying")
        return jax.lax.pvary(x, self.axis_name)

    def varies(self, x):
        """Whether ``x`` is per-device data along the axis (not replicated)."""
        aval = jax.typeof(x)
        manual = getattr(aval, "manual_axis_type", None)
        axes = getattr(manual, "varying", None)
        if axes is None:
            axes = getattr(aval, "vma", frozenset())
        return self.axis_name in axes
