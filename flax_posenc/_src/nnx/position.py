"""NNX twins of the absolute position embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import twins, validation
from flax_posenc._src.nnx import parameters

# As BERT and GPT-2 (and the linen twin): normal, std 0.02.
POSITION_INIT = nnx.initializers.normal(0.02)


class SinusoidalPositionEmbedding(nnx.Module):
    """Fixed sinusoidal position embeddings (NNX).

    The twin of `flax_posenc.linen.SinusoidalPositionEmbedding`.
    Returns `flax_posenc.sinusoidal_encoding` of ``positions`` (default
    ``arange(seq)``); no parameters, so no ``rngs``.

    Logical axis names: none (no parameters).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax_posenc.nnx import SinusoidalPositionEmbedding
      >>> SinusoidalPositionEmbedding(8)(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    Args:
      features: number of features; None for ``x.shape[-1]``.
      layout: ``"interleaved"`` or ``"halves"``.
      base: frequency base.
      spacing: ``"paper"`` or ``"tensor2tensor"``.
      min_timescale: ``"tensor2tensor"`` spacing only.
      max_timescale: ``"tensor2tensor"`` spacing only; default ``base``.
      dtype: output dtype.
    """

    def __init__(
        self,
        features: int | None = None,
        *,
        layout: str = "interleaved",
        base: float = 10_000.0,
        spacing: str = "paper",
        min_timescale: float | None = None,
        max_timescale: float | None = None,
        dtype: DTypeLike = jnp.float32,
    ):
        self.features, self.layout, self.base, self.spacing = (
            features,
            layout,
            base,
            spacing,
        )
        self.min_timescale, self.max_timescale = min_timescale, max_timescale
        self.dtype = dtype

    def __call__(self, x: jax.Array, *, positions: ArrayLike | None = None):
        """Position embeddings ``[..., seq, features]`` for ``x`` ``[..., seq, _]``."""
        return twins.sinusoidal_rows(self, x, positions)


class LearnedPositionEmbedding(nnx.Module):
    """Learned absolute position embeddings: a ``[max_length, features]`` table.

    The NNX twin of `flax_posenc.linen.LearnedPositionEmbedding`.
    Returns ``table[positions]``; out-of-range positions follow
    `flax_posenc.embedding_lookup`'s policy (NaN rows, or ``checked``).

    Logical axis names: ``embedding``: ``("position", "embed")``
    (``embedding_axes``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import LearnedPositionEmbedding
      >>> LearnedPositionEmbedding(16, 8, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    Args:
      max_length: number of rows.
      features: number of features.
      checked: emit a ``checkify`` check that positions are in range.
      dtype: output dtype; default ``param_dtype``.
      param_dtype: dtype of the table.
      embedding_init: initializer of the table (normal, std 0.02).
      embedding_axes: logical axis names of the table.
      rngs: the PRNG streams (``params``).
    """

    def __init__(
        self,
        max_length: int,
        features: int,
        *,
        checked: bool = False,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        embedding_init: nnx.Initializer = POSITION_INIT,
        embedding_axes: tuple[str | None, ...] = ("position", "embed"),
        rngs: nnx.Rngs,
    ):
        validation.check_int("max_length", max_length, minimum=1)
        validation.check_int("features", features, minimum=1)
        self.max_length, self.checked = max_length, checked
        self.dtype = validation.module_dtypes(dtype, param_dtype)
        self.embedding = parameters.param(
            embedding_init, rngs, (max_length, features), param_dtype, embedding_axes
        )

    def __call__(self, x: jax.Array, *, positions: ArrayLike | None = None):
        """Position embeddings ``[..., seq, features]`` for ``x`` ``[..., seq, _]``."""
        return twins.learned_rows(
            self.embedding[...], x, positions, self.max_length, self.checked, self.dtype
        )
