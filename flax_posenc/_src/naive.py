"""The two naive position encodings that motivate sinusoids (baselines).

Both put one number per position into every feature. ``index_encoding`` is
unbounded: position 500 adds 500 to every feature and swamps the token
embedding. ``fraction_encoding`` is bounded, but its step ``1 / (length - 1)``
depends on the sequence's length, so "the next token" means a different offset
in a sentence of 5 words than in one of 50. They are here for the demo and the
docs; models should use one of the other schemes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import validation


def index_encoding(
    positions: ArrayLike, dim: int, *, dtype: DTypeLike = jnp.float32
) -> jax.Array:
    r"""The position itself in every feature: $PE(p, j) = p$.

    Args:
      positions: integer array ``[..., seq]``.
      dim: number of features (>= 1).
      dtype: floating output dtype.

    Returns:
      ``[..., seq, dim]`` array of ``dtype``.

    Raises:
      TypeError: ``positions`` not integer, ``dim`` not an int, ``dtype`` not
        floating.
      ValueError: ``dim < 1``; concrete positions outside the int32 range.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> fp.index_encoding(jnp.arange(3), 2).tolist()
      [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]

    References:
      Vaswani et al., "Attention Is All You Need", 2017 (section 3.5: the
      fixed sinusoids these baselines are compared with).
      https://arxiv.org/abs/1706.03762
    """
    positions = validation.position_array("positions", positions)
    dim = validation.check_int("dim", dim, minimum=1)
    dtype = validation.floating_dtype("dtype", dtype)
    values = positions.astype(dtype)[..., None]
    return jnp.broadcast_to(values, (*positions.shape, dim))


def fraction_encoding(
    positions: ArrayLike,
    dim: int,
    *,
    length: ArrayLike | None = None,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    r"""The position as a fraction of the sequence: $PE(p, j) = p / (L - 1)$.

    Positions ``0..L-1`` map onto ``[0, 1]``. A sequence of length 1 has the single
    value 0 (the denominator is ``max(L - 1, 1)``).

    Args:
      positions: integer array ``[..., seq]``.
      dim: number of features (>= 1).
      length: ``L >= 0``, an int or an integer array ``[...]`` with one length
        per row (padded batches), broadcastable to ``positions.shape[:-1]``;
        default ``positions.shape[-1]``. Negative values are rejected when
        concrete (not traced).
      dtype: floating output dtype; the division is done in at least float32.

    Returns:
      ``[..., seq, dim]`` array of ``dtype``.

    Raises:
      TypeError: ``positions`` or ``length`` not integer, ``dim`` not an int,
        ``dtype`` not floating.
      ValueError: ``dim < 1``; ``positions`` is a scalar and ``length`` is None;
        ``length`` of another shape, or negative; concrete positions outside
        the int32 range.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> fp.fraction_encoding(jnp.arange(5), 1)[:, 0].tolist()
      [0.0, 0.25, 0.5, 0.75, 1.0]

    References:
      Vaswani et al., "Attention Is All You Need", 2017 (section 3.5: the
      fixed sinusoids these baselines are compared with).
      https://arxiv.org/abs/1706.03762
    """
    positions = validation.position_array("positions", positions)
    dim = validation.check_int("dim", dim, minimum=1)
    dtype = validation.floating_dtype("dtype", dtype)
    if length is None:
        if positions.ndim == 0:
            raise ValueError("length is required when positions is a scalar.")
        length = positions.shape[-1]
    length = validation.position_array("length", length)
    rows = positions.shape[:-1]
    try:
        fits = np.broadcast_shapes(length.shape, rows) == rows
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"length must be an int or have one value per row of positions "
            f"{positions.shape}, a shape that broadcasts to {rows}; got "
            f"{length.shape}."
        )
    if not isinstance(length, jax.core.Tracer) and length.size:
        shortest = int(length.min())
        if shortest < 0:
            raise ValueError(f"length must be >= 0, got {shortest}.")
    work = validation.compute_dtype(dtype)
    denominator = jnp.maximum(length.astype(work) - 1, 1)[..., None]
    values = (positions.astype(work) / denominator).astype(dtype)[..., None]
    return jnp.broadcast_to(values, (*values.shape[:-1], dim))
