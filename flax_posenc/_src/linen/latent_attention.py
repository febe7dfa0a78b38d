"""Multi-head latent attention with decoupled RoPE (DeepSeek-V2/V3's MLA)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import twins, validation
from flax_posenc._src.linen import cache, normalization, rotary


class MultiHeadLatentAttention(nn.Module):
    r"""Multi-head latent attention with decoupled RoPE (DeepSeek-V2/V3).

    Keys and values come from one compressed latent per token, and the
    positions from a small rotated key that every head shares:

    - queries: ``q = q_b_proj(RMSNorm(q_a_proj(x)))`` (``q_lora_rank``; or
      ``q_proj(x)`` without it), ``[..., heads, qk_nope_head_dim +
      qk_rope_head_dim]``, split into ``q_nope`` and ``q_rot``;
    - ``kv_a_proj(x)`` gives the latent ``c = RMSNorm(...)[:kv_lora_rank]``
      and the shared key ``k_rot`` (``qk_rope_head_dim`` features, one head);
    - ``q_rot`` and ``k_rot`` are rotated by ``rotary``;
    - ``kv_b_proj(c)`` gives each head's ``k_nope`` and value; the key of a
      head is ``[k_nope, k_rot]``;
    - softmax attention with ``scale`` (default ``(qk_nope_head_dim +
      qk_rope_head_dim) ** -0.5``; DeepSeek's YaRN configs multiply it by
      ``mscale(factor, mscale_all_dim) ** 2``, which
      `flax_posenc.attention_schedule` and `from_hf_config` do), then
      ``out``.

    The parameter names follow transformers' (``kv_a_proj`` is its
    ``kv_a_proj_with_mqa``, ``out`` its ``o_proj``, the norms its
    ``q_a_layernorm`` and ``kv_a_layernorm``). The decode cache keeps what
    the model compresses, not the heads' keys and values: per token the
    normalized latent (``cached_latent [batch..., slots, 1,
    kv_lora_rank]``) and the rotated shared key (``cached_rope_key
    [batch..., slots, 1, qk_rope_head_dim]``); decoding works as
    `MultiHeadAttention`'s (``init(..., decode=True)``, then
    ``apply(..., decode=True, mutable=["cache"])``).

    transformers' DeepSeek-V3 rotates interleaved pairs and returns them
    de-interleaved, permuting ``q_rot`` and ``k_rot`` alike: the scores, and
    so the outputs, are the same as this module's with an interleaved
    rotary.

    Logical axis names: ``q_a_proj/kernel``: ``("embed", "q_lora")``,
    ``q_a_norm/scale``: ``("q_lora",)``, ``q_b_proj/kernel``: ``("q_lora",
    "heads", "kv")``, ``kv_a_proj/kernel``: ``("embed", "kv_lora")``,
    ``kv_a_norm/scale``: ``("kv_lora",)``, ``kv_b_proj/kernel``:
    ``("kv_lora", "heads", "kv")``, ``out/kernel``: ``("heads", "kv",
    "embed")``; with ``qkv_bias``, ``q_a_proj/bias``: ``("q_lora",)`` and
    ``kv_a_proj/bias``: ``("kv_lora",)``; with ``out_bias``, ``out/bias``:
    ``("embed",)``. Without ``q_lora_rank`` one ``q_proj`` (kernel
    ``[features, heads, qk_nope_head_dim + qk_rope_head_dim]``, names
    embed, heads, kv) takes the place of the three ``q_a``/``q_b`` ones.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax_posenc.linen import MultiHeadLatentAttention, RotaryEmbedding
      >>> mla = MultiHeadLatentAttention(4, kv_lora_rank=16, qk_nope_head_dim=8,
      ...     qk_rope_head_dim=4, v_head_dim=8, q_lora_rank=12,
      ...     rotary=RotaryEmbedding(layout="interleaved"))
      >>> x = jnp.ones((2, 6, 32))
      >>> variables = mla.init(jax.random.key(0), x)
      >>> mla.apply(variables, x).shape
      (2, 6, 32)

    Attributes:
      num_heads: query heads (every head reads the shared rotated key).
      kv_lora_rank: the latent's width.
      qk_nope_head_dim: per-head features of q and k without positions.
      qk_rope_head_dim: rotated per-head features (one key for all heads).
      v_head_dim: the values' features per head.
      q_lora_rank: the queries' low-rank width, or None for ``q_proj``.
      out_features: output features; default the input's.
      qkv_bias: biases on ``q_a_proj`` and ``kv_a_proj`` (``attention_bias``).
      out_bias: a bias on the output projection.
      norm_eps: the latents' RMSNorm epsilon.
      rotary: the `RotaryEmbedding` of the rotated part, or None.
      causal: mask later positions.
      sliding_window: attend to the ``sliding_window`` latest positions only.
      chunk_size: chunked attention.
      scale: logit scale; default ``(qk_nope_head_dim + qk_rope_head_dim) **
        -0.5``.
      dropout_rate: dropout on the attention weights.
      deterministic: disable dropout; the call's value wins when given.
      checked: emit a ``checkify`` check that a decoding step fits the cache.
      implementation: `flax_posenc.dot_product_attention`'s.
      block_size: the blockwise path's block size, or None.
      context_axis: the mesh axis the sequence is sharded over (ring
        attention inside ``shard_map``, with the shard's true positions;
        the heads' keys and values are expanded on each shard), or None.
      dtype: computation dtype; default the input's.
      param_dtype: parameter dtype.
      kernel_init: projection kernels' initializer.
      bias_init: projection biases' initializer.

    References:
      DeepSeek-AI, "DeepSeek-V2: A Strong, Economical, and Efficient
      Mixture-of-Experts Language Model", 2024. https://arxiv.org/abs/2405.04434
    """

    num_heads: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None
    out_features: int | None = None
    qkv_bias: bool = False
    out_bias: bool = False
    norm_eps: float = 1e-6
    rotary: nn.Module | None = None
    causal: bool = True
    sliding_window: int | None = None
    chunk_size: int | None = None
    scale: float | None = None
    dropout_rate: float = 0.0
    deterministic: bool | None = None
    checked: bool = False
    implementation: str | None = None
    block_size: int | None = None
    context_axis: str | None = None
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    # What the shared attention step reads and this module does not have.
    softcap = None
    position_bias = None
    qk_norm_position = "before_rope"
    qk_norm_over = "head"

    @classmethod
    def from_hf_config(
        cls, config: Mapping[str, Any], *, layer: int, **overrides: Any
    ) -> MultiHeadLatentAttention:
        """Layer ``layer``'s MLA of a DeepSeek-V2/V3 ``config.json`` (a dict),
        as `flax_posenc.attention_schedule` reads it; ``overrides`` as
        `MultiHeadAttention.from_hf_config`'s."""
        _, fields = twins.attention_from_config(
            config, layer, overrides, rotary=rotary.RotaryEmbedding, rms_norm=None
        )
        return cls(**fields)

    def _dense(self, features, axes, use_bias, name, axis=-1):
        return nn.DenseGeneral(
            features,
            axis=axis,
            use_bias=use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(self.kernel_init, axes),
            bias_init=nn.with_logical_partitioning(
                self.bias_init,
                axes[len(axes) - (1 if isinstance(features, int) else len(features)) :],
            ),
            name=name,
        )

    def _norm(self, axis: str, name: str):
        return normalization.RMSNorm(
            epsilon=self.norm_eps,
            param_dtype=self.param_dtype,
            param_axes=(axis,),
            name=name,
        )

    @nn.compact
    def __call__(
        self,
        x: ArrayLike,
        *,
        positions: ArrayLike | None = None,
        segments: ArrayLike | None = None,
        decode: bool = False,
        deterministic: bool | None = None,
        seq_len: int | None = None,
    ) -> jax.Array:
        """Attention over ``x [..., seq, features]``; returns ``[..., seq, out]``
        (arguments as `MultiHeadAttention`'s)."""
        dims = twins.check_latent(
            self.num_heads,
            self.q_lora_rank,
            self.kv_lora_rank,
            self.qk_nope_head_dim,
            self.qk_rope_head_dim,
            self.v_head_dim,
        )
        validation.check_module("rotary", self.rotary)
        twins.check_rotary_head_dim(self.rotary, self.qk_rope_head_dim)
        validation.check_bools(
            qkv_bias=self.qkv_bias,
            out_bias=self.out_bias,
            causal=self.causal,
            checked=self.checked,
            decode=decode,
        )
        twins.check_attention_choice(self)
        twins.check_context_call(self, positions, decode)
        x = twins.attention_input(x)
        heads_qk = (self.num_heads, dims.head_dim)
        if self.q_lora_rank is None:
            q = self._dense(heads_qk, ("embed", "heads", "kv"), False, "q_proj")(x)
        else:
            q = self._dense(
                self.q_lora_rank, ("embed", "q_lora"), self.qkv_bias, "q_a_proj"
            )(x)
            q = self._norm("q_lora", "q_a_norm")(q)
            q = self._dense(heads_qk, ("q_lora", "heads", "kv"), False, "q_b_proj")(q)
        compressed = self._dense(
            self.kv_lora_rank + self.qk_rope_head_dim,
            ("embed", "kv_lora"),
            self.qkv_bias,
            "kv_a_proj",
        )(x)
        latent, k_rot = twins.split_latent(compressed, self.kv_lora_rank)
        latent = self._norm("kv_lora", "kv_a_norm")(latent)[..., None, :]

        start = 0
        if decode and self.has_variable("cache", "cache_index"):
            start = self.get_variable("cache", "cache_index")
        given = positions
        positions, segments = twins.module_positions(
            x, positions, segments, start, decode
        )
        nope = self.qk_nope_head_dim
        q_nope, q_rot = q[..., :nope], q[..., nope:]
        if self.rotary is not None:
            q_rot, k_rot = self.rotary(
                q_rot,
                k_rot,
                positions=positions,
                **twins.rotary_keywords(self.rotary, x, given, decode, seq_len),
            )
        k_positions, q_segments, k_segments = positions, segments, segments
        fits = None
        if decode:
            latent, k_rot, k_positions, q_segments, k_segments, fits = (
                cache.update_cache(
                    self, twins.LATENT_CACHE_NAMES, latent, k_rot, positions, segments
                )
            )
        kv = self._dense(
            (self.num_heads, nope + self.v_head_dim),
            ("kv_lora", "heads", "kv"),
            False,
            "kv_b_proj",
        )(latent[..., 0, :])
        k, v = twins.latent_keys_values(kv, k_rot, nope)
        out = twins.attend(
            self,
            jnp.concatenate([q_nope, q_rot.astype(q_nope.dtype)], axis=-1),
            k,
            v,
            positions,
            k_positions,
            q_segments,
            k_segments,
            deterministic=deterministic,
            draw_dropout_rng=lambda: self.make_rng("dropout"),
            fits=fits,
            default_positions=given is None and not decode,
        )
        return self._dense(
            self.out_features or x.shape[-1],
            ("heads", "kv", "embed"),
            self.out_bias,
            "out",
            axis=(-2, -1),
        )(out)
