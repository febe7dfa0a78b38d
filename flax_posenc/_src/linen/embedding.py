"""Token embeddings, and the input embedding that adds or concatenates positions."""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import embedding, twins, validation
from flax_posenc._src.linen import dropout

COMBINES = embedding.COMBINES


def pretrained_init(array: ArrayLike) -> Callable[..., jax.Array]:
    """An initializer that returns ``array`` (e.g. pretrained embeddings).

    The shape asked for must equal ``array.shape``; the values are cast to the
    parameter dtype.

    Args:
      array: the values, e.g. a ``[vocab_size, features]`` table.

    Returns:
      ``init(key, shape, dtype) -> array`` for ``embedding_init`` and friends.

    Raises:
      ValueError: (when called) the shape asked for differs from ``array.shape``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax_posenc.linen import TokenEmbedding, pretrained_init
      >>> table = jnp.arange(6.0).reshape(3, 2)
      >>> module = TokenEmbedding(3, 2, embedding_init=pretrained_init(table))
      >>> variables = module.init(jax.random.key(0), jnp.array([0]))
      >>> module.apply(variables, jnp.array([2, 1])).tolist()
      [[4.0, 5.0], [2.0, 3.0]]
    """
    values = jnp.asarray(array)

    def init(key, shape, dtype=jnp.float32):
        del key
        if tuple(shape) != values.shape:
            raise ValueError(
                f"pretrained array has shape {values.shape}, but the parameter "
                f"has shape {tuple(shape)}."
            )
        return values.astype(dtype)

    return init


class TokenEmbedding(nn.Module):
    """A learned lookup table from token ids to vectors.

    ``y = table[ids]``, times ``sqrt(features)`` if ``scale_by_sqrt_features``
    (as in Vaswani et al. 2017, ``https://arxiv.org/abs/1706.03762``, section
    3.4). `attend` gives tied output logits ``q @ table.T`` (Press and Wolf
    2017, ``https://arxiv.org/abs/1608.05859``).

    Out-of-range ids give rows of NaN (see `flax_posenc.embedding_lookup`);
    ``checked=True`` plus ``jax.experimental.checkify.checkify`` turns them into
    an error.

    Logical axis names: ``embedding``: ``("vocab", "embed")``
    (``embedding_axes``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import TokenEmbedding
      >>> module = TokenEmbedding(vocab_size=10, features=4)
      >>> ids = jnp.array([[1, 2, 3]])
      >>> variables = module.init(jax.random.key(0), ids)
      >>> jax.tree.map(jnp.shape, nn.meta.unbox(variables))
      {'params': {'embedding': (10, 4)}}
      >>> module.apply(variables, ids).shape
      (1, 3, 4)
      >>> module.apply(variables, jnp.ones((1, 3, 4)), method="attend").shape
      (1, 3, 10)

    Attributes:
      vocab_size: number of tokens.
      features: embedding size.
      scale_by_sqrt_features: multiply the embeddings by ``sqrt(features)``.
      checked: emit a ``checkify`` check that ids are in range.
      dtype: output dtype; default ``param_dtype``.
      param_dtype: dtype of the table.
      embedding_init: initializer of the table (Flax's ``nn.Embed`` default:
        variance scaling, fan-in, normal).
      embedding_axes: logical axis names of the table.
    """

    vocab_size: int
    features: int
    scale_by_sqrt_features: bool = False
    checked: bool = False
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    embedding_init: nn.initializers.Initializer = nn.initializers.variance_scaling(
        1.0, "fan_in", "normal", out_axis=0
    )
    embedding_axes: tuple[str | None, ...] = ("vocab", "embed")

    def setup(self):
        validation.check_int("vocab_size", self.vocab_size, minimum=1)
        validation.check_int("features", self.features, minimum=1)
        validation.module_dtypes(self.dtype, self.param_dtype)
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(self.embedding_init, self.embedding_axes),
            (self.vocab_size, self.features),
            self.param_dtype,
        )

    def __call__(self, ids: ArrayLike) -> jax.Array:
        """Embeddings ``[..., seq, features]`` of token ids ``[..., seq]``."""
        dtype = self.dtype or self.param_dtype
        validation.check_bools(scale_by_sqrt_features=self.scale_by_sqrt_features)
        rows = embedding.embedding_lookup(self.embedding, ids, checked=self.checked)
        if self.scale_by_sqrt_features:
            rows = rows * math.sqrt(self.features)
        return rows.astype(dtype)

    def attend(self, query: ArrayLike) -> jax.Array:
        """Tied logits ``query @ table.T``: ``[..., features] -> [..., vocab]``."""
        dtype = self.dtype or self.param_dtype
        table = self.embedding.astype(dtype)
        return embedding.embedding_attend(jnp.asarray(query, dtype), table)


