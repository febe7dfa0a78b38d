"""Independent float64 NumPy references, written from the papers' formulas."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def f64(a) -> np.ndarray:
    """A float64 NumPy copy of ``a``; JAX arrays (bf16/f16 too) go via float32."""
    if isinstance(a, jax.Array):
        a = a.astype(jnp.float32)
    return np.asarray(a, dtype=np.float64)


def paper_frequencies(dim: int, base: float = 10_000.0) -> np.ndarray:
    """Vaswani et al. 2017: omega_i = 1 / base^(2i / dim)."""
    return np.array([1.0 / base ** (2 * i / dim) for i in range(dim // 2)])


def tensor2tensor_frequencies(
    dim: int, min_timescale: float = 1.0, max_timescale: float = 1e4
) -> np.ndarray:
    """tensor2tensor get_timing_signal_1d: min * exp(-i * log(max/min) / (n-1))."""
    n = dim // 2
    increment = math.log(max_timescale / min_timescale) / max(n - 1, 1)
    return np.array([min_timescale * math.exp(-i * increment) for i in range(n)])


def sinusoidal(positions, dim: int, omega: np.ndarray, layout: str) -> np.ndarray:
    """PE[p, 2i] = sin(p w_i), PE[p, 2i+1] = cos(p w_i) (or sin/cos halves)."""
    p = np.asarray(positions, dtype=np.float64)[..., None]
    angles = p * omega
    out = np.zeros((*p.shape[:-1], dim))
    n = len(omega)
    if layout == "interleaved":
        out[..., 0 : 2 * n : 2] = np.sin(angles)
        out[..., 1 : 2 * n : 2] = np.cos(angles)
    else:
        out[..., :n] = np.sin(angles)
        out[..., n : 2 * n] = np.cos(angles)
    return out


def paper_sinusoidal(
    positions, dim: int, *, layout: str = "interleaved", base: float = 10_000.0
) -> np.ndarray:
    """The paper's table: :func:`sinusoidal` at :func:`paper_frequencies`."""
    return sinusoidal(positions, dim, paper_frequencies(dim, base), layout)


def layer_norm(x, scale=None, bias=None, eps=1e-6, axis=-1) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * scale + bias, in float64."""
    x = f64(x)
    mean = x.mean(axis=axis, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axis, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if scale is not None:
        y = y * f64(scale)
    if bias is not None:
        y = y + f64(bias)
    return y


def layer_norm_input_grad(x, scale, upstream, eps=1e-6) -> np.ndarray:
    """d/dx of sum(upstream * layer_norm(x) * scale) over the last axis.

    With xhat = (x - mean) * r and g = upstream * scale:
    dx = r * (g - mean(g) - xhat * mean(g * xhat)).
    """
    x = f64(x)
    mean = x.mean(-1, keepdims=True)
    r = 1.0 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mean) * r
    g = f64(upstream) * f64(scale)
    return r * (
        g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True)
    )


def rms_norm(x, scale=None, eps=1e-6, unit_offset=False, axis=-1) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * scale (or * (1 + scale))."""
    x = f64(x)
    y = x / np.sqrt((x**2).mean(axis=axis, keepdims=True) + eps)
    if scale is not None:
        s = f64(scale)
        y = y * (1.0 + s if unit_offset else s)
    return y


def rms_norm_input_grad(x, scale, upstream, eps=1e-6) -> np.ndarray:
    """d/dx of sum(upstream * rms_norm(x) * scale): r * (g - y * mean(g * y))."""
    x = f64(x)
    r = 1.0 / np.sqrt((x**2).mean(-1, keepdims=True) + eps)
    y = x * r
    g = f64(upstream) * f64(scale)
    return r * (g - y * (g * y).mean(-1, keepdims=True))
