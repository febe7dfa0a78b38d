"""The rotary position embedding module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from jax.typing import ArrayLike

from flax_posenc import rope


class RotaryEmbedding(nn.Module):
    """Rotary position embeddings for queries and keys (Su et al. 2021).

    ``https://arxiv.org/abs/2104.09864``. Applies `flax_posenc.apply_rope`
    with the same ``positions`` to ``q`` and ``k``; no parameters. With
    ``positions=None`` they are ``arange(seq)``. For decoding pass the cache
    offsets (``positions = offset[:, None] + arange(new)``), for packed rows the
    restarting positions.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax_posenc.linen import RotaryEmbedding
      >>> rotary = RotaryEmbedding(scaling={"rope_type": "linear", "factor": 2.0})
      >>> q = k = jnp.ones((2, 5, 4, 8))  # [batch, seq, heads, head_dim]
      >>> q_rot, k_rot = rotary.apply({}, q, k)
      >>> q_rot.shape, k_rot.shape
      ((2, 5, 4, 8), (2, 5, 4, 8))

    Attributes:
      base: frequency base (``rope_theta``).
      layout: ``"halves"`` (GPT-NeoX / Hugging Face) or ``"interleaved"``
        (GPT-J / Meta).
      rotary_dim: number of leading features rotated; default all.
      scaling: None, a Hugging Face ``rope_scaling`` dict, or a typed scaling
        (see `flax_posenc.rope_frequencies`).
      max_position_embeddings: the model config's value, for ``rope_scaling``
        dicts without ``original_max_position_embeddings``.
    """

    base: float = 10_000.0
    layout: str = "halves"
    rotary_dim: int | None = None
    scaling: Mapping[str, Any] | rope.RopeScaling | None = None
    max_position_embeddings: int | None = None

    @nn.compact
    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        *,
        positions: ArrayLike | None = None,
        seq_len: int | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Rotated ``(q, k)``, each ``[..., seq, heads, head_dim]``.

        ``seq_len`` (static) drives ``"dynamic"`` scaling.
        """
        if positions is None:
            # apply_rope checks ranks itself; only q's seq axis is read here.
            if jax.numpy.ndim(q) < 3:
                raise ValueError(
                    f"q must be [..., seq, heads, head_dim], got shape "
                    f"{jax.numpy.shape(q)}."
                )
            positions = jax.numpy.arange(q.shape[-3])

        def rotate(x):
            return rope.apply_rope(
                x,
                positions,
                base=self.base,
                layout=self.layout,
                rotary_dim=self.rotary_dim,
                scaling=self.scaling,
                seq_len=seq_len,
                max_position_embeddings=self.max_position_embeddings,
            )

        return rotate(q), rotate(k)
