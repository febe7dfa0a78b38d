"""The demo's data pipeline: each run's training and evaluation batches.

Built on `train_demo.tasks` (one task's examples): randomized positions where an
encoding asks for them, two examples packed to a row, the evaluation rows of
every test length, and the compiled programs that draw them for every seed at
once, their rows split over the devices.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import flax_posenc as fp
from train_demo import tasks


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Everything the training and evaluation batches of a run depend on.

    Six of the nine encodings read the same batches (positions ``0..2n-1``),
    the three randomized ones another set: `batches` draws each set with one
    compiled program, whichever encoding asks.
    """

    task: str
    batch_size: int
    train_length: int
    test_length: int
    eval_batch: int
    # Range of randomized positions (Ruoss et al. 2023); None: 0..2n-1.
    max_position: int | None

    @property
    def task_spec(self) -> tasks.Task:
        return tasks.TASKS[self.task]


def randomize_positions(
    key: jax.Array, batch: tasks.Batch, max_position: int
) -> tasks.Batch:
    """Replaces positions by sorted distinct draws from ``[0, max_position)``.

    For an example of length ``n`` the ``2n`` slots get a uniformly random
    sorted subset of the range (Ruoss et al. 2023): a sorted draw of ``2 *
    max_len`` positions by :func:`flax_posenc.randomized_positions`, of which
    a uniformly random ``2n`` are kept, in order.
    """
    max_len = batch.tokens.shape[-1] // 2
    n = batch.valid[:, :max_len].sum(-1)

    def one(key, n):
        draw_key, keep_key = jax.random.split(key)
        drawn = fp.randomized_positions(draw_key, 2 * max_len, max_position)
        rank = jax.random.permutation(keep_key, 2 * max_len)
        keep = jnp.sort(jnp.where(rank < 2 * n, jnp.arange(2 * max_len), 2 * max_len))
        chosen = drawn[jnp.minimum(keep, 2 * max_len - 1)]
        slots = jnp.arange(max_len)
        inputs = chosen[jnp.minimum(slots, 2 * max_len - 1)]
        outputs = chosen[jnp.minimum(n + slots, 2 * max_len - 1)]
        return jnp.concatenate([inputs, outputs])

    keys = jax.random.split(key, n.shape[0])
    positions = jax.vmap(one)(keys, n)
    return batch._replace(positions=jnp.where(batch.valid, positions, 0))


def make_batch(
    data: DataConfig, key: jax.Array, lengths: jax.Array, max_len: int
) -> tasks.Batch:
    """Examples of the given lengths (`tasks.make_batch`), with randomized
    positions where ``data`` asks for them."""
    data_key, position_key = jax.random.split(key)
    batch = tasks.make_batch(data.task_spec, data_key, lengths, max_len)
    if data.max_position is not None:
        batch = randomize_positions(position_key, batch, data.max_position)
    return batch


def packed_pairs(
    data: DataConfig, keys: jax.Array, lengths: jax.Array, max_len: int
) -> tasks.Batch:
    """Row ``b`` packs an example of length ``lengths[b]`` (drawn with
    ``keys[0]``) and one of ``max_len + 1 - lengths[b]`` (``keys[1]``):
    ``2 (max_len + 1)`` slots, no padding (`tasks.pack_pairs`)."""
    first = make_batch(data, keys[0], lengths, max_len)
    second = make_batch(data, keys[1], max_len + 1 - lengths, max_len)
    return tasks.pack_pairs(first, second, 2 * (max_len + 1))


def train_batch(data: DataConfig, key: jax.Array) -> tasks.Batch:
    """``batch_size`` examples of lengths uniform on ``1..train_length``,
    packed two to a row (`packed_pairs`): ``[batch_size / 2,
    2 (train_length + 1)]``."""
    length_key, *keys = jax.random.split(key, 3)
    max_len = data.train_length
    lengths = tasks.random_lengths(length_key, data.batch_size // 2, max_len)
    return packed_pairs(data, keys, lengths, max_len)


def eval_shorts(test_length: int) -> np.ndarray:
    """The shorter length ``a`` of each evaluation row, which packs lengths
    ``a`` and ``test_length + 1 - a``: ``1..ceil(test_length / 2)``."""
    return np.arange(1, (test_length + 1) // 2 + 1)


def eval_batches(data: DataConfig, key: jax.Array) -> tasks.Batch:
    """The evaluation batches ``[rows, eval_batch, 2 (test_length + 1)]``.

    Row ``i`` packs ``eval_batch`` examples of length ``a = eval_shorts[i]``
    with as many of length ``test_length + 1 - a``, as in training: no padding,
    about half the slots of padding each length to ``test_length``.
    """
    max_len = data.test_length

    def pair(short):
        keys = jax.random.split(jax.random.fold_in(key, short))
        lengths = jnp.full((data.eval_batch,), short)
        return packed_pairs(data, keys, lengths, max_len)

    return jax.lax.map(pair, jnp.asarray(eval_shorts(max_len)))


class Batches:
    """The compiled programs that draw a run's batches, for every seed at once.

    They take a seed's raw key data (`train_demo.train.State.key`) and return
    batches with a leading seed axis, their rows split over the mesh's
    ``"data"`` axis. Kept apart from the model's programs, so that the
    encodings that read the same batches share one program (`batches`).
    """

    def __init__(self, data: DataConfig, mesh: Mesh):
        self.data = data
        replicated = NamedSharding(mesh, PartitionSpec())
        # [seeds, steps or evaluation rows, rows, slots]
        self.sharding = NamedSharding(mesh, PartitionSpec(None, None, "data"))
        self._train = jax.jit(
            jax.vmap(self._draw_train),
            in_shardings=replicated,
            out_shardings=self.sharding,
        )
        self._evaluation = jax.jit(
            jax.vmap(self._draw_evaluation),
            in_shardings=replicated,
            out_shardings=self.sharding,
        )

    def _draw_train(self, key, step, steps):
        # Step s trains on the batch of the run's key folded with s.
        key = jax.random.wrap_key_data(key)
        at = step + jnp.arange(steps.shape[0], dtype=step.dtype)
        return jax.lax.map(
            lambda s: train_batch(self.data, jax.random.fold_in(key, s)), at
        )

    def _draw_evaluation(self, key):
        # A key of its own, apart from every training step's.
        key = jax.random.fold_in(jax.random.wrap_key_data(key), 2**31 - 1)
        return eval_batches(self.data, key)

    def train(self, state, steps: int) -> tasks.Batch:
        """The batches of the next ``steps`` steps of every seed of ``state``
        (a `train_demo.train.State`: its ``step`` and ``key``):
        ``[seeds, steps, batch_size / 2, 2 (train_length + 1)]``."""
        seeds = state.step.shape[0]
        return self._train(state.key, state.step, jnp.zeros((seeds, steps)))

    def evaluation(self, state) -> tasks.Batch:
        """Every seed's evaluation batches (`eval_batches`) of ``state`` (a
        `train_demo.train.State`: its ``key``)."""
        return self._evaluation(state.key)


@functools.cache
def batches(data: DataConfig, mesh: Mesh) -> Batches:
    """The `Batches` of ``data`` on ``mesh``, built once per process."""
    return Batches(data, mesh)
