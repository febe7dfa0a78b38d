"""Multi-head attention with positions: RoPE or biases, masks, GQA, a KV cache."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import twins, validation
from flax_posenc._src.linen import (
    attention_bias,
    cache,
    latent_attention,
    normalization,
    rotary,
)


class MultiHeadAttention(nn.Module):
    """Self-attention whose positions act through RoPE, biases and masks.

    ``out = W_o · attention(q, k, v)`` with ``q = x W_q`` (``num_heads`` heads),
    ``k = x W_k`` and ``v = x W_v`` (``num_kv_heads`` heads: multi-head,
    grouped-query or multi-query attention), optionally normalized per head
    (``qk_norm``, Gemma 3 / Qwen3), rotated by ``rotary``, then
    `flax_posenc.dot_product_attention` with the mask of
    `flax_posenc.attention_mask` (``causal``, ``sliding_window``,
    ``chunk_size``, ``segments``) and the bias of ``position_bias``
    (`ALiBiBias`, `RelativePositionBias`), all computed from ``positions``.
    The mask goes to `flax_posenc.dot_product_attention` as positions and
    segments, never as a ``[q, k]`` array, so a long sequence takes the
    blockwise path (``implementation`` and ``block_size`` choose as that
    function's keywords do).

    **A sequence sharded over a mesh** (context parallelism): with
    ``context_axis`` set to a mesh axis name, call the module inside
    ``jax.shard_map`` over that axis on the local shard of the sequence,
    with ``positions=`` the shard's true positions (e.g. after
    `flax_posenc.load_balanced_order`); attention runs as
    `flax_posenc.ring_attention`, RoPE from those positions. No decoding or
    dropout there.

    **Decoding**, as Flax's ``MultiHeadDotProductAttention``: ``init(...,
    decode=True)`` on a ``[batch, max_length, features]`` input creates the
    ``cache`` collection: keys already rotated, values, their positions and
    segment ids, and the next slot. Each ``apply(..., decode=True,
    mutable=["cache"])`` writes its tokens at the next slots and attends over
    the whole cache; empty slots (segment 0) are masked. Positions default to
    the slot numbers; pass ``positions`` for per-row offsets (a left-padded
    batch: padding tokens with segment 0 and their rows' positions starting
    at 0 after the padding). A prefill of many tokens and then steps of one
    equal the same tokens in one forward pass. With ``sliding_window=w`` the
    cache is a ring buffer of ``min(w, max_length)`` slots: token ``n`` (of
    all written) overwrites slot ``n % slots``, each slot keeps its position,
    and any number of steps fits; memory stays O(window). With
    ``chunk_size=c`` it holds one chunk, ``min(c, max_length)`` slots, in the
    same way.

    Nothing is clamped in a full cache (no ``sliding_window`` or
    ``chunk_size``).
    ``decode=True`` without a cache, an input whose batch differs from the
    cache's, and more tokens than the cache has slots left raise
    ``ValueError`` when that is known: always for shapes, and for the slots
    left when ``apply`` runs eagerly. Under ``jit`` the slots left are traced:
    with ``checked=True`` an overflow is a ``checkify`` error (wrap the step
    in ``jax.experimental.checkify.checkify``), without it the step returns
    NaN and leaves the cached keys as they were (as
    `flax_posenc.embedding_lookup` does with ids out of range).

    Logical axis names: ``query/kernel``: ``("embed", "heads", "kv")``,
    ``key/kernel``: ``("embed", "kv_heads", "kv")``, ``value/kernel``:
    ``("embed", "kv_heads", "kv")``, ``out/kernel``: ``("heads", "kv", "embed")``;
    with ``qkv_bias``, ``query/bias``: ``("heads", "kv")``, ``key/bias``:
    ``("kv_heads", "kv")``, ``value/bias``: ``("kv_heads", "kv")``; with
    ``out_bias``, ``out/bias``: ``("embed",)``; with ``sinks``, ``sinks``:
    ``("heads",)``. A ``qk_norm``'s are its own.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import MultiHeadAttention, RotaryEmbedding
      >>> attn = MultiHeadAttention(num_heads=4, num_kv_heads=2, head_dim=8,
      ...                           rotary=RotaryEmbedding(), causal=True)
      >>> x = jnp.ones((2, 6, 32))
      >>> variables = attn.init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, nn.meta.unbox(variables))["params"]["key"]
      {'kernel': (32, 2, 8)}
      >>> attn.apply(variables, x).shape
      (2, 6, 32)

    Attributes:
      num_heads: query heads.
      head_dim: features per head.
      num_kv_heads: key/value heads, dividing ``num_heads``; default
        ``num_heads``.
      out_features: output features; default the input's.
      qkv_bias: biases on the q/k/v projections (Qwen2, GPT-NeoX); default
        off, as Llama.
      out_bias: a bias on the output projection (GPT-NeoX, BERT); default off,
        as Llama.
      qk_norm: a normalization module (e.g. ``RMSNorm()``) applied per head to
        queries and keys before the rotation (Gemma 3, Qwen3); cloned as
        ``query_norm`` and ``key_norm``.
      qk_norm_position: ``"before_rope"`` (Gemma 3, Qwen3) or
        ``"after_rope"`` (Llama 4's L2 norm, ``RMSNorm(use_scale=False)``):
        where ``qk_norm`` acts. A norm without a scale gives the same either
        way (a rotation keeps each head's length); a learned scale does not.
      qk_norm_over: ``"head"`` (each head's ``head_dim`` features),
        ``"each_head"`` (the same, the norm seeing ``[..., heads, head_dim]``
        to hold a weight for each head: ``LayerNorm(use_bias=False,
        feature_axes=(-2, -1), param_axes=(None, "kv"))``, StableLM 2,
        Command R+) or ``"all_heads"`` (all heads' features at once, OLMo
        2/3: the norms see ``num_heads * head_dim`` and ``num_kv_heads *
        head_dim`` features).
      v_norm: a normalization module applied per head to the values (Gemma
        4: ``RMSNorm(use_scale=False)``), cloned as ``value_norm``; or None.
      rotary: a `RotaryEmbedding`, or None.
      position_bias: a module called as ``position_bias(q_positions,
        k_positions)`` returning ``[..., heads, q, k]``, or None.
      causal: mask later positions.
      sliding_window: attend to the ``sliding_window`` latest positions only.
      chunk_size: chunked attention (Llama 4's ``attention_chunk_size``): a
        query attends keys of its own chunk of positions only.
      softcap: soft-capping of the logits (Gemma 2: 50).
      scale: logit scale; default ``head_dim ** -0.5`` (T5: 1; Gemma 2:
        ``query_pre_attn_scalar ** -0.5``).
      dropout_rate: dropout on the attention weights.
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
        `flax_posenc.dot_product_attention`'s ``sinks``.
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
      kernel_init: projection kernels' initializer (LeCun normal, as Flax's
        ``MultiHeadDotProductAttention``).
      bias_init: projection biases' initializer (zeros).
    """

    num_heads: int
    head_dim: int
    num_kv_heads: int | None = None
    out_features: int | None = None
    qkv_bias: bool = False
    out_bias: bool = False
    qk_norm: nn.Module | None = None
    qk_norm_position: str = "before_rope"
    qk_norm_over: str = "head"
    v_norm: nn.Module | None = None
    rotary: nn.Module | None = None
    position_bias: nn.Module | None = None
    causal: bool = False
    sliding_window: int | None = None
    chunk_size: int | None = None
    softcap: float | None = None
    scale: float | None = None
    dropout_rate: float = 0.0
    deterministic: bool | None = None
    checked: bool = False
    implementation: str | None = None
    block_size: int | None = None
    context_axis: str | None = None
    sinks: bool = False
    sinks_init: nn.initializers.Initializer = nn.initializers.zeros_init()
    query_scale: Callable[..., jax.Array] | None = None
    k_eq_v: bool = False
    reuses_kv: bool = False
    clip_qkv: float | None = None
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @classmethod
    def from_hf_config(
        cls, config: Mapping[str, Any], *, layer: int, **overrides: Any
    ) -> MultiHeadAttention:
        """Layer ``layer``'s attention of a Hugging Face ``config.json`` (a dict).

        As `flax_posenc.attention_schedule` reads it: the rotary (None on a
        layer without positions), window, chunk, causality, sinks, query
        temperature, QK and V norms (`RMSNorm`s with the config's epsilon),
        scale, soft cap, biases and ``attention_dropout``. ``overrides`` set
        what a config does not say: ``dtype``, ``param_dtype``,
        ``kernel_init``, ``bias_init``, ``sinks_init``, ``implementation``,
        ``block_size``, ``context_axis``, ``deterministic``, ``checked``,
        ``dropout_rate``. The input's features are the config's
        ``hidden_size``. A multi-head latent attention layer (DeepSeek-V2/V3)
        comes back as a `MultiHeadLatentAttention`.

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
            rms_norm=normalization.RMSNorm,
            layer_norm=normalization.LayerNorm,
            alibi=attention_bias.ALiBiBias,
        )
        if spec.latent is not None:
            return latent_attention.MultiHeadLatentAttention(**fields)
        return cls(**fields)

    def _projection(self, heads: int, axes: tuple[str, ...], name: str):
        return nn.DenseGeneral(
            (heads, self.head_dim),
            use_bias=self.qkv_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(self.kernel_init, axes),
            bias_init=nn.with_logical_partitioning(self.bias_init, axes[1:]),
            name=name,
        )

    def _qk_norm(self, q, k):
        return twins.qk_norm(
            self.qk_norm.clone(name="query_norm", parent=self),
            self.qk_norm.clone(name="key_norm", parent=self),
            q,
            k,
            self.qk_norm_over,
        )

    def _sinks(self) -> jax.Array | None:
        if not validation.check_bool("sinks", self.sinks):
            return None
        init = nn.with_logical_partitioning(self.sinks_init, ("heads",))
        return self.param("sinks", init, (self.num_heads,), self.param_dtype)

    @nn.compact
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
        features]`` (T5's decoder reading the encoder), with its
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
        heads = self.num_heads
        kv_heads = twins.check_heads(heads, self.head_dim, self.num_kv_heads)
        for name in ("qk_norm", "v_norm", "rotary", "position_bias"):
            validation.check_module(name, getattr(self, name))
        twins.check_rotary_head_dim(self.rotary, self.head_dim)
        validation.check_bools(
            qkv_bias=self.qkv_bias,
            out_bias=self.out_bias,
            causal=self.causal,
            checked=self.checked,
            decode=decode,
            k_eq_v=self.k_eq_v,
            return_kv=return_kv,
        )
        twins.check_attention_choice(self)
        twins.check_context_call(self, positions, decode)
        twins.check_shared_kv(self, shared_kv, kv, positions, decode)
        x = twins.attention_input(x)
        kv, kv_positions, kv_segments, mask = twins.cross_inputs(
            self, x, kv, kv_positions, kv_segments, mask, decode
        )
        source = x if kv is None else kv
        q = self._projection(heads, ("embed", "heads", "kv"), "query")(x)
        k = v = None  # a reusing layer's: shared_kv's
        if not self.reuses_kv:
            k = self._projection(kv_heads, ("embed", "kv_heads", "kv"), "key")(source)
            v = (
                k  # Gemma 4's attention_k_eq_v: no value projection
                if self.k_eq_v
                else self._projection(kv_heads, ("embed", "kv_heads", "kv"), "value")(
                    source
                )
            )
        if self.v_norm is not None and v is not None:
            v = twins.v_norm(self.v_norm.clone(name="value_norm", parent=self), v)
        if self.qk_norm is not None and self.qk_norm_position == "before_rope":
            q, k = self._qk_norm(q, k)
        q, k, v = twins.clip_qkv(twins.check_clip(self.clip_qkv), q, k, v)

        start = 0
        if decode and self.has_variable("cache", "cache_index"):
            start = self.get_variable("cache", "cache_index")
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

        if self.qk_norm is not None and self.qk_norm_position == "after_rope":
            q, k = self._qk_norm(q, k)
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
            k, v, k_positions, q_segments, k_segments, fits = cache.update_cache(
                self, twins.CACHE_NAMES, k, v, positions, segments
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
            draw_dropout_rng=lambda: self.make_rng("dropout"),
            fits=fits,
            default_positions=given is None
            and not decode
            and kv is None
            and shared_kv is None,
            sinks=self._sinks(),
            mask=mask,
        )
        out = nn.DenseGeneral(
            self.out_features or x.shape[-1],
            axis=(-2, -1),
            use_bias=self.out_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(
                self.kernel_init, ("heads", "kv", "embed")
            ),
            bias_init=nn.with_logical_partitioning(self.bias_init, ("embed",)),
            name="out",
        )(out)
        if return_kv:
            return out, twins.SharedKV(k, v, k_positions, q_segments, k_segments, fits)
        return out
