"""The boundary: what every attention implementation receives and returns.

`api.dot_product_attention` checks its arguments in Python and puts them in
one `Request`. It picks an implementation from `implementations.REGISTRY`
(by name, or by `implementations.default`), calls that implementation's
``check(request)``, then, inside one private `jax.jit` whose static options
are the request's ``batch``, ``logits_shape``, ``dropout``, ``causal`` and
``local_window`` and the implementation's name, its ``attend(request)``.

An implementation is one module with three functions:

- ``check(request) -> None``: raises ``ValueError`` (naming the
  implementation and what it lacks) for a request it cannot express. Nothing
  of a request is ever dropped: a field it cannot honour is an error.
- ``preferred(request) -> bool``: whether ``implementation=None`` may choose
  it for this request (`implementations.PREFERENCE` gives the order); False
  for every request ``check`` rejects.
- ``attend(request) -> jax.Array``: traced inside the jit; returns
  ``[*batch, q, heads, v_dim]`` in ``q``'s dtype. A query row whose every key
  is excluded (``mask`` False or a ``-inf`` bias) returns zeros with finite
  gradients. ``api`` handles zero queries or zero keys before the boundary, so
  ``attend`` sees at least one of each.

The structured mask. An implementation module that sets
``READS_STRUCTURED_MASK = True`` says that it reads the request's ``causal``
and ``local_window``; `implementations.reads_structured_mask` asks. Only such
an implementation ever gets them set, and only for a mask that they express
exactly: positions left at their default ``arange``, as many queries as keys,
no segments and no chunks. The rest of the mask (the caller's ``mask`` and
``bias``) stays in ``mask`` and ``bias``, and the implementation applies both,
and-ed. Every other implementation, and every other mask from positions, gets
the mask materialized into ``mask`` by ``api`` and sees ``causal`` False and
``local_window`` None.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax


class Request(NamedTuple):
    """One checked attention call, as every implementation receives it.

    Attributes:
      q: floating ``[..., q, heads, head_dim]``.
      k: floating ``[..., k, kv_heads, head_dim]``; ``kv_heads`` divides
        ``heads``: query head ``h`` reads key head ``h // (heads // kv_heads)``.
      v: floating ``[..., k, kv_heads, v_dim]``.
      mask: bool, broadcastable to ``logits_shape`` (True attends), or None.
      bias: floating, broadcastable to ``logits_shape``, added to the logits
        after soft-capping, or None.
      scale: multiplies ``q k^T``: a real number or a traced scalar.
      softcap: the soft-capping bound (positive, or a traced scalar), or None.
      rng: the PRNG key for dropout; None exactly when ``dropout`` is 0.
      batch: the broadcast leading axes of ``q``, ``k`` and ``v`` (static).
      logits_shape: ``(*batch, heads, q, k)`` (static).
      dropout: the dropout rate on the attention weights, in ``[0, 1)``
        (static).
      causal: query ``i`` attends only keys ``j <= i``, array indices (q and
        k of one length; static). Set only as the module docstring states.
      local_window: ``(left, right)``, both ``>= 0``: query ``i`` attends only
        keys with ``-right <= i - j <= left`` (jax.nn's
        ``local_window_size``; static), or None. Set only as the module
        docstring states.
      sinks: floating ``[*batch, heads]``, one learned logit per query head
        (and batch row) that joins each row's softmax denominator and has no
        value (gpt-oss), or None.
    """

    q: jax.Array
    k: jax.Array
    v: jax.Array
    mask: jax.Array | None
    bias: jax.Array | None
    scale: Any
    softcap: Any
    rng: jax.Array | None
    batch: tuple[int, ...]
    logits_shape: tuple[int, ...]
    dropout: float
    causal: bool = False
    local_window: tuple[int, int] | None = None
    sinks: jax.Array | None = None
