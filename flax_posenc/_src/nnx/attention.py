"""NNX twin of MultiHeadAttention, with its KV cache as NNX state."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import twins, validation
from flax_posenc._src.nnx import (
    attention_bias,
    latent_attention,
    normalization,
    parameters,
    rotary,
)

KERNEL_INIT = nnx.initializers.lecun_normal()
BIAS_INIT = nnx.initializers.zeros_init()
_CACHE_NAMES = twins.CACHE_NAMES


class MultiHeadAttention(nnx.Module):
    """Self-attention whose positions act through RoPE, biases and masks (NNX).

    The twin of `flax_posenc.linen.MultiHeadAttention`: the same projections
    (``query``, ``key``, ``value``, ``out``, kernels ``[in, heads, head_dim]``
    and ``[heads, head_dim, out]``), masks from positions, grouped heads,
    rotary or bias. Decoding: `init_cache` creates the cache as ``nnx.Cache``
    variables with the linen twin's names; then ``model(x, decode=True)``
    writes ``x``'s keys at the next slots and attends over the cache. With
    ``sliding_window=w`` the cache is a ring buffer of ``min(w, max_length)``
    slots (each keeps its position, so masks stay exact) that takes any
    number of steps; with ``chunk_size=c`` one of ``min(c, max_length)``
    slots, one chunk. ``implementation``, ``block_size`` and
    ``context_axis`` (ring attention inside ``shard_map``, with the shard's
    true ``positions``) mean what the linen twin's fields mean.

    Nothing is clamped in a full cache (no ``sliding_window`` or
    ``chunk_size``).
    ``decode=True`` without a cache, an input whose batch differs from the
    cache's, and more tokens than the cache has slots left raise
    ``ValueError`` when that is known: always for shapes, and for the slots
    left in eager calls. Under ``nnx.jit`` the slots left are traced: with
    ``checked=True`` an overflow is a ``checkify`` error (wrap the step in
    ``jax.experimental.checkify.checkify``), without it the step returns NaN
    and leaves the cached keys as they were (as `flax_posenc.embedding_lookup`
    does with ids out of range).

    Logical axis names: ``query/kernel``: ``("embed", "heads", "kv")``,
    ``key/kernel``: ``("embed", "kv_heads", "kv")``, ``value/kernel``:
    ``("embed", "kv_heads", "kv")``, ``out/kernel``: ``("heads", "kv", "embed")``;
    with ``qkv_bias``, ``query/bias``: ``("heads", "kv")``, ``key/bias``:
    ``("kv_heads", "kv")``, ``value/bias``: ``("kv_heads", "kv")``; with
    ``out_bias``, ``out/bias``: ``("embed",)``; with ``sinks``, ``sinks``:
    ``("heads",)``. A ``qk_norm``'s are its own.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import MultiHeadAttention, RotaryEmbedding
      >>> attn = MultiHeadAttention(4, 8, 32, num_kv_heads=2, causal=True,
      ...                           rotary=RotaryEmbedding(), rngs=nnx.Rngs(0))
      >>> attn(jnp.ones((2, 6, 32))).shape
      (2, 6, 32)
      >>> attn.init_cache((2, 16, 32))
      >>> attn(jnp.ones((2, 3, 32)), decode=True).shape  # prefill 3 tokens
      (2, 3, 32)

    Args:
      num_heads: query heads.
      head_dim: features per head.
      in_features: the input's features.
      num_kv_heads: key/value heads, dividing ``num_heads``; default
        ``num_heads``.
      out_features: output features; default ``in_features``.
      qkv_bias: biases on the q/k/v projections (default off, as Llama).
      out_bias: a bias on the output projection.
      qk_norm: a norm factory called as ``qk_norm(head_dim, rngs=rngs)``
        (e.g. `RMSNorm`) for ``query_norm`` and ``key_norm``, or None.
      qk_norm_position: ``"before_rope"`` (Gemma 3, Qwen3) or
        ``"after_rope"`` (Llama 4's L2 norm): where ``qk_norm`` acts.
      qk_norm_over: ``"head"`` (each head's ``head_dim`` features),
        ``"each_head"`` (the same, with a weight for each head: the norms
        are ``qk_norm((num_heads, head_dim))`` and ``qk_norm((num_kv_heads,
        head_dim))``, e.g. ``functools.partial(LayerNorm, use_bias=False,
        feature_axes=(-2, -1), param_axes=(None, "kv"))``: StableLM 2,
        Command R+) or ``"all_heads"`` (all heads' features at once, OLMo
        2/3: the norms are then ``qk_norm(num_heads * head_dim)`` and
        ``qk_norm(num_kv_heads * head_dim)``).
      v_norm: a norm factory called as ``v_norm(head_dim, rngs=rngs)`` for
        ``value_norm`` (Gemma 4: ``functools.partial(RMSNorm,
        use_scale=False)``), or None.
      rotary: a `RotaryEmbedding`, or None.
      position_bias: a module called as ``position_bias(q_positions,
        k_positions)`` (`ALiBiBias`, `RelativePositionBias`; pass one
        instance to every layer to share it), or None.
      causal: mask later positions.
      sliding_window: attend to the ``sliding_window`` latest positions only.
      chunk_size: chunked attention (Llama 4): a query attends keys of its
        own chunk of positions only.
      softcap: soft-capping of the logits.
      scale: logit scale; default ``head_dim ** -0.5``.
      dropout_rate: dropout on the attention weights (draws from the
        ``dropout`` stream of ``rngs``).
      deterministic: disable dropout; the call's value wins when given.
      checked: emit a ``checkify`` check that a decoding step fits the cache.
      implementation: `flax_posenc.dot_product_attention`'s: ``"blockwise"``,
        ``"jax"``, ``"xla"``, or None to choose by size.
      block_size: the blockwise path's block size, or None.
      context_axis: the mesh axis the sequence is sharded over (ring
        attention inside ``shard_map``), or None.
      sinks: learned attention sinks (gpt-oss): a parameter ``sinks
        [num_heads]`` (logical axis ``heads``), one logit per head that joins
        every softmax denominator without a value, as
        `flax_posenc.dot_product_attention`'s ``sinks``; None when False.
      sinks_init: the sinks' initializer (zeros).
      query_scale: a function of positions, ``query_scale(positions) ->
        [..., seq]``, whose values multiply the queries (in float32) after
        the rotary and the QK norm, just before attention: a
        position-dependent temperature such as
        `flax_posenc.temperature_tuning_scale` (Llama 4's NoPE layers) or
        `flax_posenc.llama_4_scaling` (Ministral 3), given with its
        parameters by ``functools.partial``; or None. It reads the module's
        positions (the cache slots' when decoding without positions).
      k_eq_v: the values are the key projection's output (before the key's
        norm and rotation), with no ``value`` projection (Gemma 4's
        ``attention_k_eq_v`` full layers).
      reuses_kv: no key or value projections, norms or cache: the call's
        ``shared_kv`` (what an earlier layer returned with ``return_kv``)
        gives the keys and values (Gemma 4's ``num_kv_shared_layers``).
      clip_qkv: clip q, k and v to ``[-clip_qkv, clip_qkv]`` after their
        projections and a QK norm before RoPE (OLMo 1 and OLMoE's
        ``clip_qkv``), or None.
      dtype: computation dtype; default the input's.
      param_dtype: parameter dtype.
      kernel_init: projection kernels' initializer (LeCun normal).
      bias_init: projection biases' initializer (zeros).
      rngs: the PRNG streams (``params``; ``dropout`` with a dropout rate).
    """

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        in_features: int,
        *,
        num_kv_heads: int | None = None,
        out_features: int | None = None,
        qkv_bias: bool = False,
        out_bias: bool = False,
        qk_norm: Callable[..., nnx.Module] | None = None,
        qk_norm_position: str = "before_rope",
        qk_norm_over: str = "head",
        v_norm: Callable[..., nnx.Module] | None = None,
        rotary: nnx.Module | None = None,
        position_bias: nnx.Module | None = None,
        causal: bool = False,
        sliding_window: int | None = None,
        chunk_size: int | None = None,
        softcap: float | None = None,
        scale: float | None = None,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        checked: bool = False,
        implementation: str | None = None,
        block_size: int | None = None,
        context_axis: str | None = None,
        sinks: bool = False,
        sinks_init: nnx.Initializer = BIAS_INIT,
        query_scale: Callable[..., jax.Array] | None = None,
        k_eq_v: bool = False,
        reuses_kv: bool = False,
        clip_qkv: float | None = None,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        kernel_init: nnx.Initializer = KERNEL_INIT,
        bias_init: nnx.Initializer = BIAS_INIT,
        rngs: nnx.Rngs,
    ):
        kv_heads = twins.check_heads(num_heads, head_dim, num_kv_heads)
        validation.check_factory("qk_norm", qk_norm, nnx.Module)
        validation.check_factory("v_norm", v_norm, nnx.Module)
        self.qk_norm_position, self.qk_norm_over = qk_norm_position, qk_norm_over
        for name, module in (("rotary", rotary), ("position_bias", position_bias)):
            validation.check_module(name, module)
        twins.check_rotary_head_dim(rotary, head_dim)
        validation.check_bools(
            qkv_bias=qkv_bias,
            out_bias=out_bias,
            causal=causal,
            checked=checked,
            sinks=sinks,
            k_eq_v=k_eq_v,
            reuses_kv=reuses_kv,
        )
        self.reuses_kv = reuses_kv
        self.clip_qkv = twins.check_clip(clip_qkv)
        in_features = validation.check_int("in_features", in_features, minimum=1)
        self.in_features = in_features
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, kv_heads, head_dim
        self.causal, self.sliding_window = causal, sliding_window
        self.chunk_size = chunk_size
        self.softcap, self.scale = softcap, scale
        self.dropout_rate = validation.check_rate("dropout_rate", dropout_rate)
        self.deterministic, self.checked = deterministic, checked
        self.dtype, self.param_dtype = dtype, param_dtype
        self.implementation, self.block_size = implementation, block_size
        self.context_axis = context_axis
        twins.check_attention_choice(self)

        def projection(
            heads, axes, use_bias, in_shape=in_features, axis=-1, out_shape=None
        ):
            return nnx.LinearGeneral(
                in_shape,
                (heads, head_dim) if out_shape is None else out_shape,
                axis=axis,
                use_bias=use_bias,
                dtype=dtype,
                param_dtype=param_dtype,
                kernel_init=kernel_init,
                bias_init=bias_init,
                kernel_metadata={"out_sharding": axes, "eager_sharding": False},
                bias_metadata={
                    "out_sharding": axes[len(axes) - (1 if out_shape else 2) :],
                    "eager_sharding": False,
                },
                rngs=rngs,
            )

        self.query = projection(num_heads, ("embed", "heads", "kv"), qkv_bias)
        self.key = (
            None
            if reuses_kv
            else projection(kv_heads, ("embed", "kv_heads", "kv"), qkv_bias)
        )
        self.value = (
            None
            if k_eq_v or reuses_kv
            else projection(kv_heads, ("embed", "kv_heads", "kv"), qkv_bias)
        )
        self.out = projection(
            None,
            ("heads", "kv", "embed"),
            out_bias,
            in_shape=(num_heads, head_dim),
            axis=(-2, -1),
            out_shape=out_features or in_features,
        )
        features = functools.partial(twins.qk_norm_features, qk_norm_over)
        self.query_norm = (
            qk_norm(features(num_heads, head_dim), rngs=rngs) if qk_norm else None
        )
        self.key_norm = (
            qk_norm(features(kv_heads, head_dim), rngs=rngs)
            if qk_norm and not reuses_kv
            else None
        )
        self.value_norm = (
            v_norm(head_dim, rngs=rngs) if v_norm and not reuses_kv else None
        )
        self.rotary, self.position_bias = rotary, position_bias
        self.query_scale = twins.check_query_scale(query_scale)
        self.sinks = (
            parameters.param(sinks_init, rngs, (num_heads,), param_dtype, ("heads",))
            if sinks
            else None
        )
        self.dropout_rngs = (
            parameters.dropout_stream(rngs) if self.dropout_rate > 0.0 else None
        )
        for name in _CACHE_NAMES:
            setattr(self, name, nnx.data(None))

    @classmethod
    def from_hf_config(
        cls,
        config: Mapping[str, Any],
        *,
        layer: int,
        rngs: nnx.Rngs,
        **overrides: Any,
    ) -> MultiHeadAttention:
        """Layer ``layer``'s attention of a Hugging Face ``config.json`` (a dict).

        As `flax_posenc.attention_schedule` reads it: the rotary (None on a
        layer without positions), window, chunk, causality, sinks, query
        temperature, QK and V norms (`RMSNorm`s with the config's epsilon),
        scale, soft cap, biases and ``attention_dropout``, with
        ``in_features`` the config's ``hidden_size``. ``overrides`` set what
        a config does not say: ``dtype``, ``param_dtype``, ``kernel_init``,
        ``bias_init``, ``sinks_init``, ``implementation``, ``block_size``,
        ``context_axis``, ``deterministic``, ``checked``, ``dropout_rate``.
        A multi-head latent attention layer (DeepSeek-V2/V3) comes back as a
        `MultiHeadLatentAttention`.

        Raises:
          ValueError: as `flax_posenc.attention_schedule`; ``layer`` out of
            range.
          TypeError: an override of a field the config gives.
        """
        spec, fields = twins.attention_from_config(
            config,
            layer,
            overrides,
            rotary=rotary.RotaryEmbedding,
            rms_norm=lambda **kw: functools.partial(normalization.RMSNorm, **kw),
            layer_norm=lambda **kw: functools.partial(normalization.LayerNorm, **kw),
            alibi=attention_bias.ALiBiBias,
        )
        made = latent_attention.MultiHeadLatentAttention if spec.latent else cls
        return made(in_features=spec.hidden_size, rngs=rngs, **fields)

    def init_cache(self, input_shape: Sequence[int], dtype: DTypeLike | None = None):
        """Creates an empty cache for inputs ``[batch..., max_length, features]``.

        ``dtype``: the cached keys' and values'; None takes the module's
        ``dtype``, else its ``param_dtype`` (what the projections compute in
        for inputs of that dtype).
        """
        if self.reuses_kv:  # it attends over the cache of the layer it reuses
            return
        heads = (self.num_kv_heads, self.head_dim)
        parameters.init_cache(self, _CACHE_NAMES, input_shape, dtype, heads, heads)

    def __call__(
        self,
        x: ArrayLike,
        *,
        kv: ArrayLike | None = None,
        positions: ArrayLike | None = None,
        segments: ArrayLike | None = None,
        kv_positions: ArrayLike | None = None,
        kv_segments: ArrayLike | None = None,
        mask: ArrayLike | None = None,
        decode: bool = False,
        deterministic: bool | None = None,
        seq_len: int | None = None,
        shared_kv: twins.SharedKV | None = None,
        return_kv: bool = False,
    ) -> jax.Array | tuple[jax.Array, twins.SharedKV]:
        """Attention over ``x [..., seq, features]``; returns ``[..., seq, out]``.

        ``positions`` and ``segments``: integer ``[..., seq]`` (default
        ``arange(seq)``, or the next cache slots when decoding; no segments).
        ``kv``: cross-attention's key/value input ``[..., kv_seq,
        in_features]`` (T5's decoder reading the encoder), with its
        ``kv_positions`` (default ``arange(kv_seq)``) and ``kv_segments``;
        not with a rotary or ``decode``. ``mask``: a boolean mask
        broadcastable to ``[..., heads, seq, kv_seq]``, ANDed with the one
        from positions and segments (not when decoding).
        ``seq_len``: the static length the rotary's dynamic NTK (or LongRoPE)
        scaling reads, the largest position + 1; default the sequence length
        for default positions, else read from concrete positions (traced
        ones, as when decoding under ``jit`` with dynamic NTK, need it).
        ``return_kv``: also return the `SharedKV` attended over, for layers
        that reuse it; ``shared_kv``: that, for a module built with
        ``reuses_kv`` (Gemma 4's later layers: its own queries, the other
        layer's keys and values, its own mask).
        """
        x = twins.attention_input(x)
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has {x.shape[-1]} features (shape {x.shape}), but this module "
                f"was built for in_features={self.in_features}."
            )
        twins.check_shared_kv(self, shared_kv, kv, positions, decode)
        if (
            validation.check_bool("decode", decode)
            and self.cache_index is None
            and not self.reuses_kv
        ):
            raise ValueError("decode=True needs a cache: call init_cache first.")
        twins.check_context_call(self, positions, decode)
        kv, kv_positions, kv_segments, mask = twins.cross_inputs(
            self, x, kv, kv_positions, kv_segments, mask, decode
        )
        source = x if kv is None else kv
        if source.shape[-1] != self.in_features:
            raise ValueError(
                f"kv has {source.shape[-1]} features (shape {source.shape}), but "
                f"this module was built for in_features={self.in_features}."
            )
        q = self.query(x)
        k = v = None
        if not self.reuses_kv:
            k = self.key(source)
            v = k if self.value is None else self.value(source)
        if self.value_norm is not None:
            v = twins.v_norm(self.value_norm, v)
        before = self.qk_norm_position == "before_rope"
        if self.query_norm is not None and before:
            q, k = twins.qk_norm(
                self.query_norm, self.key_norm, q, k, self.qk_norm_over
            )
        q, k, v = twins.clip_qkv(self.clip_qkv, q, k, v)
        # (A reusing layer has no cache; it is given positions when decoding.)
        start = self.cache_index[...] if decode and not self.reuses_kv else 0
        given = positions
        positions, segments = twins.module_positions(
            x, positions, segments, start, decode
        )
        if self.rotary is not None:
            q, k = twins.rotate(
                self.rotary,
                q,
                k,
                positions,
                twins.rotary_keywords(self.rotary, x, given, decode, seq_len),
            )
        if self.query_norm is not None and not before:
            q, k = twins.qk_norm(
                self.query_norm, self.key_norm, q, k, self.qk_norm_over
            )
        q = twins.scale_queries(self.query_scale, q, positions)
        k_positions, q_segments, k_segments = positions, segments, segments
        if kv is not None:
            k_positions, k_segments = kv_positions, kv_segments
            if (segments is None) != (kv_segments is None):
                raise ValueError(
                    "cross-attention: give segments and kv_segments together, or "
                    "neither."
                )
        fits = None
        if shared_kv is not None:
            k, v, k_positions, q_segments, k_segments, fits = shared_kv
        elif decode:
            k, v, k_positions, q_segments, k_segments, fits = parameters.cache_step(
                self, _CACHE_NAMES, k, v, positions, segments
            )
        out = twins.attend(
            self,
            q,
            k,
            v,
            positions,
            k_positions,
            q_segments,
            k_segments,
            deterministic=deterministic,
            draw_dropout_rng=self.dropout_rngs,
            fits=fits,
            default_positions=given is None
            and not decode
            and kv is None
            and shared_kv is None,
            sinks=None if self.sinks is None else self.sinks[...],
            mask=mask,
        )
        if validation.check_bool("return_kv", return_kv):
            kept = twins.SharedKV(k, v, k_positions, q_segments, k_segments, fits)
            return self.out(out), kept
        return self.out(out)
