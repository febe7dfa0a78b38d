"""NNX twin of RotaryEmbedding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx
from jax.typing import ArrayLike

from flax_posenc._src import twins
from flax_posenc._src.rope import apply
from flax_posenc._src.rope import config as config_module
from flax_posenc._src.rope.scalings import RopeScaling


class RotaryEmbedding(nnx.Module):
    """Rotary position embeddings for queries and keys (NNX).

    The twin of `flax_posenc.linen.RotaryEmbedding`: `flax_posenc.apply_rope`
    with the same ``positions`` on ``q`` and ``k``; no parameters, so no
    ``rngs``. `from_hf_config` builds it from a published ``config.json``.

    Logical axis names: none (no parameters).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax_posenc.nnx import RotaryEmbedding
      >>> rotary = RotaryEmbedding(scaling={"rope_type": "linear", "factor": 2.0})
      >>> q = k = jnp.ones((2, 5, 4, 8))
      >>> q_rot, k_rot = rotary(q, k)
      >>> q_rot.shape
      (2, 5, 4, 8)

    Args:
      base: frequency base; None reads the dict's ``rope_theta``, else 10000.
      layout: ``"halves"`` or ``"interleaved"``.
      rotary_dim: leading features rotated; default all (or the dict's
        ``partial_rotary_factor`` of the head).
      scaling: None, a ``rope_scaling`` / ``rope_parameters`` dict or a typed
        scaling (see `flax_posenc.rope_frequencies`).
      max_position_embeddings: the model config's value.
      mrope_section: frequencies per position axis (M-RoPE).
      mrope_interleaved: Qwen3-VL's interleaved assignment of the bands.
      head_dim: when set, ``q`` and ``k`` must have this last axis.
    """

    def __init__(
        self,
        *,
        base: float | None = None,
        layout: str = "halves",
        rotary_dim: int | None = None,
        scaling: Mapping[str, Any] | RopeScaling | None = None,
        max_position_embeddings: int | None = None,
        mrope_section: tuple[int, ...] | None = None,
        mrope_interleaved: bool | None = None,
        head_dim: int | None = None,
    ):
        self.base, self.layout, self.rotary_dim = base, layout, rotary_dim
        self.scaling = twins.freeze_scaling(scaling)
        self.max_position_embeddings = max_position_embeddings
        self.mrope_section = mrope_section
        self.mrope_interleaved = mrope_interleaved
        self.head_dim = head_dim

    @classmethod
    def from_hf_config(
        cls,
        config: Mapping[str, Any],
        *,
        layer_type: str | None = None,
        layout: str | None = None,
    ) -> RotaryEmbedding:
        """The rotary embedding of a Hugging Face ``config.json`` (as a dict).

        Reads it as `flax_posenc.rope_config_from_hf` does.
        """
        found = config_module.rope_config_from_hf(
            config, layer_type=layer_type, layout=layout
        )
        return cls(**found.module_fields)

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
