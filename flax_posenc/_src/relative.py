"""T5's bucketed relative positions (Raffel et al. 2020)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from flax_posenc._src import validation


def relative_position_bucket(
    relative_position: ArrayLike,
    *,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> jax.Array:
    r"""T5's bucket of each relative position ``key - query``.

    With ``B = num_buckets`` (halved when ``bidirectional``, the upper half for
    keys after the query) and ``n`` the distance (``|r|`` when bidirectional,
    ``max(-r, 0)`` when causal, so later keys share bucket 0): distances below
    ``E = B // 2`` have a bucket each, larger ones share logarithmically sized
    buckets, $E + \lfloor \ln(n/E) / \ln(D/E) \cdot (B - E) \rfloor$,
    capped at ``B - 1`` (``D = max_distance``). The logarithm is computed in
    float32, as in Mesh TensorFlow and Hugging Face T5.

    Distances are exact for every int32 ``relative_position`` (``-2**31``
    included); positions, here and in `relative_position_bias`, follow the
    int32 rule of `apply_rope`.

    Args:
      relative_position: integer array, ``key_position - query_position``, in
        the int32 range (checked unless traced).
      bidirectional: encoder-style (both directions) or causal buckets.
      num_buckets: total number of buckets (even when bidirectional).
      max_distance: distance from which every position shares the last bucket.

    Returns:
      int32 array of ``relative_position``'s shape, values in
      ``[0, num_buckets)``.

    Raises:
      TypeError: ``relative_position`` not integer.
      ValueError: bucket counts or distances too small for the construction,
        concrete values outside the int32 range.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> rel = jnp.array([-128, -16, -8, -1, 0, 1, 8, 16, 128])
      >>> fp.relative_position_bucket(rel).tolist()
      [15, 10, 8, 1, 0, 17, 24, 26, 31]
      >>> fp.relative_position_bucket(rel, bidirectional=False).tolist()
      [31, 16, 8, 1, 0, 0, 0, 0, 0]

    References:
      Raffel et al., "Exploring the Limits of Transfer Learning with a Unified
      Text-to-Text Transformer", 2020. https://arxiv.org/abs/1910.10683
    """
    relative = validation.position_array("relative_position", relative_position)
    buckets, max_distance = check_buckets(
        num_buckets, max_distance, bidirectional=bidirectional
    )
    return _relative_bucket(
        relative,
        bidirectional=bool(bidirectional),
        buckets=buckets,
        max_distance=max_distance,
    )


# The public functions check their arguments, then run one compiled program
# per call signature (called eagerly, each operation would compile on its own).
@functools.partial(
    jax.jit, static_argnames=("bidirectional", "buckets", "max_distance")
)
def _relative_bucket(relative, *, bidirectional, buckets, max_distance):
    bits = jax.lax.bitcast_convert_type(relative, jnp.uint32)
    distance = jnp.where(relative >= 0, bits, jnp.uint32(0) - bits)  # exact |r|
    return _bucket(
        relative > 0,
        distance,
        bidirectional=bidirectional,
        buckets=buckets,
        max_distance=max_distance,
    )


def check_buckets(
    num_buckets: int, max_distance: int, *, bidirectional: bool
) -> tuple[int, int]:
    """``(buckets per direction, max_distance)``, checked (also for the modules)."""
    num_buckets = validation.check_int("num_buckets", num_buckets, minimum=2)
    if validation.check_bool("bidirectional", bidirectional):
        if num_buckets % 2 or num_buckets < 4:
            raise ValueError(
                f"bidirectional buckets need an even num_buckets >= 4, got "
                f"{num_buckets}."
            )
        num_buckets //= 2
    max_distance = validation.check_int(
        "max_distance", max_distance, minimum=num_buckets // 2 + 1
    )
    return num_buckets, max_distance


def _bucket(after, distance, *, bidirectional, buckets, max_distance):
    """The bucket from the direction (key after query) and the uint32 distance;
    ``buckets`` per direction and ``max_distance`` as `check_buckets` returns."""
    if bidirectional:
        offset = jnp.where(after, buckets, 0)
    else:
        offset = 0
        distance = jnp.where(after, jnp.uint32(0), distance)  # max(-r, 0)
    max_exact = buckets // 2
    # Same float32 operations in the same order as the reference, so that
    # truncation lands in the same bucket. Distances below max_exact take the
    # other branch; the max() only keeps the logarithm finite for them.
    ratio = jnp.maximum(distance, jnp.uint32(max_exact)).astype(jnp.float32)
    ratio = ratio / max_exact
    log_ratio = jnp.log(ratio) / jnp.float32(math.log(max_distance / max_exact))
    large = max_exact + (log_ratio * (buckets - max_exact)).astype(jnp.int32)
    large = jnp.minimum(large, buckets - 1)
    exact = distance < jnp.uint32(max_exact)
    return offset + jnp.where(exact, distance.astype(jnp.int32), large)


def relative_position_bias(
    table: ArrayLike,
    q_positions: ArrayLike,
    k_positions: ArrayLike,
    *,
    bidirectional: bool = True,
    max_distance: int = 128,
) -> jax.Array:
    r"""T5 attention biases: $b[h, i, j] = T[h, \mathrm{bucket}(k_j - q_i)]$.

    Args:
      table: learned biases ``[heads, num_buckets]``.
      q_positions: integer ``[..., q_len]`` (int32 range; distances exact).
      k_positions: integer ``[..., k_len]``; leading axes broadcast.
      bidirectional: see `relative_position_bucket`.
      max_distance: see `relative_position_bucket`.

    Returns:
      ``[..., heads, q_len, k_len]`` in ``table``'s dtype, ready to add to the
      attention logits.

    Raises:
      ValueError: ``table`` not 2-D, positions of rank 0 or whose leading axes
        do not broadcast, and as `relative_position_bucket`.
      TypeError: positions not integer, ``table`` not floating.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> table = jnp.arange(2 * 32.0).reshape(2, 32)
      >>> bias = fp.relative_position_bias(table, jnp.arange(3), jnp.arange(3))
      >>> bias.shape
      (2, 3, 3)
      >>> bias[0].tolist()  # buckets: 0 on the diagonal, 17.. after, 1.. before
      [[0.0, 17.0, 18.0], [1.0, 0.0, 17.0], [2.0, 1.0, 0.0]]

    References:
      Raffel et al., "Exploring the Limits of Transfer Learning with a Unified
      Text-to-Text Transformer", 2020.
      https://arxiv.org/abs/1910.10683
    """
    table = validation.floating_array("table", table)
    q_positions = validation.position_array("q_positions", q_positions)
    k_positions = validation.position_array("k_positions", k_positions)
    if table.ndim != 2:
        raise ValueError(f"table must be [heads, num_buckets], got {table.shape}.")
    validation.check_query_key_positions(q_positions, k_positions)
    buckets, max_distance = check_buckets(
        table.shape[1], max_distance, bidirectional=bidirectional
    )
    return _table_bias(
        table,
        q_positions,
        k_positions,
        bidirectional=bool(bidirectional),
        buckets=buckets,
        max_distance=max_distance,
    )


@functools.partial(
    jax.jit, static_argnames=("bidirectional", "buckets", "max_distance")
)
def _table_bias(
    table, q_positions, k_positions, *, bidirectional, buckets, max_distance
):
    q, k = q_positions[..., :, None], k_positions[..., None, :]
    index = _bucket(
        k > q,
        validation.abs_distance(q, k),
        bidirectional=bidirectional,
        buckets=buckets,
        max_distance=max_distance,
    )
    return jnp.moveaxis(table[:, index], 0, -3)
