"""Glue shared by the linen modules and their NNX twins: one home for each rule.

Each twin makes its parameters (and its dropout layer) the Flax way and calls
these for everything else: the argument checks of its fields, default
positions, the attention after the cache step, the one ``deterministic``
rule (`dropout_deterministic`), the input embeddings' sum, the residual
forms, the position rows and biases. A rule that both twins follow is
written here once, so the two cannot drift apart. Helpers that take
``module`` read the fields both twins share, by name.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flax_posenc._src import (
    alibi,
    attention,
    embedding,
    normalization,
    relative,
    sinusoidal,
    validation,
)
from flax_posenc._src.rope import apply as rope_apply
from flax_posenc._src.schedule.layers import attention_schedule

# -- Modules -------------------------------------------------------------------


def accepts_keyword(module: object, name: str) -> bool:
    """Whether ``module``'s ``__call__`` takes the keyword ``name`` (or **kwargs)."""
    try:
        parameters = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


# -- Attention modules ---------------------------------------------------------


def check_heads(num_heads: int, head_dim: int, num_kv_heads: int | None) -> int:
    """The attention modules' size checks (linen and NNX); returns ``kv_heads``."""
    heads = validation.check_int("num_heads", num_heads, minimum=1)
    validation.check_int("head_dim", head_dim, minimum=1)
    kv_heads = validation.check_int(
        "num_kv_heads", heads if num_kv_heads is None else num_kv_heads, minimum=1
    )
    if heads % kv_heads:
        raise ValueError(f"num_kv_heads {kv_heads} must divide num_heads {heads}.")
    return kv_heads


def check_rotary_head_dim(rotary, head_dim: int) -> None:
    """An attention module's rotary must fit its ``head_dim`` (at construction).

    Its own ``head_dim`` (when set) must be the module's, and the features it
    rotates (its ``rotary_dim``, else the dict's ``partial_rotary_factor`` of
    the head, else all) an even number <= ``head_dim``.
    """
    if rotary is None:
        return
    own = getattr(rotary, "head_dim", None)
    if own is not None and own != head_dim:
        raise ValueError(
            f"the rotary embedding is for head_dim {own}, but this attention "
            f"module's head_dim is {head_dim}."
        )
    rope_apply.check_rotary_dim(
        head_dim, getattr(rotary, "rotary_dim", None), getattr(rotary, "scaling", None)
    )


QK_NORM_POSITIONS = ("before_rope", "after_rope")


def v_norm(value_norm, v: jax.Array) -> jax.Array:
    """Values normalized per head (Gemma 4's ``v_norm``), shape kept."""
    return _normed("v_norm", "v", v, value_norm(v))


QK_NORM_OVER = ("head", "each_head", "all_heads")


def qk_norm(query_norm, key_norm, q: jax.Array, k: jax.Array, over: str = "head"):
    """Queries and keys normalized (linen and NNX), per head (``"head"``, and
    ``"each_head"``: the norm sees ``[..., heads, head_dim]`` as for
    ``"head"``, and holds a weight for each head) or, with
    ``over="all_heads"``, over all heads' features at once (OLMo 2/3: the
    projection's output before it is split into heads); ``qk_norm`` must
    keep their shape, as a normalization does."""
    if k is None:  # a layer that reuses another's keys (Gemma 4)
        return _norm_heads(query_norm, "q", q, over), None
    return _norm_heads(query_norm, "q", q, over), _norm_heads(key_norm, "k", k, over)


def clip_qkv(limit: float | None, q, k, v):
    """``q``, ``k`` and ``v`` clipped to ``[-limit, limit]`` (OLMo 1 and
    OLMoE's ``clip_qkv``; as they are for None; ``k``, ``v`` None for a
    layer that reuses another's)."""
    if limit is None:
        return q, k, v

    def clip(a):
        return None if a is None else jnp.clip(a, -limit, limit)

    return clip(q), clip(k), clip(v)


def check_clip(limit: float | None) -> float | None:
    """``clip_qkv``: None or a positive number."""
    if limit is None:
        return None
    limit = validation.check_real("clip_qkv", limit)
    if not limit > 0:
        raise ValueError(f"clip_qkv must be positive or None, got {limit}.")
    return limit


def rotate(rotary, q, k, positions, keywords):
    """Queries and keys through an attention module's ``rotary`` (linen and
    NNX); ``k`` None (a layer reusing rotated keys: Gemma 4) rotates the
    queries alone."""
    q, rotated = rotary(q, q if k is None else k, positions=positions, **keywords)
    return q, None if k is None else rotated


class SharedKV(NamedTuple):
    """What an attention layer attended over, for the layers that reuse its
    keys and values (Gemma 4's ``num_kv_shared_layers``). Returned by an
    attention module's call with ``return_kv=True``; taken by a
    ``reuses_kv`` module's ``shared_kv=``.

    Attributes:
      keys: ``[..., kv_seq, kv_heads, head_dim]``, normed and rotated (the
        cache's contents when decoding).
      values: ``[..., kv_seq, kv_heads, head_dim]``.
      key_positions: the keys' positions ``[..., kv_seq]``.
      query_segments: the queries' segments, or None.
      key_segments: the keys' segments, or None.
      fits: the decode cache's bookkeeping (None outside decoding).
    """

    keys: Any
    values: Any
    key_positions: Any
    query_segments: Any
    key_segments: Any
    fits: Any


