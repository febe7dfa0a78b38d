"""The linen attention modules' decode cache step (private)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from flax_posenc._src import attention, twins


def update_cache(module: nn.Module, names, k, v, positions, segments):
    """Writes ``k`` and ``v`` at the next slots of ``module``'s ``cache``
    collection, variables ``names`` (`twins.CACHE_NAMES` or
    `twins.LATENT_CACHE_NAMES`), and returns what to attend over: ``(k, v,
    k_positions, q_segments, k_segments, fits)``.

    ``init(..., decode=True)`` on ``[batch, max_length, features]`` creates
    the cache empty (a window's or a chunk's slots) and the call attends over
    its own tokens.
    """
    key, value, cached_positions, cached_segments, index = names
    initialized = module.has_variable("cache", key)
    if not initialized and not module.is_initializing():
        raise ValueError(
            "decode=True needs a cache: create it with init(..., decode=True) "
            "on a [batch, max_length, features] input, and pass it in apply "
            "with mutable=['cache']."
        )
    slots = attention.cache.cache_length(
        k.shape[-3], module.sliding_window, module.chunk_size
    )
    seq_shape = (*k.shape[:-3], slots)
    variables = {
        key: module.variable(
            "cache", key, jnp.zeros, (*seq_shape, *k.shape[-2:]), k.dtype
        ),
        value: module.variable(
            "cache", value, jnp.zeros, (*seq_shape, *v.shape[-2:]), v.dtype
        ),
        cached_positions: module.variable(
            "cache", cached_positions, jnp.zeros, seq_shape, jnp.int32
        ),
        cached_segments: module.variable(
            "cache", cached_segments, jnp.zeros, seq_shape, jnp.int32
        ),
        index: module.variable("cache", index, lambda: jnp.array(0, jnp.int32)),
    }
    if not initialized:
        return k, v, positions, segments, segments, None
    cache = {name: variable.value for name, variable in variables.items()}
    new, attend_over = twins.cache_step(module, cache, names, k, v, positions, segments)
    for name, variable in variables.items():
        variable.value = new[name]
    return attend_over
