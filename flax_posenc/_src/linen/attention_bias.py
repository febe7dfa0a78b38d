"""Attention-bias modules: ALiBi and T5 relative position biases."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import twins


class ALiBiBias(nn.Module):
    """ALiBi biases ``-slope_h * |q_i - k_j|`` (Press et al. 2022); no parameters.

    ``https://arxiv.org/abs/2108.12409``. Returns ``[..., heads, q_len, k_len]``
    to add to the attention logits (add a causal mask as well for decoders).

    Logical axis names: none (no parameters).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax_posenc.linen import ALiBiBias
      >>> ALiBiBias(num_heads=8).apply({}, jnp.arange(5)).shape
      (8, 5, 5)

    Attributes:
      num_heads: number of heads.
      dtype: output dtype.
    """

    num_heads: int
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(
        self, q_positions: ArrayLike, k_positions: ArrayLike | None = None
    ) -> jax.Array:
        """Biases for ``q_positions [..., q]`` and ``k_positions`` (default: same)."""
        return twins.alibi_bias(q_positions, k_positions, self.num_heads, self.dtype)


class RelativePositionBias(nn.Module):
    """T5's learned relative position biases (Raffel et al. 2020).

    ``https://arxiv.org/abs/1910.10683``. A ``[heads, num_buckets]`` table
    indexed by `flax_posenc.relative_position_bucket` of ``k - q``.
    Encoders use ``bidirectional=True``, decoders ``False``. T5 shares one such
    module across the layers of a stack.

    Logical axis names: ``rel_embedding``: ``("heads", "relpos_buckets")``
    (``embedding_axes``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import RelativePositionBias
      >>> module = RelativePositionBias(num_heads=4)
      >>> variables = module.init(jax.random.key(0), jnp.arange(6))
      >>> jax.tree.map(jnp.shape, nn.meta.unbox(variables))
      {'params': {'rel_embedding': (4, 32)}}
      >>> module.apply(variables, jnp.arange(6)).shape
      (4, 6, 6)

    Attributes:
      num_heads: number of heads.
      num_buckets: number of buckets.
      max_distance: distance from which positions share the last bucket.
      bidirectional: encoder-style (True) or causal (False) buckets.
      dtype: output dtype; default ``param_dtype``.
      param_dtype: dtype of the table.
      embedding_init: initializer of the table.
      embedding_axes: logical axis names of the table.
    """

    num_heads: int
    num_buckets: int = 32
    max_distance: int = 128
    bidirectional: bool = True
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    embedding_init: nn.initializers.Initializer = nn.initializers.variance_scaling(
        1.0, "fan_avg", "uniform"
    )
    embedding_axes: tuple[str | None, ...] = ("heads", "relpos_buckets")

    @nn.compact
    def __call__(
        self, q_positions: ArrayLike, k_positions: ArrayLike | None = None
    ) -> jax.Array:
        """Biases ``[..., heads, q_len, k_len]``; ``k_positions`` default: same."""
        dtype = twins.check_bias_module(
            self.num_heads,
            self.num_buckets,
            self.max_distance,
            self.bidirectional,
            self.dtype,
            self.param_dtype,
        )
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(self.embedding_init, self.embedding_axes),
            (self.num_heads, self.num_buckets),
            self.param_dtype,
        )
        return twins.relative_bias(
            table,
            q_positions,
            k_positions,
            self.bidirectional,
            self.max_distance,
            dtype,
        )
