"""Masks from positions and segments: `attention_mask` and its jitted kernel.

What goes here: which keys a query may attend to, computed from positions and
segment ids, never from array indices. A blockwise or ring implementation
computes each block's mask from that block's positions with the same rules.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flax_posenc._src import validation


def attention_mask(
    q_positions: ArrayLike,
    k_positions: ArrayLike,
    *,
    causal: bool = False,
    sliding_window: int | None = None,
    q_segments: ArrayLike | None = None,
    k_segments: ArrayLike | None = None,
    chunk_size: int | None = None,
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
    - ``chunk_size=c`` (chunked attention, Llama 4's ``attention_chunk_size``):
      $\lfloor q_i / c \rfloor = \lfloor k_j / c \rfloor$, a query sees the
      keys of its own chunk only (floor division: exact for negative and
      uint32 positions too).

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
      chunk_size: the chunk ``c`` (``1 <= c < 2**31``); None for no chunks.

    Returns:
      bool ``[..., 1, q, k]``: broadcastable to ``[..., heads, q, k]``.

    Raises:
      ValueError: a window or chunk size below 1, a chunk size of 2**31 or
        more, segments without positions' shapes,
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
    chunk = check_chunk_size(chunk_size, unsigned_pair(q_positions, k_positions))
    q_positions, k_positions = mask_positions(q_positions, k_positions)
    for name, value in (("q_positions", q_positions), ("k_positions", k_positions)):
        if value.ndim < 1:
            raise ValueError(f"{name} must be [..., seq], got a scalar.")
    validation.check_leading_axes(
        "q_positions", q_positions, "k_positions", k_positions
    )
    causal = validation.check_bool("causal", causal)
    window = check_window(sliding_window)
    q_segments, k_segments = check_segments(
        q_segments, k_segments, q_positions, k_positions
    )
    return _mask(
        q_positions,
        k_positions,
        q_segments,
        k_segments,
        causal=causal,
        window=window,
        chunk=chunk,
    )


def check_chunk_size(chunk_size, unsigned: bool) -> tuple[int, int] | None:
    """``(chunk_size, offset)`` for `chunk_ids`, or None for no chunks.

    ``unsigned``: the positions are a uint32 pair, which `mask_positions`
    shifts by ``-2**31``; the offset ``2**31 % chunk_size`` undoes it.
    """
    if chunk_size is None:
        return None
    chunk_size = validation.check_int("chunk_size", chunk_size, minimum=1)
    if chunk_size >= 2**31:
        raise ValueError(f"chunk_size must be < 2**31, got {chunk_size}.")
    return chunk_size, 2**31 % chunk_size if unsigned else 0


def check_window(sliding_window):
    """The window as an int >= 1, or None for none (also for one of 2**32 or more).

    Every distance of int32 positions is below 2**32, so such a window
    excludes nothing.
    """
    if sliding_window is None:
        return None
    window = validation.check_int("sliding_window", sliding_window, minimum=1)
    return None if window >= 2**32 else window


def check_segments(q_segments, k_segments, q_positions, k_positions):
    """Integer segment ids with their positions' lengths; ``k_segments`` None
    takes ``q_segments``. Returns ``(None, None)`` for no segments."""
    if q_segments is None and k_segments is not None:
        raise ValueError("k_segments needs q_segments (the queries' segment ids).")
    if q_segments is None:
        return None, None
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
                f"{name} {seg.shape} must have the length of its positions {pos.shape}."
            )
    return q_segments, k_segments


def mask_positions(q_positions, k_positions):
    """int32 positions with the order and distances of the given ones.

    uint32 pairs are shifted by ``-2**31`` (the sign bit flipped), which keeps
    every uint32 value's order and distances in int32: a traced uint32
    position at or above ``2**31`` would wrap in a plain conversion.
    """
    q, k = _arrays(q_positions, k_positions)
    if q.dtype == k.dtype == np.uint32:
        return _flip_sign(jnp.asarray(q)), _flip_sign(jnp.asarray(k))
    return (
        validation.position_array("q_positions", q),
        validation.position_array("k_positions", k),
    )


def unsigned_pair(q_positions, k_positions) -> bool:
    """Whether `mask_positions` shifts these positions from uint32 by ``-2**31``."""
    q, k = _arrays(q_positions, k_positions)
    return q.dtype == k.dtype == np.uint32


def _arrays(*values):
    return (
        x if isinstance(x, (jax.Array, np.ndarray)) else np.asarray(x) for x in values
    )


def _flip_sign(x):
    return jax.lax.bitcast_convert_type(x ^ jnp.uint32(2**31), jnp.int32)


@functools.partial(jax.jit, static_argnames=("causal", "window", "chunk"))
def _mask(q_positions, k_positions, q_segments, k_segments, *, causal, window, chunk):
    # One compiled program per call signature, not one per operation when
    # called eagerly.
    q_chunks = k_chunks = None
    if chunk is not None:
        q_chunks = chunk_ids(q_positions, *chunk)
        k_chunks = chunk_ids(k_positions, *chunk)
    mask = block_mask(
        q_positions,
        k_positions,
        q_segments,
        k_segments,
        causal=causal,
        window=window,
        q_chunks=q_chunks,
        k_chunks=k_chunks,
    )
    return mask[..., None, :, :]


def block_mask(
    q_positions,
    k_positions,
    q_segments,
    k_segments,
    *,
    causal,
    window,
    q_chunks=None,
    k_chunks=None,
):
    """bool ``[..., q, k]`` of given position blocks: the rule `attention_mask` states.

    Traced code, for a whole sequence or one block of it: int32 positions (as
    `mask_positions` returns them), segment ids or None, and chunk ids (as
    `chunk_ids` returns them; equal ids attend) or None.
    """
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
    if q_chunks is not None:
        mask &= q_chunks[..., :, None] == k_chunks[..., None, :]
    return mask


def chunk_ids(positions, chunk_size, offset=0):
    """``(positions + offset) // chunk_size`` of int32 positions, without overflow.

    ``offset`` (static, in ``[0, chunk_size)``) is ``2**31 % chunk_size`` for
    positions that `mask_positions` shifted from uint32 by ``-2**31``, 0
    otherwise: equal ids are equal chunks of the given positions either way.
    """
    ids = positions // chunk_size
    if offset:
        ids = ids + (positions % chunk_size >= chunk_size - offset)
    return ids
