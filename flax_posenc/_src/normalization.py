"""Layer normalization and RMS normalization with stable float32 statistics."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import validation


def _axes(ndim: int, axis: int | Sequence[int], name: str = "axis") -> tuple[int, ...]:
    """Normalizes ``axis`` to a sorted tuple of non-negative, distinct axes.

    ``axis`` is an int (NumPy integers too) or a sequence of them.
    """
    if isinstance(axis, (str, bytes)) or not isinstance(axis, Sequence):
        axis = (axis,)
    requested = tuple(axis)
    if not requested:
        raise ValueError(f"{name} must name at least one axis, got ().")
    axes = []
    for a in requested:
        if isinstance(a, (bool, np.bool_)):
            raise TypeError(f"{name} must be an int or ints, got {a!r}.")
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(
                f"{name} must be an int or ints, got {type(a).__name__} {a!r}."
            ) from None
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{name} {a!r} is out of range for an input of rank {ndim}."
            )
        axes.append(a % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name} has repeated entries: {requested}.")
    return tuple(sorted(axes))


def _broadcastable(
    name: str, param: ArrayLike | None, x: jax.Array, axes: tuple[int, ...]
) -> jax.Array | None:
    """Reshapes a ``scale``/``bias`` of the feature axes' shape to broadcast."""
    if param is None:
        return None
    param = jnp.asarray(param)
    if not (
        jnp.issubdtype(param.dtype, jnp.floating)
        or jnp.issubdtype(param.dtype, jnp.integer)
    ):
        raise TypeError(f"{name} must be real (floating), got dtype {param.dtype}.")
    expected = tuple(x.shape[a] for a in axes)
    if param.shape != expected:
        raise ValueError(
            f"{name} must have the shape of the feature axes {axes} of x "
            f"(default: the normalized axes), {expected}; got {param.shape} "
            f"(x has shape {x.shape})."
        )
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    return param.reshape(shape)


def _feature_axes(x, axes, feature_axes) -> tuple[int, ...]:
    """The axes of ``scale`` and ``bias``: ``feature_axes``, default ``axes``."""
    return axes if feature_axes is None else _axes(x.ndim, feature_axes, "feature_axes")


def _prepare(x, axis, eps, dtype):
    x = validation.floating_array("x", x)
    axes = _axes(x.ndim, axis)
    if isinstance(eps, jax.core.Tracer):  # a traced eps: only its type is known
        if eps.shape != () or not jnp.issubdtype(eps.dtype, jnp.floating):
            raise TypeError(
                f"eps must be a real scalar, got a traced {eps.dtype}{list(eps.shape)}."
            )
    elif validation.check_real("eps", eps) < 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}.")
    out_dtype = x.dtype if dtype is None else validation.floating_dtype("dtype", dtype)
    return x, axes, out_dtype, validation.compute_dtype(x.dtype)


