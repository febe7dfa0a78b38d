"""The rotary position embedding module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from jax.typing import ArrayLike

from flax_posenc._src.rope import apply
from flax_posenc._src.rope import config as config_module
from flax_posenc._src.rope.scalings import RopeScaling


class RotaryEmbedding(nn.Module):
    """Rotary position embeddings for queries and keys (Su et al. 2021).

    ``https://arxiv.org/abs/2104.09864``. Applies `flax_posenc.apply_rope`
    with the same ``positions`` to ``q`` and ``k``; no parameters. With
    ``positions=None`` they are ``arange(seq)``. For decoding pass the cache
    offsets (``positions = offset[:, None] + arange(new)``), for packed rows the
    restarting positions; for M-RoPE ``[..., seq, A]`` positions.

    `RotaryEmbedding.from_hf_config` builds the module from a published
    model's ``config.json``.

    Logical axis names: none (no parameters).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax_posenc.linen import RotaryEmbedding
      >>> rotary = RotaryEmbedding(scaling={"rope_type": "linear", "factor": 2.0})
      >>> q = k = jnp.ones((2, 5, 4, 8))  # [batch, seq, heads, head_dim]
      >>> q_rot, k_rot = rotary.apply({}, q, k)
      >>> q_rot.shape, k_rot.shape
      ((2, 5, 4, 8), (2, 5, 4, 8))

    Attributes:
      base: frequency base (``rope_theta``); None reads the dict's
        ``rope_theta``, else 10000.
      layout: ``"halves"`` (GPT-NeoX / Hugging Face) or ``"interleaved"``
        (GPT-J / Meta).
      rotary_dim: number of leading features rotated; default all (or the
        dict's ``partial_rotary_factor`` of the head).
      scaling: None, a Hugging Face ``rope_scaling`` / ``rope_parameters``
        dict, or a typed scaling (see `flax_posenc.rope_frequencies`).
      max_position_embeddings: the model config's value (dynamic NTK's ``L``;
        stands in for a dict's missing ``original_max_position_embeddings``).
      mrope_section: frequencies per position axis (M-RoPE); None for 1-D.
      mrope_interleaved: Qwen3-VL's interleaved assignment of the bands.
      head_dim: when set, ``q`` and ``k`` must have this last axis (set by
        `from_hf_config`).
    """

    base: float | None = None
    layout: str = "halves"
    rotary_dim: int | None = None
    scaling: Mapping[str, Any] | RopeScaling | None = None
    max_position_embeddings: int | None = None
    mrope_section: tuple[int, ...] | None = None
    mrope_interleaved: bool | None = None
    head_dim: int | None = None

    @classmethod
    def from_hf_config(
        cls,
        config: Mapping[str, Any],
        *,
        layer_type: str | None = None,
        layout: str | None = None,
    ) -> RotaryEmbedding:
        """The rotary embedding of a Hugging Face ``config.json`` (as a dict).

        Reads it as `flax_posenc.rope_config_from_hf` does (which keys, the
        layout per ``model_type``, per-layer types, multimodal configs).

        Examples:
          >>> import jax.numpy as jnp
          >>> from flax_posenc.linen import RotaryEmbedding
          >>> pythia = {"model_type": "gpt_neox", "hidden_size": 512,
          ...           "num_attention_heads": 8, "rotary_pct": 0.25,
          ...           "rotary_emb_base": 10000, "max_position_embeddings": 2048}
          >>> rotary = RotaryEmbedding.from_hf_config(pythia)
          >>> rotary.rotary_dim, rotary.layout
          (16, 'halves')
          >>> q = k = jnp.ones((1, 3, 8, 64))
          >>> q_rot, k_rot = rotary.apply({}, q, k, positions=jnp.arange(3)[None])
        """
        found = config_module.rope_config_from_hf(
            config, layer_type=layer_type, layout=layout
        )
        return cls(**found.module_fields)

    @nn.compact
    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        *,
        positions: ArrayLike | None = None,
        seq_len: int | None = None,
        text: bool = False,
    ) -> tuple[jax.Array, jax.Array]:
        """Rotated ``(q, k)``, each ``[..., seq, heads, head_dim]``.

        ``seq_len`` (static) drives ``"dynamic"`` and ``"longrope"`` scaling.
        ``text``: ``positions`` are ``[..., seq]`` text positions, every M-RoPE
        axis equal (what an attention module passes).
        """
        return apply.rotate(
            (q, k),
            positions,
            base=self.base,
            layout=self.layout,
            rotary_dim=self.rotary_dim,
            scaling=self.scaling,
            seq_len=seq_len,
            max_position_embeddings=self.max_position_embeddings,
            mrope_section=self.mrope_section,
            mrope_interleaved=self.mrope_interleaved,
            head_dim=self.head_dim,
            text=text,
            default_positions=True,
        )
