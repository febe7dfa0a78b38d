"""Accurate sin/cos of ``position * frequency`` in float32 (private, shared).

The usual ``sin(positions * inv_freq)`` in float32 rounds the product before the
sine sees it: at position ``p`` the angle carries an absolute error of about
``p * inv_freq * 2**-24`` radians, 1.2e-4 at ``p = 4096`` and 5e-2 at ``p = 2**20``.

Here the angle is never formed. With ``f = inv_freq / (2 pi)`` the number of turns
per position, only the fractional part of ``p * f`` matters, and since ``p`` is an
integer that equals the fractional part of ``p * frac(f)``. ``frac(f)`` is split,
at trace time and in float64, into a 32-bit fixed-point head ``G`` (so that
``frac(f) = G / 2**32 + g``) and a small tail ``g < 2**-32``. Then

    turns = wrap(p * G mod 2**32) / 2**32 + p * g,

where ``p * G mod 2**32`` is exact in uint32 arithmetic (it wraps by design) and
``wrap`` reads it as a signed int32, i.e. as turns in [-1/2, 1/2). The tail term is
below ``|p| * 2**-32`` turns, so float32 carries it with negligible error. The angle
``2 pi * turns`` lies in about [-pi, pi], where float32 sin and cos are accurate to
a few ulps: the whole computation is within 5e-7 of the float64 value for every
``|p| < 2**20`` (tested), and the error grows only slowly beyond.

Negative positions work unchanged: uint32 arithmetic is arithmetic modulo 2**32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# How a rotation pairs features: (i, i + r/2) or (2i, 2i + 1).
LAYOUTS = ("halves", "interleaved")

_TWO_PI = 2.0 * np.pi


def _split_turns(inv_freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``frac(inv_freq / 2 pi)`` into a uint32 head and a float32 tail."""
    turns = np.asarray(inv_freq, dtype=np.float64) / _TWO_PI
    frac = turns - np.floor(turns)
    # frac has at most 53 significant bits, so frac * 2**64 is an exact integer.
    fixed = [int(np.ldexp(value, 64)) for value in frac.tolist()]
    head = np.array([value >> 32 for value in fixed], dtype=np.uint32)
    tail = np.ldexp(
        np.array([value & 0xFFFFFFFF for value in fixed], dtype=np.float64), -64
    ).astype(np.float32)
    return head, tail


def sin_cos(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """``sin`` and ``cos`` of ``positions[..., None] * inv_freq`` in float32.

    Args:
      positions: integer array ``[...]``; values must fit in int32.
      inv_freq: static float64 NumPy array ``[n]`` of angular frequencies (radians
        per position). It is read at trace time, never traced.

    Returns:
      ``(sin, cos)``, each float32 ``[..., n]``, within 5e-7 of float64 for
      ``|positions| < 2**20``.
    """
    head, tail = _split_turns(inv_freq)
    positions = positions.astype(jnp.int32)[..., None]
    wrapped = jax.lax.bitcast_convert_type(positions, jnp.uint32) * head
    turns = jax.lax.bitcast_convert_type(wrapped, jnp.int32).astype(jnp.float32)
    turns = turns * np.float32(2.0**-32) + positions.astype(jnp.float32) * tail
    angles = turns * np.float32(_TWO_PI)
    return jnp.sin(angles), jnp.cos(angles)


def _split_12(values: np.ndarray) -> list[np.ndarray]:
    """float64 ``values`` as four float32 parts of <= 12 significant bits each
    (the last holds the rest), summing to ``values`` within 2**-48 relative."""
    parts, rest = [], np.asarray(values, dtype=np.float64)
    for _ in range(3):
        mantissa, exponent = np.frexp(rest)
        head = np.ldexp(np.round(np.ldexp(mantissa, 12)), exponent - 12)
        parts.append(head.astype(np.float32))
        rest = rest - head
    parts.append(rest.astype(np.float32))
    return parts


def sin_cos_real(
    positions: jax.Array, inv_freq: np.ndarray, phase: np.ndarray | None = None
) -> tuple[jax.Array, jax.Array]:
    """`sin_cos` for real (fractional) positions, float32 ``[...]``, of the
    angles ``positions * inv_freq + phase`` (``phase``: static float64 ``[n]``
    radians, or None).

    The turns ``p * inv_freq / 2 pi`` are again formed modulo 1 without the
    product's rounding: ``p`` is cut into two halves of 12 significant bits
    (by masking its mantissa) and the frequency, at trace time, into parts of
    12 bits, so that every product of a half and a part is exact in float32;
    each is reduced modulo 1 (exactly) before the sum. The angle carries the
    float32 rounding of ``p`` itself and a few ulps of the sum: within 1e-6
    radians of ``p * inv_freq`` in float64 for ``|p * inv_freq| < 2**20``.
    """
    f1, f2, f3, f4 = _split_12(np.asarray(inv_freq, dtype=np.float64) / _TWO_PI)
    p = positions.astype(jnp.float32)[..., None]
    bits = jax.lax.bitcast_convert_type(p, jnp.uint32)
    p_hi = jax.lax.bitcast_convert_type(bits & np.uint32(0xFFFFF000), jnp.float32)
    p_lo = p - p_hi  # exact: the low 12 bits of the mantissa

    def frac(t):  # t - round(t): exact for a float32 t, in [-1/2, 1/2]
        return t - jnp.round(t)

    turns = frac(p_hi * f1) + frac(p_lo * f1)
    turns = frac(turns) + frac(p_hi * f2) + frac(p_lo * f2)
    turns = frac(turns) + frac(p_hi * f3) + p_lo * f3 + p * f4
    if phase is not None:
        shift = np.asarray(phase, dtype=np.float64) / _TWO_PI
        turns = frac(turns) + (shift - np.round(shift)).astype(np.float32)
    angles = frac(turns) * np.float32(_TWO_PI)
    return jnp.sin(angles), jnp.cos(angles)