def check_shared_kv(module: Any, shared_kv, kv, positions, decode) -> None:
    """A call's ``shared_kv`` against the module's ``reuses_kv`` (linen and
    NNX): given exactly to a reusing module, as a `SharedKV`, not with
    cross-attention, the ring, or (decoding) default positions."""
    reuses = validation.check_bool("reuses_kv", module.reuses_kv)
    if reuses and shared_kv is None:
        raise ValueError(
            "reuses_kv=True: pass shared_kv=, what the layer it reuses returned "
            "with return_kv=True."
        )
    if not reuses and shared_kv is not None:
        raise ValueError("shared_kv= is for a module built with reuses_kv=True.")
    if shared_kv is None:
        return
    if not isinstance(shared_kv, SharedKV):
        raise TypeError(
            f"shared_kv must be a SharedKV (a call's return_kv=True), got "
            f"{type(shared_kv).__name__}."
        )
    if kv is not None or module.context_axis is not None:
        raise ValueError("reuses_kv: no cross-attention kv= and no context_axis.")
    if decode and positions is None:
        raise ValueError(
            "reuses_kv with decode=True needs positions= (the module keeps no "
            "cache of its own)."
        )


def qk_norm_features(over: str, heads: int, head_dim: int) -> int | tuple[int, int]:
    """The ``num_features`` of a QK norm of ``heads`` heads (NNX sizes it)."""
    if over == "each_head":
        return (heads, head_dim)
    return head_dim if over == "head" else heads * head_dim


def _norm_heads(norm, name: str, x: jax.Array, over: str) -> jax.Array:
    if over in ("head", "each_head"):
        return _normed("qk_norm", name, x, norm(x))
    flat = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
    return _normed("qk_norm", name, flat, norm(flat)).reshape(x.shape)


def _normed(field: str, name: str, before: jax.Array, after) -> jax.Array:
    # A norm module given to an attention module keeps its input's shape.
    if not isinstance(after, jax.Array) or after.shape != before.shape:
        shape = getattr(after, "shape", type(after).__name__)
        raise ValueError(
            f"{field} must return its input's shape (a normalization per head), "
            f"but {name} {before.shape} became {shape}."
        )
    return after


def attention_input(x: ArrayLike) -> jax.Array:
    """An attention module's input ``x``: floating, ``[..., seq, features]``."""
    x = validation.floating_array("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must be [..., seq, features], got shape {x.shape}.")
    return x


def module_positions(x, positions, segments, start, decode):
    """Positions and segments of an attention module's call (linen and NNX).

    ``positions=None`` is ``start + arange(seq)`` (``start``: the next cache
    slot, or 0). When decoding both are broadcast to ``x.shape[:-1]``: the
    cache keeps one row per batch row.
    """
    if positions is None:
        positions = start + jnp.arange(x.shape[-2], dtype=jnp.int32)
    positions = validation.integer_array("positions", positions)
    if segments is not None:
        segments = validation.integer_array("segments", segments)
    if decode:
        positions = jnp.broadcast_to(positions, x.shape[:-1])
        if segments is not None:
            segments = jnp.broadcast_to(segments, x.shape[:-1])
    return positions, segments


def rotary_length(rotary, x, positions, decode: bool, seq_len: int | None) -> dict:
    """The static ``seq_len`` an attention module hands its rotary embedding.

    The call's, else, for default positions outside decoding, the sequence
    length (their largest + 1, what dynamic NTK and LongRoPE read); else
    none, and `apply_rope` reads it from the positions.
    """
    if seq_len is None and positions is None and not decode:
        seq_len = x.shape[-2] or None
    if seq_len is None or not accepts_keyword(rotary, "seq_len"):
        return {}
    return {"seq_len": validation.check_int("seq_len", seq_len, minimum=1)}


def check_attention_choice(module: Any) -> None:
    """The attention modules' ``chunk_size``, ``implementation``,
    ``block_size`` and ``context_axis`` fields (linen and NNX), checked where
    a mistake would otherwise show only at the first call."""
    validation.check_choice(
        "qk_norm_position", module.qk_norm_position, QK_NORM_POSITIONS
    )
    validation.check_choice("qk_norm_over", module.qk_norm_over, QK_NORM_OVER)
    if module.chunk_size is not None:
        validation.check_int("chunk_size", module.chunk_size, minimum=1)
    if module.block_size is not None:
        validation.check_int("block_size", module.block_size, minimum=1)
    if module.implementation is not None:
        validation.check_choice(
            "implementation",
            module.implementation,
            ("blockwise", *attention.implementations.IMPLEMENTATIONS),
        )
    axis = module.context_axis
    if axis is None:
        return
    if not isinstance(axis, str) or not axis:
        raise TypeError(f"context_axis must be a mesh axis name (a str), got {axis!r}.")
    if module.implementation is not None or module.block_size is not None:
        raise ValueError(
            f"context_axis={axis!r} runs `ring_attention` over that mesh axis, "
            "which has its own blocks; leave implementation and block_size None."
        )
    if validation.check_rate("dropout_rate", module.dropout_rate) > 0.0:
        raise ValueError(
            f"context_axis={axis!r} runs `ring_attention`, which has no dropout "
            "on the attention weights; set dropout_rate=0."
        )


