"""NNX twins of the attention-bias modules: ALiBi and T5 relative biases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import twins
from flax_posenc._src.nnx import parameters

# As T5 (and the linen twin): variance scaling, fan-avg, uniform.
RELATIVE_INIT = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class ALiBiBias(nnx.Module):
    """ALiBi biases ``-slope_h * |q_i - k_j|`` (NNX); no parameters.

    The twin of `flax_posenc.linen.ALiBiBias`; returns ``[..., heads, q, k]``.
    `bias_function` gives the same biases as a function of positions, for
    `dot_product_attention`'s ``bias=`` on its blockwise path.

    Logical axis names: none (no parameters).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax_posenc.nnx import ALiBiBias
      >>> ALiBiBias(8)(jnp.arange(5)).shape
      (8, 5, 5)

    Args:
      num_heads: number of heads.
      dtype: output dtype.
      form: ``"distance"`` (the paper's) or ``"key_position"`` (``slope_h *
        k_j``: BLOOM's and Falcon-RW's code), as `flax_posenc.alibi_bias`.
      slope_dtype: the dtype the slopes and products are rounded to
        (Falcon-RW: ``jnp.bfloat16``), or None (float32).
      scale: a factor on the biases (Falcon-RW: ``head_dim ** -0.5``).
    """

    def __init__(
        self,
        num_heads: int,
        *,
        dtype: DTypeLike = jnp.float32,
        form: str = "distance",
        slope_dtype: DTypeLike | None = None,
        scale: float = 1.0,
    ):
        self.num_heads, self.dtype = num_heads, dtype
        self.form, self.slope_dtype, self.scale = form, slope_dtype, scale

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
          >>> from flax_posenc.nnx import ALiBiBias
          >>> f = ALiBiBias(8).bias_function()
          >>> f(jnp.arange(5), jnp.arange(5)).shape
          (8, 5, 5)
        """
        return twins.alibi_bias_function(self)


class RelativePositionBias(nnx.Module):
    """T5's learned relative position biases (NNX).

    The twin of `flax_posenc.linen.RelativePositionBias`: a
    ``[heads, num_buckets]`` table indexed by
    `flax_posenc.relative_position_bucket` of ``k - q``. `bias_function`
    gives the same biases as a function of positions holding the table, for
    `dot_product_attention`'s ``bias=`` on its blockwise path (the table's
    gradients flow through it).

    Logical axis names: ``rel_embedding``: ``("heads", "relpos_buckets")``
    (``embedding_axes``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import RelativePositionBias
      >>> RelativePositionBias(4, rngs=nnx.Rngs(0))(jnp.arange(6)).shape
      (4, 6, 6)

    Args:
      num_heads: number of heads.
      num_buckets: number of buckets.
      max_distance: distance from which positions share the last bucket.
      bidirectional: encoder-style (True) or causal (False) buckets.
      dtype: output dtype; default ``param_dtype``.
      param_dtype: dtype of the table.
      embedding_init: initializer of the table.
      embedding_axes: logical axis names of the table.
      rngs: the PRNG streams (``params``).
    """

    def __init__(
        self,
        num_heads: int,
        *,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = True,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        embedding_init: nnx.Initializer = RELATIVE_INIT,
        embedding_axes: tuple[str | None, ...] = ("heads", "relpos_buckets"),
        rngs: nnx.Rngs,
    ):
        self.dtype = twins.check_bias_module(
            num_heads, num_buckets, max_distance, bidirectional, dtype, param_dtype
        )
        self.max_distance, self.bidirectional = max_distance, bidirectional
        self.rel_embedding = parameters.param(
            embedding_init, rngs, (num_heads, num_buckets), param_dtype, embedding_axes
        )

    def __call__(
        self, q_positions: ArrayLike, k_positions: ArrayLike | None = None
    ) -> jax.Array:
        """Biases ``[..., heads, q_len, k_len]``; ``k_positions`` default: same."""
        return twins.relative_bias(
            self.rel_embedding[...],
            q_positions,
            k_positions,
            self.bidirectional,
            self.max_distance,
            self.dtype,
        )

    def bias_function(self) -> jax.tree_util.Partial:
        """The biases as a pure function ``f(q_positions, k_positions)``.

        ``f(q, k)`` equals ``module(q, k)``. It is a ``jax.tree_util.Partial``
        holding the table's value (a pytree whose leaf is the table), for
        `dot_product_attention`'s and `ring_attention`'s ``bias=``: evaluated
        block by block there, it never builds a ``[q, k]`` array on the
        blockwise path, and the table's gradients flow through it (take it
        inside the function that ``nnx.grad`` differentiates).

        Examples:
          >>> import jax.numpy as jnp
          >>> from flax import nnx
          >>> from flax_posenc.nnx import RelativePositionBias
          >>> module = RelativePositionBias(4, rngs=nnx.Rngs(0))
          >>> f = module.bias_function()
          >>> f(jnp.arange(6), jnp.arange(6)).shape
          (4, 6, 6)
        """
        return twins.relative_bias_function(
            self.rel_embedding[...], self.bidirectional, self.max_distance, self.dtype
        )