def _mean(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    return jnp.mean(x, axis=axes, keepdims=True)


# Under reverse mode only these small per-row statistics are kept for the
# backward pass; the standardized values are recomputed there from x inside the
# passes that need them anyway, instead of being written out and read back.
_STATS = "flax_posenc_norm_statistics"
_SAVE_STATS = jax.checkpoint_policies.save_only_these_names(_STATS)


def _statistics(x, axes, eps):
    # Corrected two-pass: centring at the rounded mean is exact for values near
    # it (Sterbenz), and the mean of the centred values removes what rounding
    # the first mean left. Both second-pass sums read the same values, in one
    # fused pass.
    mean = _mean(x, axes)
    centred = x - mean
    residual = _mean(centred, axes)
    variance = _mean(jnp.square(centred), axes) - jnp.square(residual)
    rstd = jax.lax.rsqrt(jnp.maximum(variance, 0.0) + eps)
    return checkpoint_name(mean + residual, _STATS), checkpoint_name(rstd, _STATS)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _standardize(x: jax.Array, eps: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``(x - mean) / sqrt(var + eps)`` over ``axes``."""
    mean, rstd = _statistics(x, axes, eps)
    return (x - mean) * rstd


@_standardize.defjvp
def _standardize_jvp(axes, primals, tangents):
    # The derivative in closed form: d xhat = rstd * (dx - mean(dx) - xhat *
    # mean(xhat * dx)) - xhat * rstd**2 * d eps / 2. Its transpose, the
    # backward pass, needs two row sums and one elementwise pass.
    (x, eps), (dx, deps) = primals, tangents
    mean, rstd = _statistics(x, axes, eps)
    xhat = (x - mean) * rstd
    dxhat = rstd * (dx - _mean(dx, axes) - xhat * _mean(xhat * dx, axes))
    return xhat, dxhat - 0.5 * xhat * jnp.square(rstd) * deps


def layer_norm(
    x: ArrayLike,
    scale: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    axis: int | Sequence[int] = -1,
    feature_axes: int | Sequence[int] | None = None,
    eps: float = 1e-6,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    r"""Layer normalization over ``axis``.

    .. math::
        y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \cdot \mathrm{scale}
            + \mathrm{bias},\quad
        \mu = \mathrm{mean}(x),\quad \sigma^2 = \mathrm{mean}((x - \mu)^2)

    Statistics are computed in at least float32 by the corrected two-pass
    method: the mean, then the mean and mean square of the *centred* values
    (Chan, Golub and LeVeque 1983). The one-pass
    ``mean(x**2) - mean(x)**2`` (``flax.linen.LayerNorm``'s default) cancels
    catastrophically when ``|mean| >> std``: on ``1e4 + N(0, 1)`` in float32 its
    outputs are off by ~3.8e3; this function's are within 1e-3 of float64.
    ``eps`` is added to the variance inside the square root.

    Args:
      x: floating array.
      scale: optional multiplier with the shape of the feature axes.
      bias: optional offset with the shape of the feature axes.
      axis: axis or axes to normalize over (default the last): ints, NumPy
        integers included.
      feature_axes: the axes ``scale`` and ``bias`` span (Flax's
        ``feature_axes``); default ``axis``. Axes beside the normalized ones
        give each slice parameters of its own: ``axis=-1,
        feature_axes=(-2, -1)`` on ``[..., heads, head_dim]`` normalizes each
        head's features with each head's own weights (StableLM 2's and
        Command R+'s LayerNorms of queries and keys).
      eps: small constant added to the variance (>= 0): a real number, or a
        traced float scalar (then not checked, and differentiable). With
        ``eps=0`` a row of zero variance (constant, e.g. all zeros) divides
        0 by 0: its outputs and gradients are NaN. That is left as is, not
        patched: the gradient there is unbounded. Use ``eps > 0`` where such
        rows can occur (padding).
      dtype: output dtype; default ``x.dtype``. Scale and bias are applied in the
        computation dtype (at least float32) before the cast.

    Returns:
      Array of ``x``'s shape and ``dtype``.

    Raises:
      TypeError: ``x`` or ``dtype`` not floating, ``scale``/``bias`` complex,
        ``axis`` not ints, ``eps`` not a real number.
      ValueError: an ``axis`` out of range or repeated, a negative or
        non-finite ``eps``, or ``scale``/``bias`` of the wrong shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> print(fp.layer_norm(jnp.array([1.0, 2.0, 3.0]), eps=0.0).round(4))
      [-1.2247  0.      1.2247]

    References:
      Ba, Kiros and Hinton, "Layer Normalization", 2016.
      https://arxiv.org/abs/1607.06450
    """
    x, axes, out_dtype, work = _prepare(x, axis, eps, dtype)
    features = _feature_axes(x, axes, feature_axes)
    scale = _broadcastable("scale", scale, x, features)
    bias = _broadcastable("bias", bias, x, features)
    return _layer_norm(
        x, jnp.asarray(eps, work), scale, bias, axes=axes, out_dtype=out_dtype
    )


# The public functions check their arguments, then run one compiled program
# per call signature (called eagerly, each operation would compile on its own).
@functools.partial(jax.jit, static_argnames=("axes", "out_dtype"))
def _layer_norm(x, eps, scale, bias, *, axes, out_dtype):
    work = eps.dtype
    y = jax.checkpoint(lambda v, e: _standardize(v, e, axes), policy=_SAVE_STATS)(
        x.astype(work), eps
    )
    if scale is not None:
        y = y * scale.astype(work)
    if bias is not None:
        y = y + bias.astype(work)
    return y.astype(out_dtype)


def rms_norm(
    x: ArrayLike,
    scale: ArrayLike | None = None,
    *,
    axis: int | Sequence[int] = -1,
    feature_axes: int | Sequence[int] | None = None,
    eps: float = 1e-6,
    unit_offset: bool = False,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    r"""Root-mean-square normalization over ``axis``.

    .. math::
        y = \frac{x}{\sqrt{\mathrm{mean}(x^2) + \epsilon}} \cdot s,\quad
        s = \mathrm{scale}\ \text{or, with}\ \texttt{unit\_offset},\
        s = 1 + \mathrm{scale}

    ``unit_offset=True`` is the Gemma parametrization (checkpoints store
    ``scale`` around 0); the ``1 + scale`` is added in float32, as Gemma does.
    Statistics are computed in at least float32; ``eps`` is inside the root.

    Args:
      x: floating array.
      scale: optional multiplier with the shape of the feature axes.
      axis: axis or axes to normalize over (default the last): ints, NumPy
        integers included.
      feature_axes: the axes ``scale`` spans; default ``axis`` (as
        `layer_norm`'s: with more axes than ``axis``, each slice has a scale
        of its own).
      eps: small constant added to the mean square (>= 0): a real number, or
        a traced float scalar (then not checked). With ``eps=0`` an all-zero
        row divides 0 by 0: its outputs and gradients are NaN (left as is: the
        gradient there is unbounded). Use ``eps > 0`` where such rows can
        occur (padding).
      unit_offset: multiply by ``1 + scale`` instead of ``scale``.
      dtype: output dtype; default ``x.dtype``.

    Returns:
      Array of ``x``'s shape and ``dtype``.

    Raises:
      TypeError: ``x`` or ``dtype`` not floating, ``scale`` complex, ``axis``
        not ints, ``eps`` not a real number.
      ValueError: an ``axis`` out of range or repeated, a negative or
        non-finite ``eps``, ``scale`` of the wrong shape, or
        ``unit_offset=True`` without ``scale``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> x, scale = jnp.array([2.0, -2.0]), jnp.array([1.0, 3.0])
      >>> print(fp.rms_norm(x, scale, eps=0.0).round(4))
      [ 1. -3.]

    References:
      Zhang and Sennrich, "Root Mean Square Layer Normalization", 2019.
      https://arxiv.org/abs/1910.07467
    """
    x, axes, out_dtype, work = _prepare(x, axis, eps, dtype)
    scale = _broadcastable("scale", scale, x, _feature_axes(x, axes, feature_axes))
    unit_offset = validation.check_bool("unit_offset", unit_offset)
    if unit_offset and scale is None:
        raise ValueError("unit_offset=True multiplies by 1 + scale; pass a scale.")
    return _rms_norm(
        x,
        jnp.asarray(eps, work),
        scale,
        axes=axes,
        unit_offset=bool(unit_offset),
        out_dtype=out_dtype,
    )


@functools.partial(jax.jit, static_argnames=("axes", "unit_offset", "out_dtype"))
def _rms_norm(x, eps, scale, *, axes, unit_offset, out_dtype):
    work = eps.dtype
    xw = x.astype(work)
    y = xw * jax.lax.rsqrt(_mean(jnp.square(xw), axes) + eps)
    if scale is not None:
        multiplier = scale.astype(work)
        y = y * (1.0 + multiplier if unit_offset else multiplier)
    return y.astype(out_dtype)


def dynamic_tanh(
    x: ArrayLike,
    alpha: ArrayLike,
    scale: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    r"""Dynamic Tanh, a normalization layer without statistics.

    .. math::
        y = \gamma \cdot \tanh(\alpha x) + \beta

    with ``alpha`` a learned scalar and ``gamma = scale``, ``beta = bias``
    per feature (the last axis): the element-wise replacement of LayerNorm
    and RMSNorm by Zhu et al. (2025), which squashes extreme activations as
    a norm does but reads no mean or variance, so it needs no reduction over
    the features. Computed in at least float32.

    Args:
      x: floating ``[..., features]``.
      alpha: a floating scalar (the paper initializes it to 0.5, smaller for
        wider or deeper models).
      scale: ``[features]``, or None for 1.
      bias: ``[features]``, or None for 0.
      dtype: output dtype; default ``x.dtype``.

    Returns:
      Array of ``x``'s shape and ``dtype``.

    Raises:
      TypeError: non-floating ``x`` or ``dtype``, complex ``alpha``,
        ``scale`` or ``bias``.
      ValueError: ``alpha`` not a scalar, ``scale`` or ``bias`` not of shape
        ``[features]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> y = fp.dynamic_tanh(jnp.array([0.0, 2.0, -100.0]), 0.5)
      >>> [round(float(v), 4) for v in y]
      [0.0, 0.7616, -1.0]

    References:
      Zhu, Chen, He, LeCun and Liu, "Transformers without Normalization",
      2025. https://arxiv.org/abs/2503.10622
    """
    x, axes, out_dtype, work = _prepare(x, -1, 0.0, dtype)
    alpha = validation.floating_array("alpha", alpha)
    if alpha.shape != ():
        raise ValueError(f"alpha must be a scalar, got shape {alpha.shape}.")
    scale = _broadcastable("scale", scale, x, axes)
    bias = _broadcastable("bias", bias, x, axes)
    return _dynamic_tanh(x, alpha, scale, bias, work=work, out_dtype=out_dtype)


@functools.partial(jax.jit, static_argnames=("work", "out_dtype"))
def _dynamic_tanh(x, alpha, scale, bias, *, work, out_dtype):
    y = jnp.tanh(alpha.astype(work) * x.astype(work))
    if scale is not None:
        y = y * scale.astype(work)
    if bias is not None:
        y = y + bias.astype(work)
    return y.astype(out_dtype)


NORM_POSITIONS = ("post", "pre", "sandwich", "parallel", "reordered")
# Learned scales of a residual's output: LayerScale's vector on the branch
# (CaiT, DINOv3), or one scalar on the sum (Gemma 4's layer_scalar).
OUTPUT_SCALES = ("layer_scale", "layer_scalar")