def check_context_call(module: Any, positions, decode: bool) -> None:
    """A call of an attention module with ``context_axis``: the shard's true
    positions are needed (RoPE and the masks read them), and there is no
    decode cache across a ring."""
    axis = module.context_axis
    if axis is None:
        return
    if decode:
        raise ValueError(
            f"context_axis={axis!r} shards the sequence over a mesh axis for a "
            "whole forward pass; decode=True has no ring. Decode without "
            "context_axis."
        )
    if positions is None:
        raise ValueError(
            f"context_axis={axis!r}: pass positions=, the local shard's "
            "positions in the whole sequence (after `load_balanced_order`, if "
            "used); the default arange would number each shard from 0."
        )


def cross_inputs(module: Any, x, kv, kv_positions, kv_segments, mask, decode):
    """A call's key/value input (linen and NNX): ``kv [..., kv_seq,
    features]`` for cross-attention, else None, with its positions (default
    ``arange(kv_seq)``) and segments; and the explicit ``mask``.

    Cross-attention has no rotary (a query's and a key's positions count in
    different sequences) and no decode cache (the keys do not grow); an
    explicit mask is not taken when decoding (the cache's slots move) or on
    the ring.
    """
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(f"mask must be boolean, got {mask.dtype}.")
        if decode:
            raise ValueError(
                "mask= is not taken with decode=True (the cache's slots move); "
                "mark padding with segments= (0) instead."
            )
        if module.context_axis is not None:
            raise ValueError("context_axis: ring_attention takes no mask array.")
    if kv is None:
        for name, value in (
            ("kv_positions", kv_positions),
            ("kv_segments", kv_segments),
        ):
            if value is not None:
                raise ValueError(f"{name} is for cross-attention: pass kv= too.")
        return None, None, None, mask
    kv = attention_input(kv)
    if module.rotary is not None:
        raise ValueError(
            "cross-attention (kv=) takes no rotary: queries and keys count their "
            "positions in different sequences; build the module with rotary=None."
        )
    if decode:
        raise ValueError(
            "cross-attention (kv=) has no decode cache: call it with decode=False "
            "at every step (its keys are the encoder's, they do not grow)."
        )
    if kv_positions is None:
        kv_positions = jnp.arange(kv.shape[-2], dtype=jnp.int32)
    kv_positions = validation.integer_array("kv_positions", kv_positions)
    if kv_segments is not None:
        kv_segments = validation.integer_array("kv_segments", kv_segments)
    return kv, kv_positions, kv_segments, mask


def attend(
    module: Any,
    q,
    k,
    v,
    q_positions,
    k_positions,
    q_segments,
    k_segments,
    *,
    deterministic: bool | None,
    draw_dropout_rng: Callable[[], jax.Array],
    fits=None,
    default_positions: bool = False,
    sinks=None,
    mask=None,
) -> jax.Array:
    """The attention modules' attention over their keys (linen and NNX).

    ``module``: either twin; its fields ``position_bias``, ``causal``,
    ``sliding_window``, ``chunk_size``, ``scale``, ``softcap``,
    ``dropout_rate``, ``deterministic``, ``implementation``, ``block_size``
    and ``context_axis`` are read. The bias is the ``position_bias``'s
    ``bias_function()`` (a function of positions, evaluated per block on the
    blockwise path), else its ``position_bias(q_positions, k_positions)``;
    dropout on the weights draws its key from ``draw_dropout_rng()`` unless
    `dropout_deterministic` of the field and the call's ``deterministic``
    says not to; then `dot_product_attention` with the mask as positions and
    segments, or, with ``context_axis``,
    `ring_attention` over that mesh axis (the module is called on the local
    shards, inside the user's ``shard_map``). ``fits``: `write_cache`'s
    flag; False gives NaN outputs (an overflowing cache, under ``jit`` and
    unchecked). ``default_positions``: the positions are the module default
    ``arange`` (none given, no decoding), so `dot_product_attention` gets
    none, and the blockwise path plans its blocks when tracing. ``sinks``:
    the module's ``[heads]`` sink logits, or None. ``mask``: an explicit
    boolean mask broadcastable to ``[..., heads, q, k]``, ANDed with the one
    from positions (it makes `dot_product_attention` build ``[q, k]``
    arrays: the dense path).
    """
    bias = None
    if module.position_bias is not None:
        # A bias module's function of positions, when it has one (ALiBi, T5):
        # the blockwise path and the ring evaluate it block by block.
        function = getattr(module.position_bias, "bias_function", None)
        if function is not None:
            bias = function()
        elif module.context_axis is None:
            bias = module.position_bias(q_positions, k_positions)
        else:
            raise ValueError(
                "context_axis: ring_attention takes a bias as a function of "
                "positions, and this position_bias has no bias_function()."
            )
    options = dict(
        causal=module.causal,
        sliding_window=module.sliding_window,
        chunk_size=module.chunk_size,
        scale=module.scale,
        softcap=module.softcap,
        sinks=sinks,
    )
    if module.context_axis is not None:
        return attention.ring.ring_attention(
            q,
            k,
            v,
            axis_name=module.context_axis,
            q_positions=q_positions,
            k_positions=k_positions,
            q_segments=q_segments,
            k_segments=k_segments,
            bias=bias,
            **options,
        )
    dropout_rate = validation.check_rate("dropout_rate", module.dropout_rate)
    dropout_rng = None
    if dropout_rate > 0.0:
        if not dropout_deterministic(module.deterministic, deterministic):
            dropout_rng = draw_dropout_rng()
    # The mask goes as positions and segments: no [q, k] array is built by
    # the module, and a long sequence can take the blockwise path.
    if default_positions:
        q_positions = k_positions = None
    out = attention.api.dot_product_attention(
        q,
        k,
        v,
        q_positions=q_positions,
        k_positions=k_positions,
        q_segments=q_segments,
        k_segments=k_segments,
        bias=bias,
        dropout_rate=dropout_rate,
        dropout_rng=dropout_rng,
        implementation=module.implementation,
        block_size=module.block_size,
        mask=mask,
        **options,
    )
    if fits is not None:
        out = jnp.where(fits, out, jnp.asarray(jnp.nan, out.dtype))
    return out


