"""The argument checks every attention kernel shares (dense, blockwise, ring)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flax_posenc._src import validation


def check_qkv(q, k, v):
    """``q``, ``k``, ``v`` as floating arrays whose heads and sizes fit, and
    the broadcast leading axes ``batch``: returns ``(q, k, v, batch)``."""
    q = validation.floating_array("q", q)
    k = validation.floating_array("k", k)
    v = validation.floating_array("v", v)
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim < 3:
            raise ValueError(f"{name} must be [..., seq, heads, dim], got {x.shape}.")
    heads, head_dim = q.shape[-2:]
    kv_heads = k.shape[-2]
    if k.shape[-1] != head_dim:
        raise ValueError(
            f"q and k must share head_dim; got q {q.shape} and k {k.shape}."
        )
    if v.shape[-3:-1] != k.shape[-3:-1]:
        raise ValueError(
            f"v must have k's length and kv_heads; got k {k.shape} and v {v.shape}."
        )
    if heads % kv_heads:
        raise ValueError(
            f"kv_heads {kv_heads} must divide the query heads {heads} (q {q.shape}, "
            f"k {k.shape})."
        )
    try:
        batch = np.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    except ValueError:
        raise ValueError(
            f"the leading axes of q {q.shape}, k {k.shape} and v {v.shape} must "
            "broadcast."
        ) from None
    return q, k, v, batch


def check_scale_softcap(scale, softcap, head_dim):
    """``scale`` (default ``head_dim ** -0.5``) and ``softcap`` (positive, or
    None), each a real number or a traced scalar."""
    if scale is None:
        scale = head_dim**-0.5
    else:
        scale = validation.check_real_or_traced("scale", scale)
    if softcap is not None:
        softcap = validation.check_real_or_traced("softcap", softcap)
        if not isinstance(softcap, jax.Array):
            softcap = validation.check_positive("softcap", softcap)
    return scale, softcap


def check_sinks(sinks, heads, batch):
    """``sinks`` (None, or floating ``[..., heads]`` whose leading axes
    broadcast to ``batch``) broadcast to ``[*batch, heads]``."""
    if sinks is None:
        return None
    sinks = validation.floating_array("sinks", sinks)
    shape = (*batch, heads)
    try:
        fits = sinks.ndim >= 1 and np.broadcast_shapes(sinks.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits or sinks.shape[-1] != heads:
        raise ValueError(
            f"sinks must be [heads] = ({heads},), one logit per query head, or "
            f"broadcast to [..., heads] = {shape}; got shape {sinks.shape}."
        )
    return jnp.broadcast_to(sinks, shape)
