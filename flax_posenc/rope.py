"""Rotary position embeddings (RoPE) and their context-extension scalings."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flax_posenc import _angles, _validation

LAYOUTS = ("halves", "interleaved")


@dataclasses.dataclass(frozen=True)
class LinearScaling:
    """Position interpolation (Chen et al. 2023): every frequency divided by ``factor``.

    Equivalent to dividing positions by ``factor``.
    ``https://arxiv.org/abs/2306.15595``

    Attributes:
      factor: the scale ``s >= 1``.
    """

    factor: float


@dataclasses.dataclass(frozen=True)
class DynamicNTKScaling:
    """Dynamic NTK-aware scaling: the base grows once ``seq_len`` exceeds the original.

    ``base' = base * (factor * s / L - (factor - 1)) ** (dim / (dim - 2))`` with
    ``s = max(seq_len, L)`` and ``L = original_max_position_embeddings`` (Hugging
    Face reads ``L`` from the model config's ``max_position_embeddings``; here it
    must be given). Nothing changes while ``seq_len <= L``.

    Attributes:
      factor: the scale ``s >= 1``.
      original_max_position_embeddings: the training context ``L``.
    """

    factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class YarnScaling:
    """YaRN (Peng et al. 2023): per-frequency blend of interpolation and extrapolation.

    ``https://arxiv.org/abs/2309.00071``. Frequencies whose wavelength fits
    ``beta_fast`` times in ``L`` keep their value, those fitting fewer than
    ``beta_slow`` times are divided by ``factor``, with a linear ramp between
    (bounds floored/ceiled when ``truncate``). ``attention_factor`` defaults to
    ``0.1 ln(factor) + 1`` (or the ratio of the two ``mscale`` forms when both
    ``mscale`` and ``mscale_all_dim`` are set) and multiplies cos and sin.

    Attributes:
      factor: the scale ``s >= 1``.
      original_max_position_embeddings: the training context ``L``.
      beta_fast: rotations in ``L`` above which a frequency is kept (32).
      beta_slow: rotations in ``L`` below which it is interpolated (1).
      attention_factor: overrides the computed attention factor.
      mscale: DeepSeek-style ``mscale`` numerator.
      mscale_all_dim: DeepSeek-style ``mscale`` denominator.
      truncate: floor/ceil the ramp bounds (Hugging Face's default).
    """

    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True


@dataclasses.dataclass(frozen=True)
class Llama3Scaling:
    """Llama 3.1's frequency-band scaling.

    Wavelengths below ``L / high_freq_factor`` keep their frequency, those above
    ``L / low_freq_factor`` are divided by ``factor``, and the band between is
    interpolated smoothly in ``L / wavelength``.

    Attributes:
      factor: the scale ``s >= 1`` (8 for Llama 3.1).
      low_freq_factor: ``l`` (1 for Llama 3.1).
      high_freq_factor: ``h`` (4 for Llama 3.1).
      original_max_position_embeddings: the training context ``L`` (8192).
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


RopeScaling = LinearScaling | DynamicNTKScaling | YarnScaling | Llama3Scaling

SCALING_TYPES: dict[str, type] = {
    "linear": LinearScaling,
    "dynamic": DynamicNTKScaling,
    "yarn": YarnScaling,
    "llama3": Llama3Scaling,
}


def _scaling_from_config(
    scaling: RopeScaling | Mapping[str, Any] | None,
    max_position_embeddings: int | None = None,
):
    """Returns a typed scaling (or None) from a Hugging Face ``rope_scaling`` dict.

    A dict without ``original_max_position_embeddings`` takes it from the model
    config's ``max_position_embeddings``, as Hugging Face does.
    """
    if scaling is None or isinstance(scaling, tuple(SCALING_TYPES.values())):
        return scaling
    if not isinstance(scaling, Mapping):
        raise TypeError(
            "scaling must be None, a rope_scaling dict or one of "
            f"{', '.join(t.__name__ for t in SCALING_TYPES.values())}; "
            f"got {type(scaling).__name__}."
        )
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return None
    allowed = ("default", *SCALING_TYPES)
    _validation.check_choice("rope_scaling['rope_type']", kind, allowed)
    cls = SCALING_TYPES[kind]
    given = dict(scaling)
    if given.get("original_max_position_embeddings") is None and kind != "llama3":
        given["original_max_position_embeddings"] = max_position_embeddings
    values = {}
    for field in dataclasses.fields(cls):
        if given.get(field.name) is not None:
            values[field.name] = given[field.name]
        elif field.default is dataclasses.MISSING:
            raise ValueError(
                f"rope_scaling of type {kind!r} needs the key {field.name!r}; got "
                f"keys {sorted(scaling)}."
                + (
                    " Or pass max_position_embeddings= from the model config."
                    if field.name == "original_max_position_embeddings"
                    and kind != "llama3"
                    else ""
                )
            )
    return cls(**values)


def _check_factor(factor: float) -> float:
    factor = float(factor)
    if not factor >= 1.0:
        raise ValueError(f"scaling factor must be >= 1, got {factor!r}.")
    return factor


def _yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1.0 else 0.1 * mscale * math.log(factor) + 1.0


def rope_frequencies(
    dim: int,
    *,
    base: float = 10_000.0,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    max_position_embeddings: int | None = None,
) -> tuple[np.ndarray, float]:
    r"""RoPE angular frequencies and attention factor, with optional scaling.

    Unscaled (Su et al. 2021): $\omega_i = \mathrm{base}^{-2i/\mathrm{dim}}$,
    ``i = 0..dim/2-1``, where ``dim`` is the rotary dimension. ``scaling``
    changes them as the implementations the checkpoints were trained with do
    (Hugging Face ``modeling_rope_utils``; Meta's ``apply_scaling`` for llama3):

    - ``"linear"``: $\omega_i / s$.
    - ``"dynamic"``: the unscaled formula with
      $\mathrm{base}' = \mathrm{base}\,(s\,n/L - (s - 1))^{d/(d-2)}$,
      ``n = max(seq_len, L)``; unchanged while ``seq_len <= L`` or if ``seq_len``
      is None.
    - ``"yarn"``: with $c(r) = d \ln(L / (2\pi r)) / (2 \ln \mathrm{base})$,
      ``lo = floor(c(beta_fast))``, ``hi = ceil(c(beta_slow))`` (no rounding when
      ``truncate`` is False), clipped to ``[0, d - 1]``, and
      $\gamma_i = \mathrm{clip}((i - lo)/(hi - lo), 0, 1)$:
      $\omega_i (1 - \gamma_i) + (\omega_i / s)\,\gamma_i$.
      Attention factor $0.1 \ln s + 1$ unless given.
    - ``"llama3"``: with wavelength $\lambda_i = 2\pi/\omega_i$: unchanged
      if $\lambda_i < L/h$, $\omega_i/s$ if $\lambda_i > L/l$,
      else $(1 - \mu)\,\omega_i/s + \mu\,\omega_i$,
      $\mu = (L/\lambda_i - l)/(h - l)$.

    Here ``s = factor``, ``L = original_max_position_embeddings``, ``l, h`` the
    low/high frequency factors. Computed in float64 at trace time.

    Args:
      dim: rotary dimension (even, >= 2).
      base: the frequency base (``rope_theta``).
      scaling: None, a Hugging Face ``rope_scaling`` dict (``"rope_type"`` or its
        alias ``"type"``: ``"default"``, ``"linear"``, ``"dynamic"``, ``"yarn"``,
        ``"llama3"``; unknown extra keys are ignored, as Hugging Face does), or
        one of `LinearScaling`, `DynamicNTKScaling`,
        `YarnScaling`, `Llama3Scaling`.
      seq_len: static sequence length, used by ``"dynamic"`` only.
      max_position_embeddings: the model config's value; stands in for a
        ``rope_scaling`` dict's missing ``original_max_position_embeddings``
        (``"dynamic"`` and ``"yarn"``), as in Hugging Face.

    Returns:
      ``(inv_freq, attention_factor)``: float64 NumPy ``[dim // 2]`` and a float
      (1.0 except for YaRN) that multiplies cos and sin.

    Raises:
      ValueError: odd or too small ``dim``, bad ``base``, an unknown scaling
        type, a missing key, ``factor < 1``, ``"dynamic"`` with ``dim == 2``.
      TypeError: ``scaling`` of another type.

    Examples:
      >>> import flax_posenc as fp
      >>> inv_freq, factor = fp.rope_frequencies(8)
      >>> inv_freq.round(4).tolist(), factor
      ([1.0, 0.1, 0.01, 0.001], 1.0)
      >>> llama31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      ...            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
      >>> inv_freq, _ = fp.rope_frequencies(128, base=500_000.0, scaling=llama31)
      >>> inv_freq.shape
      (64,)

    References:
      Su et al., "RoFormer: Enhanced Transformer with Rotary Position
      Embedding", 2021. https://arxiv.org/abs/2104.09864
    """
    dim = _validation.check_int("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"the rotary dimension must be even, got {dim}.")
    base = _validation.check_positive("base", base)
    config = _scaling_from_config(scaling, max_position_embeddings)
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    inv_freq = base**-exponents
    if config is None:
        return inv_freq, 1.0
    factor = _check_factor(config.factor)
    if isinstance(config, LinearScaling):
        return inv_freq / factor, 1.0
    original = _validation.check_int(
        "original_max_position_embeddings",
        config.original_max_position_embeddings,
        minimum=1,
    )
    if isinstance(config, DynamicNTKScaling):
        if dim == 2:
            raise ValueError("dynamic NTK scaling needs a rotary dimension > 2.")
        if seq_len is not None:
            seq_len = _validation.check_int("seq_len", seq_len, minimum=1)
        length = original if seq_len is None else max(seq_len, original)
        grown = base * (factor * length / original - (factor - 1)) ** (dim / (dim - 2))
        return grown**-exponents, 1.0
    if isinstance(config, YarnScaling):
        return _yarn(inv_freq, dim, base, factor, original, config)
    return _llama3(inv_freq, factor, original, config), 1.0


def _yarn(inv_freq, dim, base, factor, original, config: YarnScaling):
    def correction_dim(rotations):
        return (
            dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))
        )

    low = correction_dim(config.beta_fast)
    high = correction_dim(config.beta_slow)
    if config.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as the reference: avoids a division by zero
    ramp = np.clip((np.arange(dim // 2) - low) / (high - low), 0.0, 1.0)
    blended = (inv_freq / factor) * ramp + inv_freq * (1.0 - ramp)
    if config.attention_factor is not None:
        attention = float(config.attention_factor)
    elif config.mscale and config.mscale_all_dim:
        attention = _yarn_mscale(factor, config.mscale) / _yarn_mscale(
            factor, config.mscale_all_dim
        )
    else:
        attention = _yarn_mscale(factor)
    return blended, attention


def _llama3(inv_freq, factor, original, config: Llama3Scaling):
    low, high = float(config.low_freq_factor), float(config.high_freq_factor)
    if not high > low:
        raise ValueError(
            f"llama3 scaling needs high_freq_factor > low_freq_factor; got {high} "
            f"and {low}."
        )
    wavelength = 2 * math.pi / inv_freq
    smooth = (original / wavelength - low) / (high - low)
    medium = (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
    return np.where(
        wavelength < original / high,
        inv_freq,
        np.where(wavelength > original / low, inv_freq / factor, medium),
    )


def apply_rope(
    x: ArrayLike,
    positions: ArrayLike,
    *,
    base: float = 10_000.0,
    layout: str = "halves",
    rotary_dim: int | None = None,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    max_position_embeddings: int | None = None,
) -> jax.Array:
    r"""Rotates feature pairs of ``x`` by angles proportional to their positions.

    For pair ``i`` with frequency $\omega_i$ (`rope_frequencies`) at
    position ``p``, with $\theta = p\,\omega_i$ and attention factor ``a``:

    .. math::
        (y_a, y_b) = a\,(x_a \cos\theta - x_b \sin\theta,\;
                        x_b \cos\theta + x_a \sin\theta)

    - ``layout="halves"`` pairs features ``(i, i + r/2)`` (GPT-NeoX, Hugging
      Face Llama: ``x * cos + rotate_half(x) * sin``).
    - ``layout="interleaved"`` pairs ``(2i, 2i + 1)`` (GPT-J, Meta's Llama
      reference: complex multiplication).

    The two layouts give the same result up to a fixed permutation of the
    features. Only the first ``r = rotary_dim`` features rotate; the rest pass
    through bit-identical (GPT-NeoX's ``rotary_pct``). Because rotations
    compose, $\langle \mathrm{rope}(q, m), \mathrm{rope}(k, n)\rangle$
    depends only on ``m - n``. Angles are reduced exactly (within 1e-6 for
    positions below 2**20); the rotation is done in float32 and cast back to
    ``x.dtype``.

    Args:
      x: ``[..., seq, heads, head_dim]`` queries or keys.
      positions: integer ``[..., seq]``, broadcastable against ``x.shape[:-2]``:
        per-row offsets when decoding, restarting positions in packed rows.
      base: frequency base (``rope_theta``).
      layout: ``"halves"`` or ``"interleaved"``.
      rotary_dim: number of leading features to rotate (even); default all.
      scaling: see `rope_frequencies`.
      seq_len: static sequence length for ``"dynamic"`` scaling.
      max_position_embeddings: see `rope_frequencies`.

    Returns:
      Array of ``x``'s shape and dtype.

    Raises:
      ValueError: ``x`` of rank < 3, odd or too large ``rotary_dim``, unknown
        ``layout``, positions that do not broadcast, and as
        `rope_frequencies`.
      TypeError: ``x`` not floating, ``positions`` not integer.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> q = jnp.ones((1, 3, 2, 4))  # [batch, seq, heads, head_dim]
      >>> fp.apply_rope(q, jnp.arange(3)[None]).shape
      (1, 3, 2, 4)

    References:
      Su et al., "RoFormer: Enhanced Transformer with Rotary Position
      Embedding", 2021. https://arxiv.org/abs/2104.09864
    """
    x = _validation.floating_array("x", x)
    positions = _validation.integer_array("positions", positions)
    _validation.check_choice("layout", layout, LAYOUTS)
    if x.ndim < 3:
        raise ValueError(f"x must be [..., seq, heads, head_dim], got shape {x.shape}.")
    head_dim = x.shape[-1]
    rotary_dim = head_dim if rotary_dim is None else rotary_dim
    rotary_dim = _validation.check_int("rotary_dim", rotary_dim, minimum=2)
    if rotary_dim > head_dim or rotary_dim % 2:
        raise ValueError(
            f"rotary_dim must be even and <= head_dim {head_dim}, got {rotary_dim}."
        )
    try:
        fits = np.broadcast_shapes(positions.shape, x.shape[:-2]) == x.shape[:-2]
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"positions {positions.shape} must broadcast to x's [..., seq] "
            f"{x.shape[:-2]} (x has shape {x.shape})."
        )
    inv_freq, attention_factor = rope_frequencies(
        rotary_dim,
        base=base,
        scaling=scaling,
        seq_len=seq_len,
        max_position_embeddings=max_position_embeddings,
    )
    sin, cos = _angles.sin_cos(positions, inv_freq)  # [..., seq, r/2]
    if attention_factor != 1.0:
        sin, cos = sin * attention_factor, cos * attention_factor
    # View the rotated features as pairs along a size-2 axis: [..., 2, r/2] for
    # "halves", [..., r/2, 2] for "interleaved". Then y = x * cos + swap(x) *
    # (-sin, +sin), where swap reverses that axis: no concatenation, and the
    # long axis stays contiguous, so XLA emits one vectorized elementwise loop.
    half = rotary_dim // 2
    pair_axis = -2 if layout == "halves" else -1
    sin, cos = sin[..., None, :], cos[..., None, :]  # one angle for every head
    # (Materialized along the pair axis: XLA on CPU runs a broadcast there
    # several times slower.)
    cos = jnp.stack([cos, cos], axis=pair_axis)
    signed_sin = jnp.stack([-sin, sin], axis=pair_axis)
    work = _validation.compute_dtype(x.dtype)
    pairs_shape = (2, half) if layout == "halves" else (half, 2)
    rotary = x if rotary_dim == head_dim else x[..., :rotary_dim]
    pairs = rotary.astype(work).reshape(*x.shape[:-1], *pairs_shape)
    swapped = jnp.flip(pairs, axis=pair_axis)
    rotated = (pairs * cos + swapped * signed_sin).reshape(*x.shape[:-1], rotary_dim)
    rotated = rotated.astype(x.dtype)
    if rotary_dim == head_dim:
        return rotated
    return jnp.concatenate([rotated, x[..., rotary_dim:]], axis=-1)
