"""Parameter creation shared by the NNX twins (private)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flax import nnx
from jax.typing import DTypeLike


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
