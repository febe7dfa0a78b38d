"""The decode cache's pure step, used by both twins' MultiHeadAttention.

What goes here: how a KV cache stores keys, values and each slot's position
and segment, written as pure functions of the cache's arrays (the linen and
NNX modules keep those arrays in their own variables). Nothing is clamped: a
cache that overflows is an error, or NaN outputs under ``jit`` unchecked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify


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
