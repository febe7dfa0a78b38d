"""Parameter creation and dropout shared by the NNX twins (private)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from flax_posenc._src import twins


def param(
    init: Callable,
    rngs: nnx.Rngs,
    shape: Sequence[int],
    dtype: DTypeLike,
    axes: tuple[str | None, ...],
) -> nnx.Param:
    """``nnx.Param(init(key, shape, dtype))`` carrying its logical axis names.

    The names are the linen twin's (``nn.with_logical_partitioning``). They are
    metadata only (``eager_sharding=False``): the module builds with no mesh,
    and ``nnx.get_partition_spec`` plus logical axis rules shard it under one.
    """
    return nnx.Param(
        init(rngs.params(), tuple(shape), dtype),
        out_sharding=tuple(axes),
        eager_sharding=False,
    )


def dropout_stream(rngs: nnx.Rngs | None) -> nnx.RngStream:
    """The ``dropout`` stream of ``rngs`` (forked), or a ValueError naming it.

    Without a ``dropout`` stream, ``nnx.Rngs`` falls back on ``default``
    (``nnx.Rngs(0)``); ``nnx.Rngs(params=0)`` has neither.
    """
    if rngs is None:
        raise ValueError(
            "dropout_rate > 0 needs rngs with a 'dropout' stream, e.g. "
            "rngs=nnx.Rngs(params=0, dropout=1) or nnx.Rngs(0); got rngs=None."
        )
    if "dropout" not in rngs and "default" not in rngs:
        raise ValueError(
            "dropout_rate > 0 needs a 'dropout' stream in rngs, e.g. "
            "nnx.Rngs(params=0, dropout=1), or nnx.Rngs(0) for one default stream; "
            f"this one has {sorted(rngs)}."
        )
    return rngs["dropout"].fork()


def dropout_layer(
    rate: float, deterministic: bool | None, rngs: nnx.Rngs | None
) -> nnx.Dropout | None:
    """A twin's ``nnx.Dropout(rate)`` with the module's ``deterministic`` as
    its field, drawing from `dropout_stream`; None when ``rate`` is 0."""
    if rate == 0.0:
        return None
    return nnx.Dropout(rate, deterministic=deterministic, rngs=dropout_stream(rngs))


def dropout(layer: nnx.Dropout | None, x: jax.Array, call: bool | None) -> jax.Array:
    """``x`` through a twin's ``layer`` (None: no dropout, ``x`` as it is).

    ``deterministic`` by `twins.dropout_deterministic`: ``call`` (the call's)
    wins over the layer's field, which the module's ``deterministic`` set
    and ``model.eval()`` / ``model.train()`` change.
    """
    if layer is None:
        return x
    return layer(
        x, deterministic=twins.dropout_deterministic(layer.deterministic, call)
    )


def init_cache(module, names, input_shape, dtype, key_tail, value_tail) -> None:
    """An NNX attention module's empty decode cache as ``nnx.Cache``
    variables ``names`` (`twins.CACHE_NAMES` or `twins.LATENT_CACHE_NAMES`)
    for inputs ``input_shape`` ``[batch..., max_length, features]``: keys
    ``[batch..., slots, *key_tail]``, values ``[..., *value_tail]``."""
    batch, slots, dtype = twins.cache_shape(module, input_shape, dtype)
    key, value, positions, segments, index = names
    setattr(module, key, nnx.Cache(jnp.zeros((*batch, slots, *key_tail), dtype)))
    setattr(module, value, nnx.Cache(jnp.zeros((*batch, slots, *value_tail), dtype)))
    setattr(module, positions, nnx.Cache(jnp.zeros((*batch, slots), jnp.int32)))
    setattr(module, segments, nnx.Cache(jnp.zeros((*batch, slots), jnp.int32)))
    setattr(module, index, nnx.Cache(jnp.array(0, jnp.int32)))


def cache_step(module, names, k, v, positions, segments):
    """`twins.cache_step` on an NNX module's cache variables ``names``,
    written back in place; returns what to attend over."""
    cache = {name: getattr(module, name)[...] for name in names}
    new, attend_over = twins.cache_step(module, cache, names, k, v, positions, segments)
    for name, value in new.items():
        getattr(module, name)[...] = value
    return attend_over