def check_query_scale(query_scale):
    """An attention module's ``query_scale``: None or a callable."""
    if query_scale is not None and not callable(query_scale):
        raise TypeError(
            "query_scale must be a function of positions, query_scale(positions) "
            f"-> [..., seq], or None; got {type(query_scale).__name__}."
        )
    return query_scale


def scale_queries(query_scale, q, positions):
    """``q [..., seq, heads, dim]`` times ``query_scale(positions)`` (float32,
    ``[..., seq]``), in ``q``'s dtype; ``q`` as it is for None."""
    if check_query_scale(query_scale) is None:
        return q
    factor = jnp.asarray(query_scale(positions), jnp.float32)
    if factor.shape != positions.shape:
        raise ValueError(
            f"query_scale returned {factor.shape} for positions {positions.shape}; "
            "it must return one factor per position."
        )
    return (q * factor[..., None, None]).astype(q.dtype)


# -- Multi-head latent attention ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class LatentSizes:
    """MLA's checked sizes; ``head_dim`` is the q/k head (nope + rope)."""

    head_dim: int


def check_latent(heads, q_lora_rank, kv_lora_rank, nope, rope, v_dim) -> LatentSizes:
    """The latent attention modules' size checks (linen and NNX)."""
    validation.check_int("num_heads", heads, minimum=1)
    if q_lora_rank is not None:
        validation.check_int("q_lora_rank", q_lora_rank, minimum=1)
    validation.check_int("kv_lora_rank", kv_lora_rank, minimum=1)
    validation.check_int("qk_nope_head_dim", nope, minimum=0)
    validation.check_int("qk_rope_head_dim", rope, minimum=2)
    validation.check_int("v_head_dim", v_dim, minimum=1)
    return LatentSizes(head_dim=nope + rope)


# An attention module's decode cache, in `attention.cache.write`'s names:
# the keys, the values, their positions and segments, the next slot.
CACHE_NAMES = (
    "cached_key",
    "cached_value",
    "cached_positions",
    "cached_segments",
    "cache_index",
)
# The latent attention modules' names for the same: the normalized latent as
# the one key head, the rotated shared key as the one value head.
LATENT_CACHE_NAMES = (
    "cached_latent",
    "cached_rope_key",
    "cached_positions",
    "cached_segments",
    "cache_index",
)


def cache_step(module: Any, cache: Mapping[str, Any], names, k, v, positions, segments):
    """One decode step of an attention module's cache (linen and NNX).

    ``cache``: the module's cache arrays by its ``names`` (`CACHE_NAMES` or
    `LATENT_CACHE_NAMES`); the step writes ``k`` and ``v`` at the next slots
    (`attention.cache.write` with the module's ``sliding_window``,
    ``chunk_size`` and ``checked``). Returns the new arrays by ``names`` and
    what to attend over: ``(k, v, k_positions, q_segments, k_segments,
    fits)``.
    """
    written, *attend_over = attention.cache.write(
        {ours: cache[name] for ours, name in zip(CACHE_NAMES, names, strict=True)},
        k,
        v,
        positions,
        segments,
        sliding_window=module.sliding_window,
        chunk_size=module.chunk_size,
        checked=module.checked,
    )
    new = {name: written[ours] for ours, name in zip(CACHE_NAMES, names, strict=True)}
    return new, tuple(attend_over)


def split_latent(compressed, kv_lora_rank: int):
    """``kv_a_proj``'s output ``[..., seq, kv_lora_rank + rope]`` as the latent
    ``[..., seq, kv_lora_rank]`` and the shared key ``[..., seq, 1, rope]``."""
    latent = compressed[..., :kv_lora_rank]
    return latent, compressed[..., None, kv_lora_rank:]


def latent_keys_values(kv, k_rot, nope: int):
    """Each head's key ``[k_nope, k_rot]`` and value from ``kv_b_proj``'s
    ``[..., L, heads, nope + v]`` and the shared rotated key ``[..., L, 1, rope]``."""
    k_nope, v = kv[..., :nope], kv[..., nope:]
    shared = jnp.broadcast_to(
        k_rot.astype(k_nope.dtype), (*k_nope.shape[:-1], k_rot.shape[-1])
    )
    return jnp.concatenate([k_nope, shared], axis=-1), v


