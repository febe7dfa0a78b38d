"""The decode cache's pure step, used by both twins' MultiHeadAttention.

What goes here: how a KV cache stores keys, values and each slot's position
and segment, written as pure functions of the cache's arrays (the linen and
NNX modules keep those arrays in their own variables). Two kinds:

- A full cache (`write_cache`) has one slot per position up to its
  ``max_length``. Nothing is clamped: a cache that overflows is an error, or
  NaN outputs under ``jit`` unchecked.
- A window cache (`write_window_cache`), for a sliding-window or a chunked
  layer, holds the last ``window`` (or ``chunk_size``) tokens as a ring
  buffer: token ``n`` (counting every token written) sits in slot
  ``n % slots``. Each slot keeps its position, so masks computed from
  positions stay exact, and any number of steps fits. A query of a chunked
  layer sees only keys of its own chunk at or before it (with a causal
  mask): the ``chunk_size - 1`` tokens before it hold them all.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from flax_posenc._src import validation


def cache_length(
    max_length: int, sliding_window: int | None, chunk_size: int | None = None
) -> int:
    """The slots of a layer's decode cache: ``min(window, chunk_size,
    max_length)`` for a sliding-window or chunked layer (a ring buffer), else
    ``max_length``."""
    slots = max_length
    for name, size in (("sliding_window", sliding_window), ("chunk_size", chunk_size)):
        if size is not None:
            slots = min(slots, validation.check_int(name, size, minimum=1))
    return slots


def write(
    cache: dict,
    k,
    v,
    positions,
    segments,
    *,
    sliding_window: int | None,
    chunk_size: int | None = None,
    checked: bool = False,
):
    """`write_window_cache` for a sliding-window or chunked layer, else
    `write_cache`."""
    if sliding_window is None and chunk_size is None:
        return write_cache(cache, k, v, positions, segments, checked=checked)
    return write_window_cache(cache, k, v, positions, segments)


def _check_batch(cached_key, k) -> None:
    if k.shape[:-3] != cached_key.shape[:-3]:
        raise ValueError(
            f"the decode cache was made for batch {tuple(cached_key.shape[:-3])} "
            f"(cached_key {tuple(cached_key.shape)}), but this call's input has "
            f"batch {tuple(k.shape[:-3])}: decode with the cache's batch, or "
            "make a new cache for this one."
        )


def _segments(positions, segments):
    """The new tokens' segments as stored: 1 (occupied) when none are given."""
    if segments is None:
        return jnp.ones(positions.shape, jnp.int32)
    return segments.astype(jnp.int32)


def _written(cache, write, k, v, positions, segments, end) -> dict:
    """The cache after ``write(old, new)`` of each array, and its new index."""
    return {
        "cached_key": write(cache["cached_key"], k),
        "cached_value": write(cache["cached_value"], v),
        "cached_positions": write(cache["cached_positions"], positions),
        "cached_segments": write(cache["cached_segments"], segments),
        "cache_index": end.astype(jnp.asarray(cache["cache_index"]).dtype),
    }


def write_window_cache(cache: dict, k, v, positions, segments):
    """Writes new keys into a window cache, a ring buffer (pure; linen and NNX).

    ``cache`` as in `write_cache`, with ``slots`` slots (the window, or less).
    The new tokens attend over the cache as it was plus themselves: the
    cache's keys are the ``slots`` tokens before them, all a sliding window
    of ``slots`` or more can reach, and the mask from positions excludes
    the rest (empty slots have segment 0). Then the last ``min(new, slots)``
    new tokens overwrite the oldest slots. Returns what `write_cache`
    returns; ``fits`` is always None: a ring never overflows.
    """
    cached_key = cache["cached_key"]
    _check_batch(cached_key, k)
    slots, new_tokens = cached_key.shape[-3], k.shape[-3]
    start = jnp.asarray(cache["cache_index"])
    end = start + new_tokens
    new_segments = _segments(positions, segments)
    axis = k.ndim - 3
    kept = min(new_tokens, slots)
    index = (end - kept + jnp.arange(kept, dtype=start.dtype)) % slots

    def write(old, new):
        tail = jax.lax.slice_in_dim(new, new_tokens - kept, new_tokens, axis=axis)
        moved = (
            jnp.moveaxis(old, axis, 0)
            .at[index]
            .set(jnp.moveaxis(tail.astype(old.dtype), axis, 0))
        )
        return jnp.moveaxis(moved, 0, axis)

    def attend_over(old, new):
        return jnp.concatenate([old, new.astype(old.dtype)], axis=axis)

    updated = _written(cache, write, k, v, positions, new_segments, end)
    return (
        updated,
        attend_over(cached_key, k),
        attend_over(cache["cached_value"], v),
        attend_over(cache["cached_positions"], positions),
        new_segments,
        attend_over(cache["cached_segments"], new_segments),
        None,
    )


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
    _check_batch(cached_key, k)
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
    new_segments = _segments(positions, segments)
    axis = k.ndim - 3

    def write(old, new):
        written = jax.lax.dynamic_update_slice_in_dim(
            old, new.astype(old.dtype), start, axis=axis
        )
        # A write that does not fit would be clamped onto the last slots.
        return written if fits is None else jnp.where(fits, written, old)

    new = _written(cache, write, k, v, positions, new_segments, end)
    return (
        new,
        new["cached_key"],
        new["cached_value"],
        new["cached_positions"],
        new_segments,
        new["cached_segments"],
        fits,
    )
