"""Attention through `jax.nn.dot_product_attention` (implementation ``"jax"``).

What goes here: the request translated to jax.nn's call, so that a GPU or TPU
gets what jax selects there. jax.nn has no soft-capping and no dropout:
``check`` rejects requests with either. ``preferred`` chooses it by default
only off CPU, where it is not the slower path, and when the inputs share a
dtype and a head size.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flax_posenc._src.attention.request import Request


def check(request: Request) -> None:
    """Raises ``ValueError`` for soft-capping or dropout, which jax.nn lacks."""
    if request.softcap is not None or request.dropout:
        raise ValueError(
            "implementation='jax' has no soft-capping or dropout; use 'xla'."
        )


def preferred(request: Request) -> bool:
    """Off CPU, without soft-capping or dropout, one dtype and one head size."""
    # On CPU jax.nn's XLA implementation is the slower one (a 5-D grouped
    # einsum; benchmarks/attention.py measures it) and rejects float16 under
    # jit: the "xla" implementation runs there.
    q, k, v = request.q, request.k, request.v
    if request.dropout != 0.0:
        return False
    if request.softcap is not None or not (q.dtype == k.dtype == v.dtype):
        return False
    if q.shape[-1] != v.shape[-1]:
        return False
    return jax.default_backend() != "cpu"


def _flat_batch(x, batch):
    """``x`` broadcast to ``batch`` leading axes, then those folded into one."""
    x = jnp.broadcast_to(x, (*batch, *x.shape[-3:]))
    return x.reshape(-1, *x.shape[-3:])


def attend(request: Request) -> jax.Array:
    """`jax.nn.dot_product_attention` over the request's batch folded into one."""
    q, k, v = request.q, request.k, request.v
    mask, bias, scale = request.mask, request.bias, request.scale
    batch, logits_shape = request.batch, request.logits_shape
    size = math.prod(batch)

    def flat_logits(t):
        # [..., heads or 1, q, k] -> [B, heads or 1, q, k]
        n = t.shape[-3] if t.ndim >= 3 else 1
        t = jnp.broadcast_to(t, (*batch, n, *logits_shape[-2:]))
        return t.reshape(size, n, *logits_shape[-2:])

    # jax.nn fills masked logits with a large finite number, which outranks a
    # -inf bias: a key is excluded here by either, and a row with nothing
    # left attends everywhere (finite) before its output is zeroed.
    keep = mask
    if bias is not None:
        bias = bias.astype(jnp.float32)
        finite = bias != -jnp.inf
        keep = finite if keep is None else keep & finite
        bias = jnp.where(keep, bias, 0.0)
    anything = None
    if keep is not None:
        anything = jnp.any(keep, axis=-1, keepdims=True)  # [..., heads or 1, q, 1]
        keep = keep | ~anything
    out = jax.nn.dot_product_attention(
        _flat_batch(q, batch),
        _flat_batch(k, batch),
        _flat_batch(v, batch),
        bias=None if bias is None else flat_logits(bias),
        mask=None if keep is None else flat_logits(keep),
        scale=scale,
    )
    out = out.reshape(*batch, *out.shape[-3:])
    if anything is not None:
        anything = jnp.broadcast_to(anything, (*logits_shape[:-1], 1))
        anything = jnp.moveaxis(anything[..., 0], -1, -2)[..., None]
        out = jnp.where(anything, out, jnp.zeros((), out.dtype))
    return out