def cache_shape(module: Any, input_shape, dtype):
    """``(batch, slots, dtype)`` of an attention module's cache for inputs
    ``[batch..., max_length, features]`` (linen and NNX)."""
    shape = tuple(input_shape)
    if len(shape) < 2:
        raise ValueError(
            "init_cache needs input_shape [batch..., max_length, features], "
            f"got {shape}."
        )
    for size in shape:
        validation.check_int("init_cache input_shape", size, minimum=1)
    *batch, max_length, _ = shape
    slots = attention.cache.cache_length(
        max_length, module.sliding_window, module.chunk_size
    )
    if dtype is None:
        dtype = module.param_dtype if module.dtype is None else module.dtype
    return tuple(batch), slots, validation.floating_dtype("init_cache dtype", dtype)


# Fields of MultiHeadAttention.from_hf_config's overrides: what a config does
# not say. Everything else comes from the layer's schedule.
FROM_CONFIG_OVERRIDES = (
    "dtype",
    "param_dtype",
    "kernel_init",
    "bias_init",
    "sinks_init",
    "implementation",
    "block_size",
    "context_axis",
    "deterministic",
    "checked",
    "dropout_rate",
)


def attention_from_config(
    config: Mapping[str, Any],
    layer: int,
    overrides: Mapping[str, Any],
    *,
    rotary: Callable[..., Any],
    rms_norm: Callable[..., Any],
    layer_norm: Callable[..., Any] | None = None,
    alibi: Callable[..., Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Layer ``layer``'s `LayerAttention` and the fields of its attention
    module, from a ``config.json`` (linen and NNX): the schedule's entry,
    its rotary built by ``rotary(**fields)``, its ALiBi biases (Falcon-RW)
    by ``alibi(num_heads, **fields)`` and its norms by
    ``rms_norm(epsilon=, use_scale=, unit_offset=, param_axes=)`` or
    ``layer_norm(epsilon=, param_axes=)`` (the twin's RMSNorm or LayerNorm
    class, or a partial of it), then ``overrides``, which may set only
    `FROM_CONFIG_OVERRIDES`."""
    unknown = sorted(set(overrides) - set(FROM_CONFIG_OVERRIDES))
    if unknown:
        raise TypeError(
            f"from_hf_config takes the config's fields from the config; {unknown} "
            f"cannot be set here (it takes {list(FROM_CONFIG_OVERRIDES)}). Build "
            "the module with its constructor to choose them."
        )
    schedule = attention_schedule(config)
    index = validation.check_int("layer", layer, minimum=0)
    if index >= len(schedule):
        raise ValueError(
            f"layer {index} is out of range: the config has {len(schedule)} layers."
        )
    spec = schedule[index]
    if spec.latent is not None:
        return spec, _latent_fields(spec, overrides, rotary)

    def norm(kind: str | None, over: str = "head"):
        if kind is None:
            return None
        # Each head's weights: the heads' axis unnamed (the query and key norms
        # are one factory, with heads and kv_heads), so replicated.
        axes = {"head": ("kv",), "each_head": (None, "kv"), "all_heads": (None,)}[over]
        if kind == "layer_each_head":  # the weight [heads, head_dim], no bias
            return layer_norm(
                epsilon=spec.norm_eps,
                use_bias=False,
                feature_axes=(-2, -1),
                param_axes=axes,
            )
        if kind == "layer":
            return layer_norm(epsilon=spec.norm_eps, param_axes=axes)
        return rms_norm(
            epsilon=spec.norm_eps,
            use_scale=kind != "rms_unscaled",
            unit_offset=kind == "rms_unit_offset",
            param_axes=axes,
        )

    over = {"rms_all_heads": "all_heads", "layer_each_head": "each_head"}.get(
        spec.qk_norm, "head"
    )
    fields = {
        "num_heads": spec.num_heads,
        "head_dim": spec.head_dim,
        "num_kv_heads": spec.num_kv_heads,
        "qkv_bias": spec.qkv_bias,
        "out_bias": spec.out_bias,
        "qk_norm": norm(spec.qk_norm, over),
        "qk_norm_position": spec.qk_norm_position,
        "qk_norm_over": over,
        "v_norm": norm(spec.v_norm),
        "rotary": None if spec.rope is None else rotary(**spec.rope.module_fields),
        "causal": spec.causal,
        "sliding_window": spec.sliding_window,
        "chunk_size": spec.chunk_size,
        "softcap": spec.softcap,
        "position_bias": (
            None
            if spec.alibi is None
            else alibi(spec.num_heads, **spec.alibi.module_fields)
        ),
        "scale": spec.scale,
        "sinks": spec.sinks,
        "query_scale": spec.query_scale,
        "dropout_rate": spec.dropout_rate,
        "k_eq_v": spec.k_eq_v,
        "reuses_kv": spec.kv_shared_from is not None,
        "clip_qkv": spec.clip_qkv,
    }
    return spec, {**fields, **overrides}


def _latent_fields(spec, overrides, rotary) -> dict[str, Any]:
    """A latent attention module's fields from its `LayerAttention`."""
    if "sinks_init" in overrides:
        raise TypeError(
            "a multi-head latent attention layer takes no ['sinks_init'] (it has "
            "no sinks)."
        )
    dims = spec.latent
    fields = {
        "num_heads": spec.num_heads,
        "q_lora_rank": dims.q_lora_rank,
        "kv_lora_rank": dims.kv_lora_rank,
        "qk_nope_head_dim": dims.qk_nope_head_dim,
        "qk_rope_head_dim": dims.qk_rope_head_dim,
        "v_head_dim": dims.v_head_dim,
        "qkv_bias": spec.qkv_bias,
        "out_bias": spec.out_bias,
        "norm_eps": spec.norm_eps,
        "rotary": None if spec.rope is None else rotary(**spec.rope.module_fields),
        "causal": spec.causal,
        "sliding_window": spec.sliding_window,
        "chunk_size": spec.chunk_size,
        "scale": spec.scale,
        "dropout_rate": spec.dropout_rate,
    }
    return {**fields, **overrides}


# -- Dropout -------------------------------------------------------------------


def dropout_deterministic(field: bool | None, call: bool | None) -> bool:
    """The modules' ``deterministic``: the call's value wins over the field's.

    The one rule of every module with dropout, in both twins. Only asked for
    when there is dropout, so ``None`` in both is an error.
    """
    deterministic = call if call is not None else field
    if deterministic is not None:
        which = "the call's deterministic" if call is not None else "deterministic"
        deterministic = validation.check_bool(which, deterministic)
    if deterministic is None:
        raise ValueError(
            "dropout_rate > 0 needs `deterministic`: set the module field or "
            "pass deterministic=... in the call."
        )
    return deterministic


# -- Input embeddings ----------------------------------------------------------


def token_type_ids(ids, token_types, has_table: bool) -> jax.Array | None:
    """The input modules' token types: all 0 by default with a table, else none.

    Raises ValueError for token types given to a module without a table.
    """
    if not has_table:
        if token_types is not None:
            raise ValueError(
                "token_types given, but the module has no token-type table: set "
                "num_token_types."
            )
        return None
    if token_types is None:
        return jnp.zeros(jnp.shape(ids), jnp.int32)
    return jnp.asarray(token_types)


def input_embeddings(module: Any, ids, positions, token_types) -> jax.Array:
    """The input modules' embeddings before dropout (linen and NNX).

    ``module``: either twin; its ``token``, ``position``, ``token_type``
    (None: no table), ``combine`` and ``norm`` are read. `combine_embeddings`
    of the token rows, the position module's rows (of the tokens and
    ``positions``) and the token-type rows (`token_type_ids`), then ``norm``.
    """
    tokens = module.token(ids)
    pos = None
    if module.position is not None:
        pos = module.position(tokens, positions=positions)
    token_types = token_type_ids(ids, token_types, module.token_type is not None)
    types = None if token_types is None else module.token_type(token_types)
    y = combine_embeddings(tokens, pos, module.combine, types)
    if module.norm is not None:
        y = module.norm(y)
    return y


def combine_embeddings(
    tokens: jax.Array,
    positions: jax.Array | None,
    combine: str,
    token_types: jax.Array | None = None,
) -> jax.Array:
    """The input embeddings' sum (or concatenation), for the modules' twins.

    ``tokens + positions`` (``"add"``) or ``[tokens, positions]``
    (``"concat"``), then ``+ token_types`` (added to the token features, so
    ``"add"`` only when positions are present).
    """
    validation.check_choice("combine", combine, embedding.COMBINES)
    y = tokens
    if positions is not None:
        positions = positions.astype(tokens.dtype)
        if combine == "add":
            if positions.shape[-1] != tokens.shape[-1]:
                raise ValueError(
                    f"combine='add' needs position features equal to features "
                    f"{tokens.shape[-1]}; the position module gave "
                    f"{positions.shape[-1]}. Use combine='concat' or match the sizes."
                )
            y = tokens + positions
        else:
            positions = jnp.broadcast_to(
                positions, (*tokens.shape[:-1], positions.shape[-1])
            )
            y = jnp.concatenate([tokens, positions], axis=-1)
    if token_types is not None:
        if combine == "concat" and positions is not None:
            raise ValueError(
                "token types are added to the token features; they need combine='add'."
            )
        y = y + token_types.astype(y.dtype)
    return y


# -- Normalization -------------------------------------------------------------


def rms_scale_init(scale_init: Callable | None, use_scale: bool, unit_offset: bool):
    """The RMSNorm modules' scale initializer (linen and NNX): ``scale_init``,
    default ones, or zeros with ``unit_offset`` (which needs ``use_scale``)."""
    if unit_offset and not use_scale:
        raise ValueError("unit_offset=True needs use_scale=True.")
    return scale_init or (
        jax.nn.initializers.zeros if unit_offset else jax.nn.initializers.ones
    )


# -- Residual blocks -----------------------------------------------------------


def call_sublayer(
    module: Any,
    inputs: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deterministic: bool | None,
) -> tuple[Any, list[Any]]:
    """A residual sublayer's call (linen and NNX twins): ``(out, extras)``.

    ``deterministic`` is passed on when set and ``module.__call__`` takes it;
    a tuple output ``(out, *extras)`` is split.
    """
    call_kwargs = dict(kwargs)
    if deterministic is not None and accepts_keyword(module, "deterministic"):
        call_kwargs["deterministic"] = deterministic
    out = module(inputs, *args, **call_kwargs)
    extras = []
    if isinstance(out, tuple):
        out, *extras = out
    if not isinstance(out, (jax.Array, np.ndarray)):
        raise TypeError(
            f"a residual sublayer must return an array (or a tuple (out, *extras)), "
            f"got {type(out).__name__}."
        )
    if out.shape != inputs.shape:
        raise ValueError(
            f"a residual sublayer must return its input's shape {inputs.shape} "
            f"(it is added to it), got {out.shape}."
        )
    return out, extras


def residual_sum(
    x: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deterministic: bool | None,
    dropout: Callable[[Any], Any],
    norm_position: str,
    sublayer: Any,
    norm: Callable[[Any], Any],
    *,
    post_norm: Callable[[Any], Any] | None = None,
    parallel: Any = None,
    parallel_norm: Callable[[Any], Any] | None = None,
    output_scale: str | None = None,
    scale: Any = None,
) -> Any:
    """The residual modules' output ``y``, or ``(y, *extras)`` (linen and NNX).

    The five forms; each sublayer is called by `call_sublayer` (with
    ``args``, ``kwargs`` and ``deterministic``), and its output goes through
    ``dropout`` (the twin's) before the sum. ``parallel_norm=None`` in the
    parallel form shares ``norm`` (GPT-J). The extras are ``sublayer``'s,
    then ``parallel``'s. ``output_scale="layer_scale"`` multiplies what is
    added to ``x`` by ``scale`` (a vector over features); ``"layer_scalar"``
    multiplies the result (one number).
    """
    extras: list[Any] = []

    def run(module, inputs):
        out, more = call_sublayer(module, inputs, args, kwargs, deterministic)
        extras.extend(more)
        return dropout(out)

    def branch(out):
        if output_scale != "layer_scale":
            return out
        return (out * scale.astype(out.dtype)).astype(out.dtype)

    if norm_position == "post":
        y = norm(x + branch(run(sublayer, x)))
    elif norm_position == "pre":
        y = x + branch(run(sublayer, norm(x)))
    elif norm_position == "sandwich":
        y = x + branch(post_norm(run(sublayer, norm(x))))
    elif norm_position == "reordered":
        y = x + branch(norm(run(sublayer, x)))
    else:
        normed = norm(x)
        second = normed if parallel_norm is None else parallel_norm(x)
        y = x + branch(run(sublayer, normed) + run(parallel, second))
    if output_scale == "layer_scalar":
        y = (y * scale.astype(y.dtype)).astype(y.dtype)
    return (y, *extras) if extras else y


def check_output_scale(output_scale: str | None, init: float) -> float:
    """The residual modules' ``output_scale`` and its initial value."""
    if output_scale is not None:
        validation.check_choice(
            "output_scale", output_scale, normalization.OUTPUT_SCALES
        )
    return validation.check_real("output_scale_init", init)


def output_scale_shape(output_scale: str, features: int) -> tuple[int, ...]:
    """The shape of a residual's learned output scale: LayerScale's
    ``[features]``, Gemma 4's ``layer_scalar`` ``[1]``."""
    return (features,) if output_scale == "layer_scale" else (1,)


def output_scale_axes(output_scale: str) -> tuple[str | None]:
    """Its logical axis names."""
    return ("embed",) if output_scale == "layer_scale" else (None,)


def check_residual(
    norm_position: str,
    parallel: object | None,
    post_norm: object | None = None,
    parallel_norm: object | None = None,
    share_norm: bool = False,
) -> str:
    """The residual modules' form check (linen and NNX twins).

    A module or option the form does not use is an error, not ignored.
    """
    validation.check_choice(
        "norm_position", norm_position, normalization.NORM_POSITIONS
    )
    share_norm = validation.check_bool("share_norm", share_norm)
    if (norm_position == "parallel") != (parallel is not None):
        raise ValueError(
            "norm_position='parallel' needs the second sublayer `parallel`, "
            "and `parallel` needs norm_position='parallel'; got "
            f"norm_position={norm_position!r}, parallel="
            f"{type(parallel).__name__ if parallel is not None else None}."
        )
    unused = []
    if post_norm is not None and norm_position != "sandwich":
        unused.append("post_norm (used by norm_position='sandwich')")
    if parallel_norm is not None and (norm_position != "parallel" or share_norm):
        unused.append(
            "parallel_norm (used by norm_position='parallel' without share_norm)"
        )
    if share_norm and norm_position != "parallel":
        unused.append("share_norm (used by norm_position='parallel')")
    if unused:
        raise ValueError(
            f"norm_position={norm_position!r} does not use {'; '.join(unused)}: "
            "leave it out."
        )
    return norm_position


# -- Absolute position embeddings ----------------------------------------------


def sinusoidal_rows(module: Any, x, positions) -> jax.Array:
    """The sinusoidal modules' rows (linen and NNX): `sinusoidal_encoding` of
    ``positions`` (default ``arange(seq)``) with ``module``'s fields
    (``features``: default ``x``'s)."""
    x = jnp.asarray(x)
    positions = validation.default_positions(x, positions)
    return sinusoidal.sinusoidal_encoding(
        positions,
        x.shape[-1] if module.features is None else module.features,
        layout=module.layout,
        base=module.base,
        spacing=module.spacing,
        min_timescale=module.min_timescale,
        max_timescale=module.max_timescale,
        dtype=module.dtype,
    )


def learned_rows(table, x, positions, max_length: int, checked: bool, dtype):
    """The learned position modules' rows ``table[positions]`` (linen and NNX).

    Default positions longer than ``max_length`` are an error; explicit ones
    out of range follow `embedding_lookup`.
    """
    x = jnp.asarray(x)
    if positions is None and x.ndim >= 2 and x.shape[-2] > max_length:
        raise ValueError(
            f"sequence length {x.shape[-2]} exceeds max_length "
            f"{max_length} of LearnedPositionEmbedding."
        )
    positions = validation.default_positions(x, positions)
    rows = embedding.embedding_lookup(table, positions, checked=checked)
    return rows.astype(dtype)


# -- Attention biases ----------------------------------------------------------


def alibi_bias(fields, q_positions, k_positions) -> jax.Array:
    """The ALiBi modules' biases (linen and NNX); ``fields``: the module or
    its `AlibiFunction` (``num_heads``, ``dtype``, ``form``, ``slope_dtype``,
    ``scale``); ``k_positions`` default: same."""
    k_positions = q_positions if k_positions is None else k_positions
    return alibi.alibi_bias(
        q_positions,
        k_positions,
        fields.num_heads,
        dtype=fields.dtype,
        form=fields.form,
        slope_dtype=fields.slope_dtype,
        scale=fields.scale,
    )


def relative_bias(
    table, q_positions, k_positions, bidirectional, max_distance, dtype
) -> jax.Array:
    """The relative-bias modules' biases from their ``table`` (linen and NNX);
    ``k_positions`` default: same."""
    k_positions = q_positions if k_positions is None else k_positions
    bias = relative.relative_position_bias(
        table,
        q_positions,
        k_positions,
        bidirectional=bidirectional,
        max_distance=max_distance,
    )
    return bias.astype(dtype)


def check_bias_module(
    num_heads, num_buckets, max_distance, bidirectional, dtype, param_dtype
):
    """The relative-bias modules' checks (linen and NNX); returns the dtype."""
    validation.check_int("num_heads", num_heads, minimum=1)
    relative.check_buckets(num_buckets, max_distance, bidirectional=bidirectional)
    return validation.module_dtypes(dtype, param_dtype)


# The bias modules' ``bias_function()``: a `jax.tree_util.Partial` of one of
# these. A Partial is a pytree: its arguments (the T5 table) are leaves, which
# a jit takes as traced arguments (their gradients flow, a new table compiles
# nothing again); its function, one of these frozen dataclasses holding the
# static options, is compared by value, so equal modules give equal pytrees.


@dataclasses.dataclass(frozen=True)
class AlibiFunction:
    """`alibi_bias` of the ALiBi modules, as a function of positions only."""

    num_heads: int
    dtype: Any
    form: str = "distance"
    slope_dtype: Any = None
    scale: float = 1.0

    def __call__(self, q_positions, k_positions=None) -> jax.Array:
        return alibi_bias(self, q_positions, k_positions)


@dataclasses.dataclass(frozen=True)
class RelativeFunction:
    """`relative_bias` of the relative-bias modules, given their table first."""

    bidirectional: bool
    max_distance: int
    dtype: Any

    def __call__(self, table, q_positions, k_positions=None) -> jax.Array:
        return relative_bias(
            table,
            q_positions,
            k_positions,
            self.bidirectional,
            self.max_distance,
            self.dtype,
        )


def alibi_bias_function(fields) -> jax.tree_util.Partial:
    """The ALiBi modules' ``bias_function()`` (linen and NNX), of the
    module's fields."""
    alibi.alibi_slopes(fields.num_heads)  # checked here, not at the first call
    dtype = validation.floating_dtype("dtype", fields.dtype)
    form, slope_dtype, scale = alibi.check_alibi_form(
        fields.form, fields.slope_dtype, fields.scale
    )
    return jax.tree_util.Partial(
        AlibiFunction(fields.num_heads, dtype, form, slope_dtype, scale)
    )


def relative_bias_function(
    table, bidirectional, max_distance, dtype
) -> jax.tree_util.Partial:
    """The relative-bias modules' ``bias_function()`` (linen and NNX): the
    function of positions holding ``table``."""
    function = RelativeFunction(bool(bidirectional), max_distance, dtype)
    return jax.tree_util.Partial(function, table)


# -- Rotary embeddings ---------------------------------------------------------


def rotary_keywords(rotary, x, positions, decode: bool, seq_len: int | None) -> dict:
    """The keywords an attention module hands its rotary embedding.

    `rotary_length`'s ``seq_len``, and ``text=True`` for a rotary that takes
    that keyword (this package's): the module's ``[..., seq]`` positions are
    text, every M-RoPE axis equal.
    """
    keywords = rotary_length(rotary, x, positions, decode, seq_len)
    if accepts_keyword(rotary, "text"):
        keywords["text"] = True
    return keywords


class FrozenRopeDict(Mapping):
    """An immutable, hashable rope dict (lists become tuples).

    What the modules keep of a ``rope_scaling`` / ``rope_parameters`` dict, so
    that a module (linen field, NNX static attribute, a static ``jit``
    argument) can hold it. Reads like the dict it was made from.
    """

    def __init__(self, config: Mapping[str, Any]):
        def frozen(value):
            if isinstance(value, Mapping):
                return FrozenRopeDict(value)
            if isinstance(value, list | tuple):
                return tuple(frozen(v) for v in value)
            return value

        self._items = {key: frozen(value) for key, value in config.items()}

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __hash__(self):
        return hash(tuple(sorted(self._items.items(), key=lambda kv: kv[0])))

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self):
        return f"FrozenRopeDict({self._items!r})"


def freeze_scaling(scaling):
    """``scaling`` with a dict made a `FrozenRopeDict`; anything else as is."""
    return FrozenRopeDict(scaling) if isinstance(scaling, Mapping) else scaling
