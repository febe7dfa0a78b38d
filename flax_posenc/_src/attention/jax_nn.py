"""Attention through `jax.nn.dot_product_attention` (implementation ``"jax"``).

What goes here: the request translated to jax.nn's call, so that a GPU or TPU
gets what jax selects there. A causal or sliding-window mask from default
positions arrives as the request's ``causal`` and ``local_window`` (this
module reads them: ``READS_STRUCTURED_MASK``) and goes to jax.nn as
``is_causal`` and ``local_window_size``, not as a ``[q, k]`` array, so that
jax may pick a kernel that skips the masked blocks. jax.nn has no
soft-capping and no dropout, takes one dtype for ``q``, ``k`` and ``v`` and
one head size for all three, and on CPU does not compile float16 under jit:
``check`` rejects each of these by name. ``preferred`` chooses it by default
only off CPU, where it is not the slower path, for requests ``check``
accepts.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flax_posenc._src.attention.request import Request

# `request` states the contract: this implementation reads the request's
# ``causal`` and ``local_window``.
READS_STRUCTURED_MASK = True


def _cannot(request: Request) -> list[str]:
    """What of the request jax.nn cannot do, each named (empty: it can)."""
    q, k, v = request.q, request.k, request.v
    cannot = []
    if request.softcap is not None:
        cannot.append("soft-capping")
    if request.dropout:
        cannot.append("dropout")
    if request.sinks is not None:
        cannot.append("attention sinks")
    if not q.dtype == k.dtype == v.dtype:
        cannot.append(
            f"mixed dtypes (q {q.dtype}, k {k.dtype}, v {v.dtype}; it takes one)"
        )
    if q.shape[-1] != v.shape[-1]:
        cannot.append(
            f"a v_dim {v.shape[-1]} unequal to the q/k head_dim {q.shape[-1]}"
        )
    float16 = any(x.dtype == jnp.float16 for x in (q, k, v))
    if float16 and jax.default_backend() == "cpu":
        # Its float16 dot (precision F16_F16_F32) does not compile on CPU.
        cannot.append("float16 on CPU (under jit)")
    if (request.causal or request.local_window is not None) and (
        q.shape[-3] != k.shape[-3]
    ):
        cannot.append("a structured mask with q and k of different lengths")
    return cannot


def check(request: Request) -> None:
    """Raises ``ValueError`` naming what of the request jax.nn cannot do."""
    cannot = _cannot(request)
    if cannot:
        raise ValueError(
            "implementation='jax' (jax.nn.dot_product_attention) cannot do "
            f"{', '.join(cannot)}; use 'xla'."
        )


def preferred(request: Request) -> bool:
    """Off CPU, for every request `check` accepts."""
    # On CPU jax.nn's XLA implementation is the slower one (a 5-D grouped
    # einsum; benchmarks/attention.py measures it) and rejects float16 under
    # jit: the "xla" implementation runs there.
    return jax.default_backend() != "cpu" and not _cannot(request)


def _structured_mask(length, causal, local_window):
    """bool ``[q, k]`` of ``causal`` and ``local_window`` as jax.nn defines them."""
    i = jnp.arange(length)[:, None]
    j = jnp.arange(length)[None, :]
    keep = jnp.ones((length, length), bool)
    if causal:
        keep &= j <= i
    if local_window is not None:
        left, right = local_window
        keep &= (i - j <= left) & (i - j >= -right)
    return keep


def _flat_batch(x, batch):
    """``x`` broadcast to ``batch`` leading axes, then those folded into one."""
    x = jnp.broadcast_to(x, (*batch, *x.shape[-3:]))
    return x.reshape(-1, *x.shape[-3:])


def attend(request: Request) -> jax.Array:
    """`jax.nn.dot_product_attention` over the request's batch folded into one."""
    q, k, v = request.q, request.k, request.v
    mask, bias, scale = request.mask, request.bias, request.scale
    causal, local_window = request.causal, request.local_window
    batch, logits_shape = request.batch, request.logits_shape
    size = math.prod(batch)

    def flat_logits(t):
        # [..., heads or 1, q, k] -> [B, heads or 1, q, k]
        n = t.shape[-3] if t.ndim >= 3 else 1
        t = jnp.broadcast_to(t, (*batch, n, *logits_shape[-2:]))
        return t.reshape(size, n, *logits_shape[-2:])

    # jax.nn fills masked logits with a large finite number, which outranks a
    # -inf bias: a key is excluded here by either, and a row with nothing
    # left (counting the structured mask, which jax.nn and-s with ``mask``)
    # attends everywhere it allows (itself at least: finite) before its
    # output is zeroed.
    keep = mask
    if bias is not None:
        bias = bias.astype(jnp.float32)
        finite = bias != -jnp.inf
        keep = finite if keep is None else keep & finite
        bias = jnp.where(keep, bias, 0.0)
    anything = None
    if keep is not None:
        rows = keep
        if causal or local_window is not None:
            rows = keep & _structured_mask(q.shape[-3], causal, local_window)
        anything = jnp.any(rows, axis=-1, keepdims=True)  # [..., heads or 1, q, 1]
        keep = keep | ~anything
    out = jax.nn.dot_product_attention(
        _flat_batch(q, batch),
        _flat_batch(k, batch),
        _flat_batch(v, batch),
        bias=None if bias is None else flat_logits(bias),
        mask=None if keep is None else flat_logits(keep),
        scale=scale,
        is_causal=causal,
        local_window_size=local_window,
    )
    out = out.reshape(*batch, *out.shape[-3:])
    if anything is not None:
        anything = jnp.broadcast_to(anything, (*logits_shape[:-1], 1))
        anything = jnp.moveaxis(anything[..., 0], -1, -2)[..., None]
        out = jnp.where(anything, out, jnp.zeros((), out.dtype))
    return out
