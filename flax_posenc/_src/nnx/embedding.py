"""NNX twin of TokenEmbedding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import embedding, twins, validation
from flax_posenc._src.nnx import parameters

# As Flax's Embed (and the linen twin): variance scaling, fan-in, normal.
TOKEN_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


class TokenEmbedding(nnx.Module):
    """A learned lookup table from token ids to vectors (NNX).

    The twin of `flax_posenc.linen.TokenEmbedding`.

    ``y = table[ids]`` (times ``sqrt(features)`` if
    ``scale_by_sqrt_features``); `attend` gives tied logits ``q @ table.T``.

    Logical axis names: ``embedding``: ``("vocab", "embed")``
    (``embedding_axes``).

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
        validation.check_int("vocab_size", vocab_size, minimum=1)
        validation.check_int("features", features, minimum=1)
        validation.check_bools(
            scale_by_sqrt_features=scale_by_sqrt_features, checked=checked
        )
        self.features = features
        self.scale_by_sqrt_features = scale_by_sqrt_features
        self.checked = checked
        self.dtype = validation.module_dtypes(dtype, param_dtype)
        self.embedding = parameters.param(
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


class InputEmbedding(nnx.Module):
    """Token embedding combined with positions and token types, a norm, dropout (NNX).

    The twin of `flax_posenc.linen.InputEmbedding`: ``tok + pos`` (or
    ``[tok, pos]``), ``+ type_table[token_types]``, ``norm``, dropout.

    Logical axis names: ``token/embedding``: ``("vocab", "embed")``
    (``embedding_axes``), ``token_type/embedding``: ``(None, "embed")``
    (``token_type_axes``); a ``position`` or ``norm`` module's are its own.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import InputEmbedding, LearnedPositionEmbedding
      >>> rngs = nnx.Rngs(0)
      >>> module = InputEmbedding(
      ...     10, 8, position=LearnedPositionEmbedding(32, 8, rngs=rngs), rngs=rngs)
      >>> module(jnp.array([[1, 2, 3]])).shape
      (1, 3, 8)

    Args:
      vocab_size: number of tokens.
      features: token embedding size.
      position: the position embedding module, or None.
      combine: ``"add"`` or ``"concat"``.
      num_token_types: size of the token-type table (BERT: 2); None for none.
      norm: a normalization module applied to the sum (BERT, BLOOM), or None.
      dropout_rate: dropout applied to the combined embeddings.
      scale_by_sqrt_features: scale token embeddings by ``sqrt(features)``.
      checked: emit ``checkify`` checks that ids are in range.
      deterministic: disable dropout; may be overridden in the call.
      dtype: output dtype of the token embedding; default ``param_dtype``.
      param_dtype: dtype of the tables.
      embedding_init: initializer of the token and token-type tables.
      embedding_axes: logical axis names of the token table.
      token_type_axes: logical axis names of the token-type table.
      rngs: the PRNG streams (``params``; ``dropout`` with a dropout rate).
    """

    def __init__(
        self,
        vocab_size: int,
        features: int,
        *,
        position: nnx.Module | None = None,
        combine: str = "add",
        num_token_types: int | None = None,
        norm: nnx.Module | None = None,
        dropout_rate: float = 0.0,
        scale_by_sqrt_features: bool = False,
        checked: bool = False,
        deterministic: bool | None = None,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        embedding_init: nnx.Initializer = TOKEN_INIT,
        embedding_axes: tuple[str | None, ...] = ("vocab", "embed"),
        token_type_axes: tuple[str | None, ...] = (None, "embed"),
        rngs: nnx.Rngs,
    ):
        validation.check_choice("combine", combine, embedding.COMBINES)
        self.combine = combine
        validation.check_module("position", position)
        validation.check_module("norm", norm)
        self.dropout_rate = validation.check_rate("dropout_rate", dropout_rate)

        def table(size, axes, scale):
            return TokenEmbedding(
                size,
                features,
                scale_by_sqrt_features=scale,
                checked=checked,
                dtype=dtype,
                param_dtype=param_dtype,
                embedding_init=embedding_init,
                embedding_axes=axes,
                rngs=rngs,
            )

        self.token = table(vocab_size, embedding_axes, scale_by_sqrt_features)
        self.token_type = (
            table(
                validation.check_int("num_token_types", num_token_types, minimum=1),
                token_type_axes,
                False,
            )
            if num_token_types is not None
            else None
        )
        self.position, self.norm = position, norm
        self.dropout = parameters.dropout_layer(self.dropout_rate, deterministic, rngs)

    def __call__(
        self,
        ids: ArrayLike,
        *,
        positions: ArrayLike | None = None,
        token_types: ArrayLike | None = None,
        deterministic: bool | None = None,
    ) -> jax.Array:
        """Input embeddings ``[..., seq, features(+pos)]`` of ids ``[..., seq]``."""
        y = twins.input_embeddings(self, ids, positions, token_types)
        return parameters.dropout(self.dropout, y, deterministic)

    def attend(self, query: ArrayLike) -> jax.Array:
        """Tied logits ``query @ table.T``: ``[..., features] -> [..., vocab]``."""
        return self.token.attend(query)
