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
    `bias_function` gives the same biases as a function of positions, for
    `dot_product_attention`'s ``bias=`` on its blockwise path.

    Logical axis names: none (no parameters).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax_posenc.linen import ALiBiBias
      >>> ALiBiBias(num_heads=8).apply({}, jnp.arange(5)).shape
      (8, 5, 5)

    Attributes:
      num_heads: number of heads.
      dtype: output dtype.
      form: ``"distance"`` (the paper's) or ``"key_position"`` (``slope_h *
        k_j``: BLOOM's and Falcon-RW's code), as `flax_posenc.alibi_bias`.
      slope_dtype: the dtype the slopes and products are rounded to
        (Falcon-RW: ``jnp.bfloat16``), or None (float32).
      scale: a factor on the biases (Falcon-RW: ``head_dim ** -0.5``).
    """

    num_heads: int
    dtype: DTypeLike = jnp.float32
    form: str = "distance"
    slope_dtype: DTypeLike | None = None
    scale: float = 1.0

    @nn.compact
    def __call__(
        self, q_positions: ArrayLike, k_positions: ArrayLike | None = None
    ) -> jax.Array:
        """Biases for ``q_positions [..., q]`` and ``k_positions`` (default: same)."""
        return twins.alibi_bias(self, q_positions, k_positions)

    def bias_function(self) -> jax.tree_util.Partial:
        """The biases as a pure function ``f(q_positions, k_positions)``.

        ``f(q, k)`` equals ``module(q, k)``. It is a ``jax.tree_util.Partial``
        (a pytree, compared by value), for `dot_product_attention`'s and
        `ring_attention`'s ``bias=``: evaluated block by block there, it never
        builds a ``[q, k]`` array on the blockwise path.

        Examples:
          >>> import jax.numpy as jnp
          >>> from flax_posenc.linen import ALiBiBias
          >>> f = ALiBiBias(num_heads=8).bias_function()
          >>> f(jnp.arange(5), jnp.arange(5)).shape
          (8, 5, 5)
        """
        return twins.alibi_bias_function(self)


class RelativePositionBias(nn.Module):
    """T5's learned relative position biases (Raffel et al. 2020).

    ``https://arxiv.org/abs/1910.10683``. A ``[heads, num_buckets]`` table
    indexed by `flax_posenc.relative_position_bucket` of ``k - q``.
    Encoders use ``bidirectional=True``, decoders ``False``. T5 shares one such
    module across the layers of a stack. `bias_function` gives the same
    biases as a function of positions holding the table, for
    `dot_product_attention`'s ``bias=`` on its blockwise path (the table's
    gradients flow through it).

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

    def setup(self):
        # The table in setup (not compact): `__call__` and `bias_function`
        # both read it, under the same name and axes as ever.
        self.out_dtype = twins.check_bias_module(
            self.num_heads,
            self.num_buckets,
            self.max_distance,
            self.bidirectional,
            self.dtype,
            self.param_dtype,
        )
        self.rel_embedding = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(self.embedding_init, self.embedding_axes),
            (self.num_heads, self.num_buckets),
            self.param_dtype,
        )

    def __call__(
        self, q_positions: ArrayLike, k_positions: ArrayLike | None = None
    ) -> jax.Array:
        """Biases ``[..., heads, q_len, k_len]``; ``k_positions`` default: same."""
        return twins.relative_bias(
            self.rel_embedding,
            q_positions,
            k_positions,
            self.bidirectional,
            self.max_distance,
            self.out_dtype,
        )

    def bias_function(self) -> jax.tree_util.Partial:
        """The biases as a pure function ``f(q_positions, k_positions)``.

        ``f(q, k)`` equals ``module(q, k)``. It is a ``jax.tree_util.Partial``
        holding the table (a pytree whose leaf is the table), for
        `dot_product_attention`'s and `ring_attention`'s ``bias=``: evaluated
        block by block there, it never builds a ``[q, k]`` array on the
        blockwise path, and the table's gradients flow through it. Call it
        in the bound module (``apply(..., method="bias_function")``, or from
        a parent's ``__call__``), as the table is a parameter.

        Examples:
          >>> import jax, jax.numpy as jnp
          >>> from flax_posenc.linen import RelativePositionBias
          >>> module = RelativePositionBias(num_heads=4)
          >>> variables = module.init(jax.random.key(0), jnp.arange(6))
          >>> f = module.apply(variables, method="bias_function")
          >>> f(jnp.arange(6), jnp.arange(6)).shape
          (4, 6, 6)
        """
        return twins.relative_bias_function(
            self.rel_embedding, self.bidirectional, self.max_distance, self.out_dtype
        )
