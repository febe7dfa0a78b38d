"""The sequence tasks: Bucket Sort and Reverse String (Delétang et al. 2023).

An example of length ``n`` is ``n`` input tokens followed by ``n`` placeholder
tokens; the model reads all ``2n`` at once (encoder-only, non-autoregressive)
and is scored at the placeholders, where the target is the sorted (or the
reversed) input.

Batches have a fixed shape, so one compiled program serves every length: the
arrays hold an input block and an output block of ``max_len`` slots each, and
slots past ``n`` in either block are padding (``valid`` is False). Because
every scheme in flax_posenc reads positions explicitly, the blocks need not be
contiguous in memory: input slot ``i`` has position ``i``, output slot ``j``
has position ``n + j``, exactly as if the sequence were laid out contiguously.

Training packs two examples into each row (:func:`pack_pairs`): lengths ``n``
and ``max_len + 1 - n``, so every row is exactly ``2 (max_len + 1)`` slots with
no padding, about half the slots of padded rows. Each example keeps its own
positions (they restart in its segment) and attention stays inside a segment,
so the model computes for each example exactly what it would alone. As ``n``
is uniform on ``1..max_len``, so is ``max_len + 1 - n``: packing leaves the
distribution of lengths unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from train_demo import names


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: its name, number of symbols and target function."""

    name: str
    num_symbols: int

    @property
    def placeholder(self) -> int:
        return self.num_symbols

    @property
    def pad(self) -> int:
        return self.num_symbols + 1

    @property
    def vocab_size(self) -> int:
        return self.num_symbols + 2

    @property
    def chance(self) -> float:
        """Per-token accuracy of a uniform guess."""
        return 1.0 / self.num_symbols


TASKS = {name: Task(name, symbols) for name, symbols in names.TASK_SYMBOLS.items()}


class Batch(NamedTuple):
    """Arrays ``[rows, slots]``; from :func:`make_batch`, ``slots = 2 * max_len``."""

    tokens: jax.Array  # int32 token ids (input symbols, placeholders, pads)
    positions: jax.Array  # int32 position of each slot (0 where padded)
    valid: jax.Array  # bool, slot holds a real token
    segments: jax.Array  # int32 example of the row the slot belongs to
    targets: jax.Array  # int32 target symbol at output slots, 0 elsewhere
    loss_mask: jax.Array  # bool, slot is scored (valid output slot)


def _targets(task: Task, symbols: jax.Array, in_valid: jax.Array, n: jax.Array):
    """Targets ``[batch, max_len]`` for the first ``n`` output slots."""
    if task.name == "bucket_sort":
        # Padding sorts last, so the first n sorted values are the answer.
        return jnp.sort(jnp.where(in_valid, symbols, task.num_symbols), axis=-1)
    max_len = symbols.shape[-1]
    source = jnp.clip(n[:, None] - 1 - jnp.arange(max_len), 0, max_len - 1)
    return jnp.take_along_axis(symbols, source, axis=-1)


def make_batch(task: Task, key: jax.Array, lengths: jax.Array, max_len: int) -> Batch:
    """Random examples of the given lengths (``lengths [batch]``, 1..max_len)."""
    n = jnp.asarray(lengths, jnp.int32)
    slots = jnp.arange(max_len)
    in_valid = slots[None, :] < n[:, None]
    symbols = jax.random.randint(key, (n.shape[0], max_len), 0, task.num_symbols)
    targets = jnp.where(in_valid, _targets(task, symbols, in_valid, n), 0)
    inputs = jnp.where(in_valid, symbols, task.pad)
    placeholders = jnp.where(in_valid, task.placeholder, task.pad)
    in_positions = jnp.where(in_valid, slots, 0)
    out_positions = jnp.where(in_valid, n[:, None] + slots, 0)
    zeros = jnp.zeros_like(targets)
    return Batch(
        tokens=jnp.concatenate([inputs, placeholders], axis=-1).astype(jnp.int32),
        positions=jnp.concatenate([in_positions, out_positions], -1).astype(jnp.int32),
        valid=jnp.concatenate([in_valid, in_valid], axis=-1),
        segments=jnp.zeros((n.shape[0], 2 * max_len), jnp.int32),
        targets=jnp.concatenate([zeros, targets], axis=-1).astype(jnp.int32),
        loss_mask=jnp.concatenate([jnp.zeros_like(in_valid), in_valid], axis=-1),
    )


def random_lengths(key: jax.Array, batch: int, max_len: int) -> jax.Array:
    """Lengths drawn uniformly from ``1..max_len``."""
    return jax.random.randint(key, (batch,), 1, max_len + 1)


def pack_pairs(first: Batch, second: Batch, width: int) -> Batch:
    """Row ``b``: the valid slots of ``first[b]``, then those of ``second[b]``.

    Slots of ``first`` get segment 0, those of ``second`` segment 1; padding is
    dropped. Every row pair must hold exactly ``width`` valid slots (as lengths
    ``n`` and ``max_len + 1 - n`` do, with ``width = 2 (max_len + 1)``).
    """
    first = first._replace(segments=jnp.zeros_like(first.segments))
    second = second._replace(segments=jnp.ones_like(second.segments))
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=-1), first, second)
    # A stable sort of "is padding" moves the valid slots to the front, in order.
    order = jnp.argsort(~both.valid, axis=-1, stable=True)[:, :width]
    return jax.tree.map(lambda a: jnp.take_along_axis(a, order, axis=-1), both)
