"""NNX twin of MultiHeadLatentAttention (DeepSeek-V2/V3's MLA)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import twins, validation
from flax_posenc._src.nnx import normalization, parameters, rotary

KERNEL_INIT = nnx.initializers.lecun_normal()
BIAS_INIT = nnx.initializers.zeros_init()
_CACHE_NAMES = twins.LATENT_CACHE_NAMES


class MultiHeadLatentAttention(nnx.Module):
    """Multi-head latent attention with decoupled RoPE (DeepSeek-V2/V3, NNX).

    The twin of `flax_posenc.linen.MultiHeadLatentAttention`, with the same
    parameter names and formula. The cache (`init_cache`) keeps per token
    the normalized latent ``cached_latent [batch..., slots, 1,
    kv_lora_rank]`` and the rotated shared key ``cached_rope_key
    [batch..., slots, 1, qk_rope_head_dim]``, not the heads' keys and values.

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
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import MultiHeadLatentAttention, RotaryEmbedding
      >>> mla = MultiHeadLatentAttention(4, 32, kv_lora_rank=16, qk_nope_head_dim=8,
      ...     qk_rope_head_dim=4, v_head_dim=8, q_lora_rank=12,
      ...     rotary=RotaryEmbedding(layout="interleaved"), rngs=nnx.Rngs(0))
      >>> mla(jnp.ones((2, 6, 32))).shape
      (2, 6, 32)

    Args:
      num_heads: query heads (every head reads the shared rotated key).
      in_features: the input's features (``hidden_size``).
      kv_lora_rank: the latent's width.
      qk_nope_head_dim: per-head features of q and k without positions.
      qk_rope_head_dim: rotated per-head features (one key for all heads).
      v_head_dim: the values' features per head.
      q_lora_rank: the queries' low-rank width, or None for ``q_proj``.
      out_features: output features; default ``in_features``.
      qkv_bias: biases on ``q_a_proj`` and ``kv_a_proj`` (``attention_bias``).
      out_bias: a bias on the output projection.
      norm_eps: the latents' RMSNorm epsilon.
      rotary: the `RotaryEmbedding` of the rotated part, or None.
      causal: mask later positions.
      sliding_window: attend to the ``sliding_window`` latest positions only.
      chunk_size: chunked attention.
      scale: logit scale; default ``(qk_nope_head_dim + qk_rope_head_dim) **
        -0.5`` (`flax_posenc.attention_schedule` folds YaRN's ``mscale`` in).
      dropout_rate: dropout on the attention weights.
      deterministic: disable dropout; the call's value wins when given.
      checked: emit a ``checkify`` check that a decoding step fits the cache.
      implementation: `flax_posenc.dot_product_attention`'s.
      block_size: the blockwise path's block size, or None.
      context_axis: the mesh axis the sequence is sharded over (ring
        attention inside ``shard_map``), or None.
      dtype: computation dtype; default the input's.
      param_dtype: parameter dtype.
      kernel_init: projection kernels' initializer.
      bias_init: projection biases' initializer.
      rngs: the PRNG streams.
    """

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        *,
        kv_lora_rank: int,
        qk_nope_head_dim: int,
        qk_rope_head_dim: int,
        v_head_dim: int,
        q_lora_rank: int | None = None,
        out_features: int | None = None,
        qkv_bias: bool = False,
        out_bias: bool = False,
        norm_eps: float = 1e-6,
        rotary: nnx.Module | None = None,
        causal: bool = True,
        sliding_window: int | None = None,
        chunk_size: int | None = None,
        scale: float | None = None,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        checked: bool = False,
        implementation: str | None = None,
        block_size: int | None = None,
        context_axis: str | None = None,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        kernel_init: nnx.Initializer = KERNEL_INIT,
        bias_init: nnx.Initializer = BIAS_INIT,
        rngs: nnx.Rngs,
    ):
        dims = twins.check_latent(
            num_heads,
            q_lora_rank,
            kv_lora_rank,
            qk_nope_head_dim,
            qk_rope_head_dim,
            v_head_dim,
        )
        validation.check_module("rotary", rotary)
        twins.check_rotary_head_dim(rotary, qk_rope_head_dim)
        validation.check_bools(
            qkv_bias=qkv_bias, out_bias=out_bias, causal=causal, checked=checked
        )
        in_features = validation.check_int("in_features", in_features, minimum=1)
        self.in_features, self.num_heads = in_features, num_heads
        self.q_lora_rank, self.kv_lora_rank = q_lora_rank, kv_lora_rank
        self.qk_nope_head_dim, self.qk_rope_head_dim = (
            qk_nope_head_dim,
            qk_rope_head_dim,
        )
        self.v_head_dim = v_head_dim
        self.causal, self.sliding_window, self.chunk_size = (
            causal,
            sliding_window,
            chunk_size,
        )
        self.scale = dims.head_dim**-0.5 if scale is None else scale
        self.softcap = self.position_bias = None
        self.context_axis = context_axis
        self.qk_norm_position, self.qk_norm_over = "before_rope", "head"
        self.dropout_rate = validation.check_rate("dropout_rate", dropout_rate)
        self.deterministic, self.checked = deterministic, checked
        self.dtype, self.param_dtype = dtype, param_dtype
        self.implementation, self.block_size = implementation, block_size
        twins.check_attention_choice(self)

        def linear(in_shape, out_shape, axes, use_bias, axis=-1):
            out = (out_shape,) if isinstance(out_shape, int) else out_shape
            return nnx.LinearGeneral(
                in_shape,
                out_shape,
                axis=axis,
                use_bias=use_bias,
                dtype=dtype,
                param_dtype=param_dtype,
                kernel_init=kernel_init,
                bias_init=bias_init,
                kernel_metadata={"out_sharding": axes, "eager_sharding": False},
                bias_metadata={
                    "out_sharding": axes[len(axes) - len(out) :],
                    "eager_sharding": False,
                },
                rngs=rngs,
            )

        norm = functools.partial(
            normalization.RMSNorm, epsilon=norm_eps, param_dtype=param_dtype, rngs=rngs
        )
        heads_qk = (num_heads, dims.head_dim)
        if q_lora_rank is None:
            self.q_proj = linear(in_features, heads_qk, ("embed", "heads", "kv"), False)
            self.q_a_proj = self.q_a_norm = self.q_b_proj = None
        else:
            self.q_proj = None
            self.q_a_proj = linear(
                in_features, q_lora_rank, ("embed", "q_lora"), qkv_bias
            )
            self.q_a_norm = norm(q_lora_rank, param_axes=("q_lora",))
            self.q_b_proj = linear(
                q_lora_rank, heads_qk, ("q_lora", "heads", "kv"), False
            )
        self.kv_a_proj = linear(
            in_features,
            kv_lora_rank + qk_rope_head_dim,
            ("embed", "kv_lora"),
            qkv_bias,
        )
        self.kv_a_norm = norm(kv_lora_rank, param_axes=("kv_lora",))
        self.kv_b_proj = linear(
            kv_lora_rank,
            (num_heads, qk_nope_head_dim + v_head_dim),
            ("kv_lora", "heads", "kv"),
            False,
        )
        self.out = linear(
            (num_heads, v_head_dim),
            out_features or in_features,
            ("heads", "kv", "embed"),
            out_bias,
            axis=(-2, -1),
        )
        self.rotary = rotary
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
    ) -> MultiHeadLatentAttention:
        """Layer ``layer``'s MLA of a DeepSeek-V2/V3 ``config.json`` (a dict),
        as `flax_posenc.attention_schedule` reads it; ``overrides`` as
        `flax_posenc.nnx.MultiHeadAttention.from_hf_config`'s."""
        spec, fields = twins.attention_from_config(
            config,
            layer,
            overrides,
            rotary=rotary.RotaryEmbedding,
            rms_norm=None,
        )
        return cls(in_features=spec.hidden_size, rngs=rngs, **fields)

    def init_cache(self, input_shape: Sequence[int], dtype: DTypeLike | None = None):
        """Creates an empty cache for inputs ``[batch..., max_length, features]``:
        the latents and rotated keys of ``max_length`` tokens (a window's or a
        chunk's with ``sliding_window`` or ``chunk_size``)."""
        parameters.init_cache(
            self,
            _CACHE_NAMES,
            input_shape,
            dtype,
            (1, self.kv_lora_rank),
            (1, self.qk_rope_head_dim),
        )

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
        (arguments as `flax_posenc.nnx.MultiHeadAttention`'s)."""
        x = twins.attention_input(x)
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has {x.shape[-1]} features (shape {x.shape}), but this module "
                f"was built for in_features={self.in_features}."
            )
        if validation.check_bool("decode", decode) and self.cache_index is None:
            raise ValueError("decode=True needs a cache: call init_cache first.")
        twins.check_context_call(self, positions, decode)
        if self.q_proj is not None:
            q = self.q_proj(x)
        else:
            q = self.q_b_proj(self.q_a_norm(self.q_a_proj(x)))
        latent, k_rot = twins.split_latent(self.kv_a_proj(x), self.kv_lora_rank)
        latent = self.kv_a_norm(latent)[..., None, :]  # one "head" for the cache
        start = self.cache_index[...] if decode else 0
        given = positions
        positions, segments = twins.module_positions(
            x, positions, segments, start, decode
        )
        q_nope, q_rot = q[..., : self.qk_nope_head_dim], q[..., self.qk_nope_head_dim :]
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
                parameters.cache_step(
                    self, _CACHE_NAMES, latent, k_rot, positions, segments
                )
            )
        k, v = twins.latent_keys_values(
            self.kv_b_proj(latent[..., 0, :]), k_rot, self.qk_nope_head_dim
        )
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
            draw_dropout_rng=self.dropout_rngs,
            fits=fits,
            default_positions=given is None and not decode,
        )
        return self.out(out)
