"""Embedding-table lookups with an explicit out-of-range policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify
from jax.typing import ArrayLike

from flax_posenc._src import validation


def embedding_lookup(
    table: ArrayLike, ids: ArrayLike, *, checked: bool = False
) -> jax.Array:
    r"""Rows of an embedding table: $y[..., :] = T[\mathrm{ids}[...], :]$.

    Serves token embeddings (``ids`` are token ids) and learned position
    embeddings (``ids`` are positions).

    Out-of-range policy: an id outside ``[0, num_rows)`` gives a row of NaN.
    Nothing is clamped or wrapped (``jnp.take`` would read ``-1`` as the last
    row); the NaN reaches the loss, where it cannot go unnoticed. With
    ``checked=True`` the function also emits a ``checkify`` check, so that
    ``jax.experimental.checkify.checkify(f)(...)`` returns an error naming the
    range; without the ``checkify`` wrapper, ``checked=True`` fails to trace.

    Args:
      table: floating array ``[num_rows, features]``.
      ids: integer array ``[...]``, any integer dtype, read as int32: concrete
        ids outside the int32 range raise ``ValueError`` (they would wrap).
      checked: add a ``checkify`` check that every id is in range.

    Returns:
      ``[..., features]`` array of ``table.dtype``.

    Raises:
      TypeError: ``ids`` not integer, ``table`` not floating.
      ValueError: ``table`` not 2-D, or without rows; concrete ``ids`` outside
        the int32 range.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> table = jnp.arange(6.0).reshape(3, 2)
      >>> fp.embedding_lookup(table, jnp.array([2, 0, 3])).tolist()
      [[4.0, 5.0], [0.0, 1.0], [nan, nan]]

    References:
      Vaswani et al., "Attention Is All You Need", 2017 (section 3.4).
      https://arxiv.org/abs/1706.03762
    """
    table = validation.floating_array("table", table)
    ids = validation.position_array("ids", ids)
    if table.ndim != 2:
        raise ValueError(
            f"table must be [num_rows, features], got shape {table.shape}."
        )
    checked = validation.check_bool("checked", checked)
    num_rows = table.shape[0]
    if num_rows == 0:
        raise ValueError(
            f"table has no rows (shape {table.shape}): no id can be looked up."
        )
    if checked and ids.size:  # no ids, nothing to check (and no min or max)
        checkify.check(
            jnp.all((ids >= 0) & (ids < num_rows)),
            f"embedding_lookup: ids must lie in [0, {num_rows}); "
            "got min {lo}, max {hi}",
            lo=jnp.min(ids),
            hi=jnp.max(ids),
        )
    return _lookup(table, ids)


@jax.jit
def _lookup(table, ids):
    # One compiled program per call signature, not one per operation when
    # called eagerly.
    valid = (ids >= 0) & (ids < table.shape[0])
    rows = jnp.take(table, jnp.where(valid, ids, 0), axis=0)
    return jnp.where(valid[..., None], rows, jnp.nan)


def embedding_attend(query: ArrayLike, table: ArrayLike) -> jax.Array:
    r"""Logits against every row of a (tied) embedding table: $q\,T^\top$.

    Args:
      query: ``[..., features]``.
      table: ``[num_rows, features]``.

    Returns:
      ``[..., num_rows]`` in the promoted dtype of ``query`` and ``table``.

    Raises:
      ValueError: ``table`` not 2-D, or feature sizes differ.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> fp.embedding_attend(jnp.ones(2), jnp.arange(6.0).reshape(3, 2)).tolist()
      [1.0, 5.0, 9.0]

    References:
      Press and Wolf, "Using the Output Embedding to Improve Language Models",
      2017.
      https://arxiv.org/abs/1608.05859
    """
    query = jnp.asarray(query)
    table = jnp.asarray(table)
    if table.ndim != 2 or query.shape[-1:] != table.shape[1:]:
        raise ValueError(
            f"query [..., features] and table [num_rows, features] must share "
            f"features; got {query.shape} and {table.shape}."
        )
    return jnp.einsum("...f,vf->...v", query, table)


COMBINES = ("add", "concat")