class InputEmbedding(nn.Module):
    """Token embedding combined with positions and token types, a norm, dropout.

    ``combine="add"``: ``y = tok + pos`` (Vaswani et al. 2017); the position
    module must produce ``features`` features. ``combine="concat"``:
    ``y = [tok, pos]`` along the features, ``features + pos_features`` in all.
    ``position`` is any module called as ``position(tok, positions=positions)``,
    e.g. `SinusoidalPositionEmbedding` or
    `LearnedPositionEmbedding`; ``None`` gives token embeddings alone
    (for models whose positions live in attention: RoPE, ALiBi, T5 biases), and
    then ``positions`` is not used.

    With ``num_token_types`` (BERT: 2), a learned table of token-type
    (segment) embeddings is added: ``y += type_table[token_types]``. ``norm``
    (BERT's LayerNorm, BLOOM's ``word_embeddings_layernorm``) normalizes the
    sum; dropout comes last. `attend` gives tied output logits against the
    token table.

    Logical axis names: ``token/embedding``: ``("vocab", "embed")``
    (``embedding_axes``), ``token_type/embedding``: ``(None, "embed")``
    (``token_type_axes``); a ``position`` or ``norm`` module's are its own.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import InputEmbedding, LearnedPositionEmbedding
      >>> module = InputEmbedding(
      ...     vocab_size=10, features=8,
      ...     position=LearnedPositionEmbedding(max_length=32, features=8))
      >>> ids = jnp.array([[1, 2, 3]])
      >>> variables = module.init(jax.random.key(0), ids)
      >>> jax.tree.map(jnp.shape, nn.meta.unbox(variables))
      {'params': {'position': {'embedding': (32, 8)}, 'token': {'embedding': (10, 8)}}}
      >>> module.apply(variables, ids).shape
      (1, 3, 8)
      >>> module.apply(variables, jnp.ones((1, 3, 8)), method="attend").shape
      (1, 3, 10)

    Attributes:
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
      param_dtype: dtype of the token table.
      embedding_init: initializer of the token and token-type tables.
      embedding_axes: logical axis names of the token table.
      token_type_axes: logical axis names of the token-type table.
    """

    vocab_size: int
    features: int
    position: nn.Module | None = None
    combine: str = "add"
    num_token_types: int | None = None
    norm: nn.Module | None = None
    dropout_rate: float = 0.0
    scale_by_sqrt_features: bool = False
    checked: bool = False
    deterministic: bool | None = None
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    embedding_init: nn.initializers.Initializer = nn.initializers.variance_scaling(
        1.0, "fan_in", "normal", out_axis=0
    )
    embedding_axes: tuple[str | None, ...] = ("vocab", "embed")
    token_type_axes: tuple[str | None, ...] = (None, "embed")

    def setup(self):
        validation.check_choice("combine", self.combine, COMBINES)
        validation.check_rate("dropout_rate", self.dropout_rate)
        validation.check_module("position", self.position)
        validation.check_module("norm", self.norm)
        self.token = self._table(
            self.vocab_size, self.embedding_axes, self.scale_by_sqrt_features
        )
        if self.num_token_types is not None:
            types = validation.check_int(
                "num_token_types", self.num_token_types, minimum=1
            )
            self.token_type = self._table(types, self.token_type_axes, False)
        else:
            self.token_type = None
        self.dropout = nn.Dropout(self.dropout_rate)

    def _table(self, size: int, axes: tuple[str | None, ...], scale: bool):
        return TokenEmbedding(
            size,
            self.features,
            scale_by_sqrt_features=scale,
            checked=self.checked,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=self.embedding_init,
            embedding_axes=axes,
        )

    def __call__(
        self,
        ids: ArrayLike,
        *,
        positions: ArrayLike | None = None,
        token_types: ArrayLike | None = None,
        deterministic: bool | None = None,
    ) -> jax.Array:
        """Input embeddings ``[..., seq, features(+pos)]`` of ids ``[..., seq]``.

        ``token_types``: integer ``[..., seq]``; default all 0 when the module
        has a token-type table, and an error when it has none.
        """
        y = twins.input_embeddings(self, ids, positions, token_types)
        return dropout.dropout(
            y, self.dropout_rate, self.deterministic, deterministic, self.dropout
        )

    def attend(self, query: ArrayLike) -> jax.Array:
        """Tied logits ``query @ table.T``: ``[..., features] -> [..., vocab]``."""
        return self.token.attend(query)
