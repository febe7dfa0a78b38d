"""Sinusoidal position encodings (Vaswani et al. 2017), in every published layout."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import angles, validation

LAYOUTS = angles.LAYOUTS[::-1]  # the paper's layout, its default, first
SPACINGS = ("paper", "tensor2tensor")


def sinusoidal_frequencies(
    dim: int,
    *,
    spacing: str = "paper",
    base: float = 10_000.0,
    min_timescale: float | None = None,
    max_timescale: float | None = None,
) -> np.ndarray:
    r"""Angular frequencies (radians per position) of a sinusoidal encoding.

    There are ``n = dim // 2`` frequencies, one per sin/cos pair, ``i = 0..n-1``:

    - ``spacing="paper"`` (Vaswani et al. 2017, section 3.5):
      $\omega_i = \mathrm{base}^{-2i/\mathrm{dim}}$.
    - ``spacing="tensor2tensor"`` (``get_timing_signal_1d`` in tensor2tensor, and
      ``sinusoidal_init`` of the Flax WMT and LM1B examples):
      $\omega_i = \min \cdot \exp(-i \cdot \ln(\max/\min) / \max(n - 1, 1))$
      with ``min = min_timescale`` (default 1) and ``max = max_timescale``
      (default ``base``). The denominator is ``n - 1``, not ``n``, so with the
      default ``min = 1`` the slowest wavelength is exactly ``2 pi max``. The
      factor ``min`` multiplies, as in the published code (for ``min != 1`` the
      frequencies run from ``min`` down to ``min**2 / max``).

    Frequencies are computed in float64 NumPy: they are static, known at trace
    time, and exact to float64 rounding.

    Args:
      dim: number of features of the encoding (>= 2).
      spacing: ``"paper"`` or ``"tensor2tensor"``.
      base: the paper's base (10000); for ``"tensor2tensor"`` the default
        ``max_timescale``.
      min_timescale: ``"tensor2tensor"`` only; default 1.0.
      max_timescale: ``"tensor2tensor"`` only; default ``base``.

    Returns:
      float64 NumPy array ``[dim // 2]``, decreasing from the first frequency.

    Raises:
      ValueError: ``dim < 2``, an unknown ``spacing``, a non-positive ``base`` or
        timescale, or a timescale given with ``spacing="paper"``.
      TypeError: ``dim`` is not an int.

    Examples:
      >>> import flax_posenc as fp
      >>> fp.sinusoidal_frequencies(8).round(4).tolist()
      [1.0, 0.1, 0.01, 0.001]
      >>> fp.sinusoidal_frequencies(8, spacing="tensor2tensor").round(4).tolist()
      [1.0, 0.0464, 0.0022, 0.0001]

    References:
      Vaswani et al., "Attention Is All You Need", 2017.
      https://arxiv.org/abs/1706.03762
    """
    dim = validation.check_int("dim", dim, minimum=2)
    validation.check_choice("spacing", spacing, SPACINGS)
    base = validation.check_positive("base", base)
    num = dim // 2
    index = np.arange(num, dtype=np.float64)
    if spacing == "paper":
        if min_timescale is not None or max_timescale is not None:
            raise ValueError(
                "min_timescale and max_timescale apply to spacing='tensor2tensor' "
                f"only; got min_timescale={min_timescale!r}, "
                f"max_timescale={max_timescale!r} with spacing='paper'."
            )
        return base ** (-2.0 * index / dim)
    low = validation.check_positive(
        "min_timescale", 1.0 if min_timescale is None else min_timescale
    )
    high = validation.check_positive(
        "max_timescale", base if max_timescale is None else max_timescale
    )
    increment = np.log(high / low) / max(num - 1, 1)
    return low * np.exp(-index * increment)


def sinusoidal_encoding(
    positions: ArrayLike,
    dim: int,
    *,
    layout: str = "interleaved",
    base: float = 10_000.0,
    spacing: str = "paper",
    min_timescale: float | None = None,
    max_timescale: float | None = None,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    r"""Sinusoidal encoding of integer positions.

    With $\omega_i$ from `sinusoidal_frequencies` (``i = 0..dim//2-1``):

    - ``layout="interleaved"`` (the paper):
      $PE(p, 2i) = \sin(p\,\omega_i)$, $PE(p, 2i+1) = \cos(p\,\omega_i)$.
    - ``layout="halves"`` (tensor2tensor, Flax examples):
      $PE(p, i) = \sin(p\,\omega_i)$,
      $PE(p, i + dim/2) = \cos(p\,\omega_i)$.

    For odd ``dim`` the last feature is zero (tensor2tensor's convention).

    For every ``k``, $PE(p + k) = M(k)\,PE(p)$ with $M(k)$ a block
    rotation by the angles $k\,\omega_i$, independent of ``p``: the
    property that lets attention read relative offsets.

    Angles are reduced modulo 2 pi exactly, so in float32 every value is within
    1e-6 of the float64 formula for ``|p| < 2**20`` (the naive float32
    ``sin(p * w)`` is off by 1.2e-4 at ``p = 4096``).

    Args:
      positions: integer array ``[..., seq]`` (any shape, any integer dtype;
        values must lie in the int32 range, checked unless traced).
      dim: number of features (>= 2).
      layout: ``"interleaved"`` or ``"halves"``.
      base: see `sinusoidal_frequencies`.
      spacing: ``"paper"`` or ``"tensor2tensor"``.
      min_timescale: see `sinusoidal_frequencies`.
      max_timescale: see `sinusoidal_frequencies`.
      dtype: floating output dtype. Computation is float32 (float64 inputs are
        not needed: the angle reduction is exact).

    Returns:
      ``[..., seq, dim]`` array of ``dtype``.

    Raises:
      TypeError: ``positions`` not integer, ``dim`` not an int, ``dtype`` not
        floating.
      ValueError: ``dim < 2``, an unknown ``layout`` or ``spacing``, bad
        timescales, concrete positions outside the int32 range.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> pe = fp.sinusoidal_encoding(jnp.array([[0, 1, 2]]), 4)
      >>> pe.shape
      (1, 3, 4)
      >>> print(pe[0, 1].round(4))  # sin(1), cos(1), sin(0.01), cos(0.01)
      [0.8415 0.5403 0.01   1.    ]

    References:
      Vaswani et al., "Attention Is All You Need", 2017.
      https://arxiv.org/abs/1706.03762
    """
    positions = validation.position_array("positions", positions)
    validation.check_choice("layout", layout, LAYOUTS)
    dtype = validation.floating_dtype("dtype", dtype)
    inv_freq = sinusoidal_frequencies(
        dim,
        spacing=spacing,
        base=base,
        min_timescale=min_timescale,
        max_timescale=max_timescale,
    )
    return _encode(
        positions,
        inv_freq=tuple(inv_freq.tolist()),
        layout=layout,
        pad=bool(dim % 2),
        dtype=dtype,
    )


@functools.partial(jax.jit, static_argnames=("inv_freq", "layout", "pad", "dtype"))
def _encode(positions, *, inv_freq, layout, pad, dtype):
    # One compiled program per call signature, not one per operation when
    # called eagerly. The frequencies are static float64 values, read at trace
    # time by the angle reduction.
    sin, cos = angles.sin_cos(positions, np.asarray(inv_freq, np.float64))
    if layout == "interleaved":
        table = jnp.stack([sin, cos], axis=-1).reshape(
            *sin.shape[:-1], 2 * len(inv_freq)
        )
    else:
        table = jnp.concatenate([sin, cos], axis=-1)
    if pad:
        table = jnp.pad(table, [(0, 0)] * (table.ndim - 1) + [(0, 1)])
    return table.astype(dtype)


def sinusoidal_table(length: int, dim: int, **kwargs: Any) -> jax.Array:
    """The sinusoidal encoding of positions ``0..length-1``: ``[length, dim]``.

    Equal to ``sinusoidal_encoding(jnp.arange(length), dim, **kwargs)``; see
    `sinusoidal_encoding` for the keywords.

    Args:
      length: number of positions (>= 1).
      dim: number of features (>= 2).
      **kwargs: ``layout``, ``base``, ``spacing``, ``min_timescale``,
        ``max_timescale``, ``dtype``.

    Returns:
      ``[length, dim]`` array.

    Raises:
      ValueError, TypeError: as `sinusoidal_encoding`, and for ``length < 1``.

    Examples:
      >>> import flax_posenc as fp
      >>> fp.sinusoidal_table(16, 8, layout="halves").shape
      (16, 8)

    References:
      Vaswani et al., "Attention Is All You Need", 2017.
      https://arxiv.org/abs/1706.03762
    """
    length = validation.check_int("length", length, minimum=1)
    return sinusoidal_encoding(jnp.arange(length), dim, **kwargs)
