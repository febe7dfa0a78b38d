"""`dot_product_attention`: argument checks, then the implementation boundary.

What goes here: everything a call checks in Python (ranks, head counts,
shapes that broadcast, dtypes, scale, softcap, dropout, the implementation's
name), the `request.Request` those checks produce, and the one private
`jax.jit` that hands it to the implementation `implementations.REGISTRY`
names. How attention is computed lives in the implementations, one file each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flax_posenc._src import validation
from flax_posenc._src.attention import blockwise, checks, implementations, masks
from flax_posenc._src.attention.checks import check_qkv, check_scale_softcap
from flax_posenc._src.attention.request import Request


def dot_product_attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    q_positions: ArrayLike | None = None,
    k_positions: ArrayLike | None = None,
    causal: bool = False,
    sliding_window: int | None = None,
    chunk_size: int | None = None,
    q_segments: ArrayLike | None = None,
    k_segments: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    bias: ArrayLike | Callable[[jax.Array, jax.Array], ArrayLike] | None = None,
    scale: float | None = None,
    softcap: float | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    implementation: str | None = None,
    block_size: int | None = None,
    sinks: ArrayLike | None = None,
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

    **Masks from positions.** ``q_positions``, ``k_positions``, ``causal``,
    ``sliding_window``, ``chunk_size`` and the segments mean what they mean in
    `attention_mask`, and combine with ``mask`` by "and". Given this way, the
    mask need never exist as a ``[q, k]`` array: ``"blockwise"`` computes each
    block's mask from the block's positions, in O(q + k) memory.

    **A bias from positions.** ``bias`` may be a callable, ``bias(q_positions,
    k_positions) -> [..., heads or 1, q, k]``, a pure function of positions
    (`alibi_bias` and `relative_position_bias` with their other arguments
    bound; `flax_posenc.linen.ALiBiBias.bias_function` and
    `flax_posenc.linen.RelativePositionBias.bias_function` give the modules'
    ones). The dense paths call it once, on ``q_positions`` and
    ``k_positions`` as given (``arange`` when not given), and add the array
    it returns. ``"blockwise"`` calls it on each pair of blocks instead, so
    the bias need never exist as a ``[q, k]`` array either: it receives the
    blocks' positions, integer ``[*batch, block_q]`` and ``[*batch,
    block_k]`` (the positions broadcast to ``batch``, the broadcast leading
    axes of ``q``, ``k``, ``v``, the positions and the segments, then cut
    along the sequence; a partial last block repeats the last position), and
    its result must broadcast to ``[*batch, heads or 1, block_q, block_k]``.
    A function of positions that broadcasts as `alibi_bias` does gives the
    same values either way.
    Learned parameters it reads (the T5 table) get their gradients on every
    path, whether the function closes over them or holds them as the
    arguments of a ``jax.tree_util.Partial`` (as ``bias_function()`` does:
    a new table then compiles nothing again).

    Three paths compute the same thing:

    - ``"blockwise"``: query and key blocks of ``block_size`` (default 512)
      with an online softmax in float32, each block's mask computed from its
      positions and segments, key blocks the mask leaves empty skipped, and
      gradients recomputed block by block (memory O(q + k), never
      ``[q, k]``). It takes the mask only as positions and segments and the
      bias only as a callable: with an array ``mask`` or ``bias``, or
      dropout, it raises. Used by default for such requests (a mask from
      positions, or a callable bias) from ``q * k >= 2**24`` (a 4096-token
      self-attention), or when ``block_size`` is given.

    - ``"jax"``: `jax.nn.dot_product_attention`, so that a GPU or TPU gets
      what jax selects there. ``causal`` and ``sliding_window`` reach it as
      its ``is_causal`` and ``local_window_size`` (not as a ``[q, k]``
      mask, so that jax may choose a kernel that skips masked blocks) when
      they are the whole mask from positions: neither position given, q and
      k of one length, no segments and no ``chunk_size``; an array ``mask``
      or ``bias`` goes beside them. Any other mask from positions reaches it
      as an array. Used by default on those backends when there is no
      ``softcap`` or dropout (jax has neither) and the three inputs share a
      dtype and head size; with any of these, or float16 on CPU (which jax
      does not compile there), ``implementation="jax"`` raises.
    - ``"xla"``: batched matmuls with the query groups folded into the query
      axis, softmax, and matmuls, written here. Used otherwise: always on CPU,
      where it runs the forward and backward passes in about 0.6x the time of
      jax's own XLA implementation (which also rejects float16 under jit
      there), and for soft-capping and dropout.

    Args:
      q: ``[..., q, heads, head_dim]`` queries.
      k: ``[..., k, kv_heads, head_dim]`` keys; ``kv_heads`` divides ``heads``.
      v: ``[..., k, kv_heads, v_dim]`` values.
      q_positions: integer ``[..., q]``; None is ``arange(q)``.
      k_positions: integer ``[..., k]``; None is ``arange(k)``. When q and k
        differ in length, ``causal``, ``sliding_window`` and ``chunk_size``
        need both.
      causal: keys at later positions are excluded.
      sliding_window: the window ``w >= 1``, or None.
      chunk_size: chunked attention's chunk (Llama 4), or None.
      q_segments: integer ``[..., q]`` segment ids (0: padding), or None.
      k_segments: integer ``[..., k]``; None takes ``q_segments``.
      mask: bool, broadcastable to ``[..., heads, q, k]``; True attends (e.g.
        `attention_mask`).
      bias: broadcastable to ``[..., heads, q, k]``, added to the logits after
        soft-capping (`alibi_bias`, `relative_position_bias`); or a callable
        ``bias(q_positions, k_positions)`` returning such an array, as above.
      scale: multiplies ``q k^T``, a finite real number; T5 uses 1, Gemma 2
        ``query_pre_attn_scalar ** -0.5``.
      softcap: the soft-capping bound (Gemma 2: 50), or None.
      dropout_rate: dropout on the attention weights (kept ones scaled by
        ``1 / (1 - rate)``); needs ``dropout_rng``.
      dropout_rng: the PRNG key for dropout; None (or a rate of 0) for none.
      implementation: ``"blockwise"``, ``"jax"``, ``"xla"``, or None to
        choose as above.
      block_size: the blockwise path's query and key block size (>= 1).
      sinks: learned attention sinks (gpt-oss), floating ``[heads]`` (or
        broadcastable to ``[..., heads]``): one logit per query head that
        joins every row's softmax denominator
        and is then dropped, $\mathrm{out}_i = \sum_j e^{z_{ij}} v_j /
        (\sum_j e^{z_{ij}} + e^{\mathrm{sink}_h})$; a row with every key
        excluded gives zeros. ``"jax"`` cannot express them; the other
        implementations (and `ring_attention`) take them. Or None.

    Returns:
      ``[..., q, heads, v_dim]`` in ``q``'s dtype.

    Raises:
      ValueError: ranks, head counts or sizes that do not fit, a mask or bias
        that does not broadcast, a non-positive softcap, a non-finite scale,
        ``dropout_rate`` outside ``[0, 1)``, an unknown implementation,
        ``"jax"`` with a softcap, dropout, mixed dtypes, unequal head sizes
        or float16 on CPU, ``"blockwise"`` with an array mask or bias
        or dropout, ``block_size`` with another implementation, ``causal``,
        a window or chunks without both positions when q and k differ in
        length, and as `attention_mask`.
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
    spec = _mask_spec(
        q,
        k,
        q_positions,
        k_positions,
        causal,
        sliding_window,
        chunk_size,
        q_segments,
        k_segments,
    )
    dropout_rate = validation.check_rate("dropout_rate", dropout_rate)
    sinks = checks.check_sinks(sinks, q.shape[-2], batch)
    if _blockwise(implementation, block_size, spec, mask, bias, dropout_rate, q, k):
        if spec is None:
            # No mask keyword: the default positions (read by a bias
            # callable, if any) and no mask.
            spec = (*_default_positions(q, k), None, None, {})
        q_pos, k_pos, q_seg, k_seg, options = spec
        if q_positions is None and k_positions is None:
            # The default arange: blockwise plans the blocks when tracing.
            q_pos = k_pos = None
        size = 512 if block_size is None else block_size
        return blockwise.blockwise_attention(
            q,
            k,
            v,
            q_pos,
            k_pos,
            q_seg,
            k_seg,
            scale=scale,
            softcap=softcap,
            bias=bias,
            block_q=size,
            block_k=size,
            sinks=sinks,
            **options,
        )
    # A mask that a structured mask expresses exactly waits for the
    # implementation: one that reads it gets it (`request` states the
    # contract), every other one gets it materialized below.
    structured = _structured(spec, q_positions, k_positions, q, k)
    if spec is not None and structured is None:
        mask = _and_positions(mask, spec)
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
    if callable(bias):
        # The dense paths evaluate a bias callable once, on all positions.
        given = _default_positions(q, k)
        bias = bias(
            given[0] if q_positions is None else jnp.asarray(q_positions),
            given[1] if k_positions is None else jnp.asarray(k_positions),
        )
    if bias is not None:
        bias = validation.floating_array("bias", bias)
        _check_broadcasts("bias", bias, logits_shape)
    scale, softcap = check_scale_softcap(scale, softcap, q.shape[-1])
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
        sinks=sinks,
    )
    if implementation is None:
        implementation = implementations.default(request)
    validation.check_choice(
        "implementation", implementation, implementations.IMPLEMENTATIONS
    )
    if structured is not None:
        if implementations.reads_structured_mask(implementation):
            causal, local_window = structured
            request = request._replace(causal=causal, local_window=local_window)
        else:
            # Default positions: a [1, q, k] mask, which broadcasts with the
            # checked mask to logits_shape.
            request = request._replace(mask=_and_positions(request.mask, spec))
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
        request.sinks,
        batch=batch,
        logits_shape=logits_shape,
        dropout=dropout,
        causal=request.causal,
        local_window=request.local_window,
        implementation=implementation,
    )


# From this many logits (q * k) up, a request the blockwise path can express
# goes to it by default: 2**24 float32 logits per head are 64 MiB.
BLOCKWISE_FROM = 2**24


def _mask_spec(
    q,
    k,
    q_positions,
    k_positions,
    causal,
    sliding_window,
    chunk_size,
    q_segments,
    k_segments,
):
    """``(q_positions, k_positions, q_segments, k_segments, options)`` of a
    mask given as positions, or None when none of its keywords is set."""
    causal = validation.check_bool("causal", causal)
    given = (q_positions, k_positions, sliding_window, chunk_size, q_segments)
    if not causal and all(value is None for value in given) and k_segments is None:
        return None
    q_len, k_len = q.shape[-3], k.shape[-3]
    if (q_positions is None or k_positions is None) and q_len != k_len:
        needs = [
            name
            for name, on in (
                ("causal", causal),
                ("sliding_window", sliding_window is not None),
                ("chunk_size", chunk_size is not None),
            )
            if on
        ]
        if needs:
            raise ValueError(
                f"{' and '.join(needs)} with {q_len} queries and {k_len} keys "
                "needs both q_positions and k_positions (which query is where "
                "among the keys); pass them."
            )
    if q_positions is None:
        q_positions = jnp.arange(q_len, dtype=jnp.int32)
    if k_positions is None:
        k_positions = jnp.arange(k_len, dtype=jnp.int32)
    options = dict(causal=causal, sliding_window=sliding_window, chunk_size=chunk_size)
    return q_positions, k_positions, q_segments, k_segments, options


def _and_positions(mask, spec):
    """``mask`` (None, or as given) and-ed with the mask from positions ``spec``.

    A non-boolean ``mask`` is returned as given, for the caller's check to
    name it.
    """
    q_pos, k_pos, q_seg, k_seg, options = spec
    from_positions = masks.attention_mask(
        q_pos, k_pos, q_segments=q_seg, k_segments=k_seg, **options
    )
    if mask is None:
        return from_positions
    mask = jnp.asarray(mask)
    return mask & from_positions if mask.dtype == jnp.bool_ else mask


def _structured(spec, q_positions, k_positions, q, k):
    """``(causal, local_window)`` (`request.Request`'s) expressing the mask
    from positions ``spec`` exactly, or None where they cannot.

    They can when the positions are the default ``arange`` (neither given),
    q and k have one length, and there are no segments and no chunks. Our
    window ``w`` keeps ``0 <= i - j < w`` (causal) or ``|i - j| < w``, which
    is ``local_window = (w - 1, 0)`` or ``(w - 1, w - 1)``: jax.nn keeps
    ``-right <= i - j <= left``. A window of at least the length excludes
    nothing and is left out.
    """
    if spec is None or q_positions is not None or k_positions is not None:
        return None
    _, _, q_segments, k_segments, options = spec
    length = q.shape[-3]
    if (
        q_segments is not None
        or k_segments is not None
        or options["chunk_size"] is not None
        or k.shape[-3] != length
    ):
        return None
    causal = options["causal"]
    window = masks.check_window(options["sliding_window"])
    if window is None or window >= length:
        return causal, None
    return causal, (window - 1, 0 if causal else window - 1)


def _blockwise(implementation, block_size, spec, mask, bias, dropout_rate, q, k):
    """Whether the request goes to the blockwise path (raises if it cannot)."""
    if implementation is not None:
        validation.check_choice(
            "implementation",
            implementation,
            ("blockwise", *implementations.IMPLEMENTATIONS),
        )
    if block_size is not None:
        validation.check_int("block_size", block_size, minimum=1)
        if implementation not in (None, "blockwise"):
            raise ValueError(
                f"block_size is the blockwise path's; implementation="
                f"{implementation!r} has no blocks. Leave one of them out."
            )
    unexpressible = [
        name
        for name, present in (
            ("an array mask (give it as positions and segments)", mask is not None),
            ("an array bias", bias is not None and not callable(bias)),
            ("dropout", dropout_rate > 0.0),
        )
        if present
    ]
    if implementation == "blockwise" or block_size is not None:
        if unexpressible:
            raise ValueError(
                "implementation='blockwise' computes masks from positions block "
                f"by block and cannot express {', '.join(unexpressible)}; use "
                "'xla' for it."
            )
        return True
    if implementation is not None or unexpressible:
        return False
    if spec is None and not callable(bias):
        return False
    return q.shape[-3] * k.shape[-3] >= BLOCKWISE_FROM


@functools.partial(
    jax.jit,
    static_argnames=(
        "batch",
        "logits_shape",
        "dropout",
        "causal",
        "local_window",
        "implementation",
    ),
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
    sinks,
    *,
    batch,
    logits_shape,
    dropout,
    causal,
    local_window,
    implementation,
):
    # The boundary: the request rebuilt from the traced arrays and the static
    # options, handed to the chosen implementation.
    request = Request(
        q,
        k,
        v,
        mask,
        bias,
        scale,
        softcap,
        rng,
        batch,
        logits_shape,
        dropout,
        causal=causal,
        local_window=local_window,
        sinks=sinks,
    )
    return implementations.REGISTRY[implementation].attend(request)


def _default_positions(q, k):
    """``(arange(q), arange(k))`` in int32: the positions when none are given."""
    return (
        jnp.arange(q.shape[-3], dtype=jnp.int32),
        jnp.arange(k.shape[-3], dtype=jnp.int32),
    )


def _check_broadcasts(name, value, shape):
    try:
        fits = np.broadcast_shapes(value.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name} {value.shape} must broadcast to [..., heads, q, k] {tuple(shape)}."
        )
