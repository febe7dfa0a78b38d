"""Context parallelism over a device mesh: the order that balances causal work.

What goes here: what a ring of devices needs to share one long sequence.
Each device holds one shard of the sequence; under a causal mask the shard
of the first tokens has far less to attend to than the last, so the tokens
are reordered before sharding (the "zig-zag" or dual-chunk order of Llama 3's
context parallelism, also MaxText's). Masks are computed from positions, so
permuting tokens, positions and segments together leaves every mask exact:
no mask code knows about the order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flax_posenc._src import validation


def load_balanced_order(length: int, num_shards: int) -> jax.Array:
    """The permutation of ``arange(length)`` that balances causal attention over shards.

    The sequence is cut into ``2 * num_shards`` equal chunks; shard ``i`` (of
    the result split into ``num_shards`` equal parts) takes chunk ``i`` and
    chunk ``2 * num_shards - 1 - i``, so each shard holds one early and one
    late chunk and every shard's queries see the same number of keys under a
    causal mask. Apply it to the tokens, their positions and their segments
    alike (``x[..., order, :]``, ``positions[..., order]``) before sharding the
    sequence axis; ``jnp.argsort(order)`` restores the original order.

    Args:
      length: the sequence length (static), a multiple of ``2 * num_shards``.
      num_shards: the number of devices along the sequence (static, >= 1).

    Returns:
      int32 ``[length]``: a permutation of ``arange(length)``.

    Raises:
      ValueError: ``length`` not a positive multiple of ``2 * num_shards``,
        ``num_shards < 1``.
      TypeError: sizes not ints.

    Examples:
      >>> import flax_posenc as fp
      >>> fp.load_balanced_order(8, 2).tolist()
      [0, 1, 6, 7, 2, 3, 4, 5]

    References:
      Llama Team, "The Llama 3 Herd of Models", 2024 (section 3.3.2, context
      parallelism). https://arxiv.org/abs/2407.21783
    """
    num_shards = validation.check_int("num_shards", num_shards, minimum=1)
    length = validation.check_int("length", length, minimum=1)
    chunks = 2 * num_shards
    if length % chunks:
        raise ValueError(
            f"length {length} must be a multiple of 2 * num_shards = {chunks}: "
            "each shard takes two equal chunks of the sequence."
        )
    pieces = np.arange(length).reshape(chunks, length // chunks)
    firsts = np.arange(num_shards)
    order = np.stack([pieces[firsts], pieces[chunks - 1 - firsts]], axis=1)
    return jnp.asarray(order.reshape(length), jnp.int32)
