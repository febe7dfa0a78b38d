"""NNX twin of TokenEmbedding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from flax_posenc import _validation, embedding
from flax_posenc.nnx import _params

# As Flax's Embed (and the linen twin): variance scaling, fan-in, normal.
TOKEN_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


class TokenEmbedding(nnx.Module):
    """A learned lookup table from token ids to vectors (NNX).

    The twin of `flax_posenc.linen.TokenEmbedding`.

    ``y = table[ids]`` (times ``sqrt(features)`` if
    ``scale_by_sqrt_features``); `attend` gives tied logits ``q @ table.T``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import TokenEmbedding
      >>> module = TokenEmbedding(10, 4, rngs=nnx.Rngs(0))
      >>> module(jnp.array([[1, 2, 3]])).shape
      (1, 3, 4)
      >>> module.attend(jnp.ones((1, 3, 4))).shape
      (1, 3, 10)

    Args:
      vocab_size: number of tokens.
      features: embedding size.
      scale_by_sqrt_features: multiply the embeddings by ``sqrt(features)``.
      checked: emit a ``checkify`` check that ids are in range.
      dtype: output dtype; default ``param_dtype``.
      param_dtype: dtype of the table.
      embedding_init: initializer of the table (variance scaling, fan-in,
        normal, as Flax's ``Embed``).
      embedding_axes: logical axis names of the table.
      rngs: the PRNG streams (``params``).
    """

    def __init__(
        self,
        vocab_size: int,
        features: int,
        *,
        scale_by_sqrt_features: bool = False,
        checked: bool = False,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        embedding_init: nnx.Initializer = TOKEN_INIT,
        embedding_axes: tuple[str | None, ...] = ("vocab", "embed"),
        rngs: nnx.Rngs,
    ):
        _validation.check_int("vocab_size", vocab_size, minimum=1)
        _validation.check_int("features", features, minimum=1)
        self.features = features
        self.scale_by_sqrt_features = scale_by_sqrt_features
        self.checked = checked
        self.dtype = dtype or param_dtype
        self.embedding = _params.param(
            embedding_init, rngs, (vocab_size, features), param_dtype, embedding_axes
        )

    def __call__(self, ids: ArrayLike) -> jax.Array:
        """Embeddings ``[..., seq, features]`` of token ids ``[..., seq]``."""
        rows = embedding.embedding_lookup(
            self.embedding[...], ids, checked=self.checked
        )
        if self.scale_by_sqrt_features:
            rows = rows * math.sqrt(self.features)
        return rows.astype(self.dtype)

    def attend(self, query: ArrayLike) -> jax.Array:
        """Tied logits ``query @ table.T``: ``[..., features] -> [..., vocab]``."""
        table = self.embedding[...].astype(self.dtype)
        return embedding.embedding_attend(jnp.asarray(query, self.dtype), table)
