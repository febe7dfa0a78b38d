"""`dot_product_attention`: argument checks, then the implementation boundary.

What goes here: everything a call checks in Python (ranks, head counts,
shapes that broadcast, dtypes, scale, softcap, dropout, the implementation's
name), the `request.Request` those checks produce, and the one private
`jax.jit` that hands it to the implementation `implementations.REGISTRY`
names. How attention is computed lives in the implementations, one file each.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flax_posenc._src import validation
from flax_posenc._src.attention import implementations
from flax_posenc._src.attention.request import Request


def dot_product_attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    scale: float | None = None,
    softcap: float | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    implementation: str | None = None,
) -> jax.Array:
    r"""Softmax attention with grouped key/value heads, masks, biases, soft-capping.

    $$\mathrm{out} = \mathrm{softmax}(c(s\,q k^\top) + b,\ \text{masked})\,v,
    \qquad c(z) = \mathrm{softcap}\cdot\tanh(z / \mathrm{softcap})$$

    with ``s = scale`` (default ``head_dim ** -0.5``), ``c`` only when
    ``softcap`` is given (Gemma 2), ``b = bias``. Query head ``h`` reads
    key/value head ``h // (heads // kv_heads)``, as transformers groups them:
    multi-head (``kv_heads == heads``), grouped-query and multi-query
    (``kv_heads == 1``) attention, without copying keys. Logits and softmax are
    computed in at least float32; the output has ``q``'s dtype.

    A key is excluded from a query's softmax by ``mask`` False or by a bias
    of ``-inf``; the two agree. A query row with every key excluded returns
    zeros (not NaN, not an average of excluded values) and has finite
    gradients. Excluded keys must still be finite: a NaN or infinite value
    in ``v`` at an excluded key makes the outputs NaN (its weight 0 times
    NaN), and one in ``k`` makes the query gradients NaN though the outputs
    are finite. (An empty cache slot holds zeros.)

    Two paths compute the same thing:

    - ``"jax"``: `jax.nn.dot_product_attention`, so that a GPU or TPU gets
      what jax selects there. Used by default on those backends when there is
      no ``softcap`` or dropout (jax has neither) and the three inputs share a
      dtype and head size.
    - ``"xla"``: batched matmuls with the query groups folded into the query
      axis, softmax, and matmuls, written here. Used otherwise: always on CPU,
      where it runs the forward and backward passes in about 0.6x the time of
      jax's own XLA implementation (which also rejects float16 under jit
      there), and for soft-capping and dropout.

    Args:
      q: ``[..., q, heads, head_dim]`` queries.
      k: ``[..., k, kv_heads, head_dim]`` keys; ``kv_heads`` divides ``heads``.
      v: ``[..., k, kv_heads, v_dim]`` values.
      mask: bool, broadcastable to ``[..., heads, q, k]``; True attends (e.g.
        `attention_mask`).
      bias: broadcastable to ``[..., heads, q, k]``, added to the logits after
        soft-capping (`alibi_bias`, `relative_position_bias`).
      scale: multiplies ``q k^T``, a finite real number; T5 uses 1, Gemma 2
        ``query_pre_attn_scalar ** -0.5``.
      softcap: the soft-capping bound (Gemma 2: 50), or None.
      dropout_rate: dropout on the attention weights (kept ones scaled by
        ``1 / (1 - rate)``); needs ``dropout_rng``.
      dropout_rng: the PRNG key for dropout; None (or a rate of 0) for none.
      implementation: ``"jax"``, ``"xla"``, or None to choose as above.

    Returns:
      ``[..., q, heads, v_dim]`` in ``q``'s dtype.

    Raises:
      ValueError: ranks, head counts or sizes that do not fit, a mask or bias
        that does not broadcast, a non-positive softcap, a non-finite scale,
        ``dropout_rate`` outside ``[0, 1)``, an unknown implementation,
        ``"jax"`` with a softcap.
      TypeError: non-floating inputs, a non-boolean mask, a ``scale`` or
        ``softcap`` that is not a real number (complex, string).

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> q = jnp.ones((2, 5, 8, 16))  # [batch, q, heads, head_dim]
      >>> k = v = jnp.ones((2, 5, 2, 16))  # 2 kv heads: grouped-query attention
      >>> pos = jnp.arange(5)
      >>> mask = fp.attention_mask(pos, pos, causal=True)
      >>> fp.dot_product_attention(q, k, v, mask=mask).shape
      (2, 5, 8, 16)

    References:
      Vaswani et al., "Attention Is All You Need", 2017.
      https://arxiv.org/abs/1706.03762

      Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models
      from Multi-Head Checkpoints", 2023. https://arxiv.org/abs/2305.13245
    """
    q, k, v, batch = check_qkv(q, k, v)
    heads = q.shape[-2]
    logits_shape = (*batch, heads, q.shape[-3], k.shape[-3])
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(
                f"mask must be boolean (True attends), got {mask.dtype}; pass "
                "additive float values as bias= instead."
            )
        _check_broadcasts("mask", mask, logits_shape)
    if bias is not None:
        bias = validation.floating_array("bias", bias)
        _check_broadcasts("bias", bias, logits_shape)
    scale, softcap = check_scale_softcap(scale, softcap, q.shape[-1])
    dropout_rate = validation.check_rate("dropout_rate", dropout_rate)
    dropout = dropout_rate if dropout_rng is not None else 0.0
    request = Request(
        q,
        k,
        v,
        mask,
        bias,
        scale,
        softcap,
        dropout_rng if dropout else None,
        batch=batch,
        logits_shape=logits_shape,
        dropout=dropout,
    )
    if implementation is None:
        implementation = implementations.default(request)
    validation.check_choice(
        "implementation", implementation, implementations.IMPLEMENTATIONS
    )
    implementations.REGISTRY[implementation].check(request)
    if q.shape[-3] == 0 or k.shape[-3] == 0:
        # No queries, or no keys: every query attends nothing.
        out_shape = (*batch, q.shape[-3], heads, v.shape[-1])
        return jnp.zeros(out_shape, q.dtype)
    # One compiled program per call signature: called op by op (eagerly), the
    # math below would compile each of its dozens of operations on its own.
    return _attend(
        request.q,
        request.k,
        request.v,
        request.mask,
        request.bias,
        request.scale,
        request.softcap,
        request.rng,
        batch=batch,
        logits_shape=logits_shape,
        dropout=dropout,
        implementation=implementation,
    )


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


@functools.partial(
    jax.jit, static_argnames=("batch", "logits_shape", "dropout", "implementation")
)
def _attend(
    q,
    k,
    v,
    mask,
    bias,
    scale,
    softcap,
    rng,
    *,
    batch,
    logits_shape,
    dropout,
    implementation,
):
    # The boundary: the request rebuilt from the traced arrays and the static
    # options, handed to the chosen implementation.
    request = Request(
        q, k, v, mask, bias, scale, softcap, rng, batch, logits_shape, dropout
    )
    return implementations.REGISTRY[implementation].attend(request)


def _check_broadcasts(name, value, shape):
    try:
        fits = np.broadcast_shapes(value.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name} {value.shape} must broadcast to [..., heads, q, k] {tuple(shape)}."
        )
