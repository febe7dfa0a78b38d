"""Independent float64 NumPy references, written from the papers' formulas."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np


def normal(seed: int, shape) -> jax.Array:
    """Standard normal float32 test inputs, drawn by NumPy.

    ``jax.random.normal`` outside ``jit`` compiles a program per shape (about
    half a second each on CPU); inputs need no JAX randomness.
    """
    draws = np.random.default_rng(seed).standard_normal(shape)
    return jnp.asarray(draws, jnp.float32)


def f64(a) -> np.ndarray:
    """A float64 NumPy copy of ``a`` (bf16 and f16 too, exactly, on the host)."""
    return np.asarray(a).astype(np.float64)


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


# ------------------------------------------------------------------------ RoPE
# Written from Hugging Face modeling_rope_utils (default, linear, dynamic, yarn),
# Meta's llama3 apply_scaling and the RoFormer / GPT-NeoX / GPT-J rotations.


def rope_dynamic_base(
    dim: int, base: float, factor: float, original: int, seq_len: int | None
) -> float:
    """HF dynamic NTK: base * (s n / L - (s - 1)) ** (d / (d - 2)), n = max(seq, L)."""
    n = original if seq_len is None else max(seq_len, original)
    return base * ((factor * n / original) - (factor - 1)) ** (dim / (dim - 2))


def yarn_correction_range(
    dim: int,
    base: float,
    original: int,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    truncate: bool = True,
) -> tuple[float, float]:
    """HF find_correction_range: (low, high) pair indices of the YaRN ramp."""

    def find_correction_dim(num_rotations):
        return (dim * math.log(original / (num_rotations * 2 * math.pi))) / (
            2 * math.log(base)
        )

    low = find_correction_dim(beta_fast)
    high = find_correction_dim(beta_slow)
    if truncate:
        low = math.floor(low)
        high = math.ceil(high)
    return max(low, 0), min(high, dim - 1)


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """0.1 * mscale * ln(scale) + 1 (1 for scale <= 1)."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def yarn_frequencies(
    dim: int,
    base: float,
    factor: float,
    original: int,
    *,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    attention_factor: float | None = None,
    mscale: float | None = None,
    mscale_all_dim: float | None = None,
    truncate: bool = True,
) -> tuple[np.ndarray, float]:
    """HF _compute_yarn_parameters in float64: (inv_freq, attention_factor)."""
    pos_freqs = np.array([base ** (2 * i / dim) for i in range(dim // 2)])
    inv_freq_extrapolation = 1.0 / pos_freqs
    inv_freq_interpolation = 1.0 / (factor * pos_freqs)
    low, high = yarn_correction_range(
        dim, base, original, beta_fast, beta_slow, truncate
    )
    if low == high:
        high += 0.001
    ramp = np.array(
        [min(max((i - low) / (high - low), 0.0), 1.0) for i in range(dim // 2)]
    )
    extrapolation_factor = 1.0 - ramp
    inv_freq = (
        inv_freq_interpolation * (1.0 - extrapolation_factor)
        + inv_freq_extrapolation * extrapolation_factor
    )
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = yarn_get_mscale(factor, mscale) / yarn_get_mscale(
                factor, mscale_all_dim
            )
        else:
            attention_factor = yarn_get_mscale(factor)
    return inv_freq, float(attention_factor)


def llama3_frequencies(
    dim: int,
    base: float,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original: int,
) -> np.ndarray:
    """Meta's apply_scaling (loop form) on the default frequencies, in float64."""
    low_freq_wavelen = original / low_freq_factor
    high_freq_wavelen = original / high_freq_factor
    new_freqs = []
    for freq in paper_frequencies(dim, base):
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            new_freqs.append(freq)
        elif wavelen > low_freq_wavelen:
            new_freqs.append(freq / factor)
        else:
            smooth = (original / wavelen - low_freq_factor) / (
                high_freq_factor - low_freq_factor
            )
            new_freqs.append((1 - smooth) * freq / factor + smooth * freq)
    return np.array(new_freqs)


def rope(
    x,
    positions,
    inv_freq: np.ndarray,
    layout: str = "halves",
    rotary_dim: int | None = None,
    attention_factor: float = 1.0,
) -> np.ndarray:
    """RoPE in float64 on ``x [..., seq, heads, d]`` at ``positions [..., seq]``.

    The angles are ``positions * inv_freq``; see `rope_from_angles`. Features
    from ``rotary_dim = 2 len(inv_freq)`` on pass through.
    """
    if rotary_dim is not None and rotary_dim != 2 * len(inv_freq):
        raise ValueError(f"rotary_dim {rotary_dim} needs {rotary_dim // 2} frequencies")
    theta = np.asarray(positions, dtype=np.float64)[..., None] * inv_freq
    return rope_from_angles(x, theta, layout, attention_factor)


def longrope_frequencies(
    dim: int,
    base: float,
    short_factor,
    long_factor,
    original: int,
    *,
    seq_len: int | None,
    factor: float | None = None,
    max_position_embeddings: int | None = None,
    attention_factor: float | None = None,
) -> tuple[np.ndarray, float]:
    """HF _compute_longrope_parameters in float64: (inv_freq, attention_factor).

    1 / (ext_i * base^(2i/d)), ext = long_factor if seq_len > original else
    short_factor; attention sqrt(1 + ln(factor) / ln(original)).
    """
    if factor is None:
        factor = max_position_embeddings / original
    if attention_factor is None:
        if factor <= 1.0:
            attention_factor = 1.0
        else:
            attention_factor = math.sqrt(1 + math.log(factor) / math.log(original))
    ext = long_factor if seq_len and seq_len > original else short_factor
    inv_freq = np.array(
        [1.0 / (ext[i] * base ** (2 * i / dim)) for i in range(dim // 2)]
    )
    return inv_freq, float(attention_factor)


def proportional_frequencies(
    head_dim: int, base: float, partial: float, factor: float = 1.0
) -> np.ndarray:
    """HF _compute_proportional_rope_parameters (Gemma 4) in float64.

    The first int(partial * head_dim // 2) frequencies are base^(-2i/head_dim)
    (denominator: the whole head), the rest 0; all divided by factor.
    """
    rope_angles = int(partial * head_dim // 2)
    rotated = [1.0 / base ** (2 * i / head_dim) for i in range(rope_angles)]
    return np.array(rotated + [0.0] * (head_dim // 2 - rope_angles)) / factor


def mrope_angles(positions, inv_freq, mrope_section, interleaved=False) -> np.ndarray:
    """Angles [..., seq, d/2] of Qwen2-VL / Qwen3-VL multimodal RoPE, float64.

    ``positions [..., seq, 3]``. Written the way transformers does it: the
    angles of every axis are computed whole, then Qwen2-VL splits the
    frequencies into contiguous chunks of ``mrope_section`` taking chunk i from
    axis i; Qwen3-VL starts from axis 0 and overwrites, for axis a = 1, 2, the
    frequencies a, a + 3, ... below 3 * mrope_section[a].
    """
    p = np.moveaxis(np.asarray(positions, dtype=np.float64), -1, 0)
    freqs = p[..., None] * inv_freq  # [3, ..., seq, d/2]
    if not interleaved:
        bounds = np.cumsum([0, *mrope_section])
        chunks = [
            freqs[i, ..., bounds[i] : bounds[i + 1]] for i in range(len(mrope_section))
        ]
        return np.concatenate(chunks, axis=-1)
    out = freqs[0].copy()
    for axis, offset in enumerate((1, 2), start=1):
        length = mrope_section[axis] * 3
        out[..., offset:length:3] = freqs[axis, ..., offset:length:3]
    return out


def rope_from_angles(
    x, theta, layout: str = "halves", attention_factor: float = 1.0
) -> np.ndarray:
    """RoPE in float64 with angles ``theta [..., seq, r/2]``; r features rotate.

    halves (HF Llama / GPT-NeoX): ``x * cat(cos, cos) + rotate_half(x) * cat(sin,
    sin)`` with ``rotate_half(x) = cat(-x2, x1)``. interleaved (GPT-J / Meta):
    ``x * repeat(cos) + rotate_every_two(x) * repeat(sin)`` with
    ``rotate_every_two(x) = (-x1, x0, -x3, x2, ...)``. Features from r on pass
    through.
    """
    x = f64(x)
    r = 2 * theta.shape[-1]
    cos = np.cos(theta)[..., None, :] * attention_factor
    sin = np.sin(theta)[..., None, :] * attention_factor
    rot = x[..., :r]
    if layout == "halves":
        cos, sin = np.concatenate([cos, cos], -1), np.concatenate([sin, sin], -1)
        rotated = np.concatenate([-rot[..., r // 2 :], rot[..., : r // 2]], -1)
    else:
        cos, sin = np.repeat(cos, 2, axis=-1), np.repeat(sin, 2, axis=-1)
        rotated = np.stack([-rot[..., 1::2], rot[..., 0::2]], -1).reshape(rot.shape)
    out = rot * cos + rotated * sin
    tail = np.broadcast_to(x[..., r:], (*out.shape[:-1], x.shape[-1] - r))
    return np.concatenate([out, tail], axis=-1)


def deepseek_rope(x, positions, inv_freq) -> np.ndarray:
    """transformers' DeepSeek-V3 rotation: interleaved pairs, output de-interleaved.

    ``cat([x_even cos - x_odd sin, x_odd cos + x_even sin])``.
    """
    x = f64(x)
    theta = np.asarray(positions, dtype=np.float64)[..., None, None] * inv_freq
    even, odd = x[..., 0::2], x[..., 1::2]
    cos, sin = np.cos(theta), np.sin(theta)
    return np.concatenate([even * cos - odd * sin, odd * cos + even * sin], -1)


# ----------------------------------------------------------------------- ALiBi


def alibi_get_slopes(n: int) -> list[float]:
    """The paper's get_slopes (ofirpress/attention_with_linear_biases)."""

    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return (
        get_slopes_power_of_2(closest_power_of_2)
        + alibi_get_slopes(2 * closest_power_of_2)[0::2][: n - closest_power_of_2]
    )


def alibi_bias(q_positions, k_positions, slopes) -> np.ndarray:
    """b[..., h, i, j] = -m_h |q_i - k_j| in float64."""
    q = np.asarray(q_positions, dtype=np.float64)
    k = np.asarray(k_positions, dtype=np.float64)
    distance = np.abs(q[..., :, None] - k[..., None, :])
    m = np.asarray(slopes, dtype=np.float64)
    return -m[:, None, None] * distance[..., None, :, :]


# ------------------------------------------------------------------ T5 buckets


def t5_relative_position_bucket(
    relative_position, bidirectional=True, num_buckets=32, max_distance=128
) -> np.ndarray:
    """Mesh TensorFlow / HF T5 _relative_position_bucket, logs in float64."""
    n = -np.asarray(relative_position, dtype=np.int64)
    ret = np.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int64) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    safe = np.maximum(n, 1).astype(np.float64)
    val_if_large = max_exact + np.trunc(
        np.log(safe / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).astype(np.int64)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    return ret + np.where(is_small, n, val_if_large)


# ------------------------------------------------------------------- attention


def attention_mask(
    q_positions,
    k_positions,
    causal=False,
    window=None,
    q_segments=None,
    k_segments=None,
) -> np.ndarray:
    """[..., q, k] bool from the definitions, one (query, key) pair at a time."""
    qp, kp = np.asarray(q_positions), np.asarray(k_positions)
    lead = np.broadcast_shapes(qp.shape[:-1], kp.shape[:-1])
    qp = np.broadcast_to(qp, (*lead, qp.shape[-1]))
    kp = np.broadcast_to(kp, (*lead, kp.shape[-1]))
    if q_segments is not None:
        k_segments = q_segments if k_segments is None else k_segments
        qs = np.broadcast_to(np.asarray(q_segments), qp.shape)
        ks = np.broadcast_to(np.asarray(k_segments), kp.shape)
    out = np.zeros((*lead, qp.shape[-1], kp.shape[-1]), dtype=bool)
    for *b, i, j in np.ndindex(out.shape):
        b = tuple(b)
        qi, kj = int(qp[b][i]), int(kp[b][j])
        ok = not (causal and kj > qi)
        if window is not None:
            ok = ok and (qi - kj if causal else abs(qi - kj)) < window
        if q_segments is not None:
            ok = ok and qs[b][i] == ks[b][j] and qs[b][i] != 0
        out[(*b, i, j)] = ok
    return out


def attention(
    q, k, v, mask=None, bias=None, scale=None, softcap=None, sinks=None
) -> np.ndarray:
    """Softmax attention in float64 from the formula, one query head at a time.

    q [..., q, H, d], k [..., k, K, d], v [..., k, K, e]; head h reads kv head
    h // (H // K). mask/bias broadcast to [..., H, q, k]. A key is excluded
    by mask False or a bias of -inf; rows with nothing to attend are zeros.
    sinks [H]: head h's logit joins every row's denominator, without a value.
    """
    q, k, v = f64(q), f64(k), f64(v)
    heads, kv_heads, d = q.shape[-2], k.shape[-2], q.shape[-1]
    group = heads // kv_heads
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    outs = []
    for h in range(heads):
        kh = h // group
        logits = np.einsum("...id,...jd->...ij", q[..., h, :], k[..., kh, :]) * scale
        if softcap is not None:
            logits = softcap * np.tanh(logits / softcap)
        if bias is not None:
            b = np.broadcast_to(
                f64(bias), (*logits.shape[:-2], heads, *logits.shape[-2:])
            )
            logits = logits + b[..., h, :, :]
        if mask is not None:
            m = np.broadcast_to(
                np.asarray(mask), (*logits.shape[:-2], heads, *logits.shape[-2:])
            )[..., h, :, :]
            logits = np.where(m, logits, -np.inf)
        if sinks is not None:
            sink = float(sinks[h])
            high = np.maximum(logits.max(-1, keepdims=True), sink)
            weights = np.exp(logits - high)
            weights = weights / (weights.sum(-1, keepdims=True) + np.exp(sink - high))
            outs.append(np.einsum("...ij,...je->...ie", weights, v[..., kh, :]))
            continue
        any_key = (logits > -np.inf).any(-1, keepdims=True)
        logits = np.where(any_key, logits, 0.0)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights = weights / weights.sum(-1, keepdims=True)
        weights = np.where(any_key, weights, 0.0)
        outs.append(np.einsum("...ij,...je->...ie", weights, v[..., kh, :]))
    return np.stack(outs, axis=-2)


def falcon_rw_alibi(num_heads, k_positions, head_dim):
    """transformers 5.24's build_alibi_tensor (falcon/modeling_falcon.py) and
    its SDPA path's division, in NumPy: slopes as powers of a float32 base in
    float32, then ``slopes.bfloat16() * positions`` (both rounded to
    bfloat16, the product rounded to bfloat16), then / sqrt(head_dim)."""
    bf16 = ml_dtypes.bfloat16
    closest = 2 ** math.floor(math.log2(num_heads))
    base = np.float32(2 ** (-(2 ** -(math.log2(closest) - 3))))
    slopes = [base ** np.int32(k) for k in range(1, closest + 1)]
    if closest != num_heads:
        extra = np.float32(2 ** (-(2 ** -(math.log2(2 * closest) - 3))))
        count = min(closest, num_heads - closest)
        slopes += [extra ** np.int32(k) for k in range(1, 1 + 2 * count, 2)]
    slopes = np.asarray(slopes, np.float32).astype(bf16).astype(np.float32)
    keys = np.asarray(k_positions).astype(bf16).astype(np.float32)
    product = (slopes[:, None] * keys[None]).astype(bf16).astype(np.float32)
    return product / np.float32(math.sqrt(head_dim))
