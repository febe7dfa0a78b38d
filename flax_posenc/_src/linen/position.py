"""Absolute position embeddings: fixed sinusoidal and learned tables."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import twins, validation


class SinusoidalPositionEmbedding(nn.Module):
    """Fixed sinusoidal position embeddings (Vaswani et al. 2017).

    ``https://arxiv.org/abs/1706.03762``. Returns the embeddings of ``positions``
    (not added to ``x``): `flax_posenc.sinusoidal_encoding` of
    ``positions``, which defaults to ``arange(seq)``. No parameters.

    Logical axis names: none (no parameters).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax_posenc.linen import SinusoidalPositionEmbedding
      >>> module = SinusoidalPositionEmbedding(layout="halves")
      >>> x = jnp.zeros((2, 5, 8))
      >>> variables = module.init(jax.random.key(0), x)
      >>> variables
      {}
      >>> module.apply(variables, x).shape
      (2, 5, 8)

    Attributes:
      features: number of features; default ``x.shape[-1]``.
      layout: ``"interleaved"`` or ``"halves"``.
      base: frequency base (see `flax_posenc.sinusoidal_frequencies`).
      spacing: ``"paper"`` or ``"tensor2tensor"``.
      min_timescale: ``"tensor2tensor"`` spacing only.
      max_timescale: ``"tensor2tensor"`` spacing only; default ``base``.
      dtype: output dtype.
    """

    features: int | None = None
    layout: str = "interleaved"
    base: float = 10_000.0
    spacing: str = "paper"
    min_timescale: float | None = None
    max_timescale: float | None = None
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, positions: ArrayLike | None = None):
        """Position embeddings ``[..., seq, features]`` for ``x`` ``[..., seq, _]``."""
        return twins.sinusoidal_rows(self, x, positions)


class LearnedPositionEmbedding(nn.Module):
    """Learned absolute position embeddings: a ``[max_length, features]`` table.

    As in BERT and GPT-2 (Devlin et al. 2018, ``https://arxiv.org/abs/1810.04805``).
    Returns ``table[positions]`` (not added to ``x``).

    Positions outside ``[0, max_length)``: with ``positions=None`` a sequence
    longer than ``max_length`` raises ``ValueError`` at trace time. Explicit
    (possibly traced) positions out of range give rows of NaN, the policy of
    `flax_posenc.embedding_lookup`; set ``checked=True`` and wrap the call
    in ``jax.experimental.checkify.checkify`` to get an error instead.

    Logical axis names: ``embedding``: ``("position", "embed")``
    (``embedding_axes``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import LearnedPositionEmbedding
      >>> module = LearnedPositionEmbedding(max_length=16, features=8)
      >>> x = jnp.zeros((2, 5, 8))
      >>> variables = module.init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, nn.meta.unbox(variables))
      {'params': {'embedding': (16, 8)}}
      >>> module.apply(variables, x).shape
      (2, 5, 8)

    Attributes:
      max_length: number of rows (positions ``0..max_length-1``).
      features: number of features.
      checked: emit a ``checkify`` check that positions are in range.
      dtype: output dtype; default ``param_dtype``.
      param_dtype: dtype of the table.
      embedding_init: initializer of the table (default normal, std 0.02).
      embedding_axes: logical axis names of the table.
    """

    max_length: int
    features: int
    checked: bool = False
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    embedding_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    embedding_axes: tuple[str | None, ...] = ("position", "embed")

    @nn.compact
    def __call__(self, x: jax.Array, *, positions: ArrayLike | None = None):
        """Position embeddings ``[..., seq, features]`` for ``x`` ``[..., seq, _]``."""
        validation.check_int("max_length", self.max_length, minimum=1)
        validation.check_int("features", self.features, minimum=1)
        dtype = validation.module_dtypes(self.dtype, self.param_dtype)
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(self.embedding_init, self.embedding_axes),
            (self.max_length, self.features),
            self.param_dtype,
        )
        return twins.learned_rows(
            table, x, positions, self.max_length, self.checked, dtype
        )
