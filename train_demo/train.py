"""Training and evaluation: jit + scan over steps, vmap over seeds, data-parallel."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from train_demo import data, model, model_nnx, tasks


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's numbers (saved with its results)."""

    task: str = "bucket_sort"
    encoding: str = "sinusoidal"
    steps: int = 500
    seeds: int = 1
    batch_size: int = 64
    learning_rate: float = 3e-3
    # A linear warm-up over ``warmup_steps`` (None: a tenth of ``steps``), then
    # "constant", or "cosine" (a cosine decay to zero at ``steps``).
    schedule: str = "cosine"
    warmup_steps: int | None = None
    clip_norm: float = 1.0
    train_length: int = 20
    test_length: int = 60
    eval_batch: int = 64
    num_layers: int = 3
    features: int = 64
    num_heads: int = 4
    norm: str = "layer"
    norm_position: str = "post"
    combine: str = "add"
    steps_per_call: int = 50
    api: str = "linen"  # the encoder built from the linen modules or their NNX twins

    @property
    def warmup(self) -> int:
        """Steps of warm-up: ``warmup_steps``, or a tenth of ``steps``."""
        if self.warmup_steps is None:
            return self.steps // 10
        return self.warmup_steps

    @property
    def task_spec(self) -> tasks.Task:
        return tasks.TASKS[self.task]

    @property
    def max_position(self) -> int:
        """Range of randomized positions: 4x the longest test sequence."""
        return 4 * 2 * self.test_length

    @property
    def data(self) -> data.DataConfig:
        """What this run's batches depend on (encodings that agree share them)."""
        randomized = model.is_randomized(self.encoding)
        return data.DataConfig(
            task=self.task,
            batch_size=self.batch_size,
            train_length=self.train_length,
            test_length=self.test_length,
            eval_batch=self.eval_batch,
            max_position=self.max_position if randomized else None,
        )

    def model_config(self) -> model.ModelConfig:
        spec = self.task_spec
        randomized = model.is_randomized(self.encoding)
        return model.ModelConfig(
            vocab_size=spec.vocab_size,
            num_outputs=spec.num_symbols,
            encoding=self.encoding,
            num_layers=self.num_layers,
            features=self.features,
            num_heads=self.num_heads,
            mlp_features=4 * self.features,
            max_position=self.max_position if randomized else 2 * self.test_length,
            norm=self.norm,
            norm_position=self.norm_position,
            combine=self.combine,
        )


def check_divisible(config: TrainConfig, devices: int) -> None:
    """Raises ValueError unless the batches split evenly over ``devices``.

    Training rows hold two examples each, so ``batch_size`` must split into
    ``2 * devices`` parts.
    """
    if config.batch_size % (2 * devices):
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by {2 * devices}: "
            f"two examples per packed row, rows split over the {devices} devices."
        )
    if config.eval_batch % devices:
        raise ValueError(
            f"eval_batch {config.eval_batch} must be divisible by the "
            f"{devices} devices."
        )


def learning_rate(config: TrainConfig) -> float | optax.Schedule:
    """The learning rate, or its schedule over steps, of a configuration."""
    warmup = config.warmup
    if config.schedule == "constant":
        if not warmup:
            return config.learning_rate
        return optax.warmup_constant_schedule(
            init_value=0.0,
            peak_value=config.learning_rate,
            warmup_steps=warmup,
        )
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=config.learning_rate,
            warmup_steps=warmup,
            decay_steps=max(config.steps, warmup + 1),
        )
    raise ValueError(
        f"schedule {config.schedule!r} is not one of 'constant', 'cosine'."
    )


class State(NamedTuple):
    """One seed's training state; every leaf gets a leading seed axis."""

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array  # raw uint32 key data: checkpoints store plain arrays


@functools.cache
def trainer(config: TrainConfig) -> Trainer:
    """The `Trainer` of ``config`` on all devices, built once per process.

    Its jitted programs depend on nothing but the configuration, so runs of one
    configuration in one process (a resumed run, the tests) compile once.
    """
    return Trainer(config)


class Trainer:
    """Builds the jitted functions of one (task, encoding) run."""

    def __init__(self, config: TrainConfig, mesh: Mesh | None = None):
        self.config = config
        self.task = config.task_spec
        if config.api == "nnx":
            self.net = model_nnx.NnxNet(config.model_config())
        else:
            self.net = model.Encoder(config.model_config())
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(config.clip_norm),
            optax.adam(learning_rate(config)),
        )
        self.mesh = mesh or Mesh(np.array(jax.devices()), ("data",))
        check_divisible(config, self.mesh.devices.size)
        self.batches = data.batches(config.data, self.mesh)
        # States live replicated on the mesh, going in and coming out, so a
        # state fresh from init_seeds, one restored from a checkpoint and one
        # returned by train all match one compiled program.
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self._train = jax.jit(
            jax.vmap(self._train_chunk),
            in_shardings=(self.replicated, self.batches.sharding),
            out_shardings=self.replicated,
        )
        self._evaluate = jax.jit(
            jax.vmap(self._evaluate_one),
            in_shardings=(self.replicated, self.batches.sharding),
        )
        self._init_seeds = jax.jit(jax.vmap(self._init), out_shardings=self.replicated)

    # -- data ------------------------------------------------------------------
    def _shard(self, batch: tasks.Batch) -> tasks.Batch:
        spec = NamedSharding(self.mesh, PartitionSpec("data"))
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, spec), batch)

    def batch(self, key: jax.Array, lengths: jax.Array, max_len: int) -> tasks.Batch:
        """Examples of the given lengths, as this run draws them
        (`data.make_batch`)."""
        return data.make_batch(self.config.data, key, lengths, max_len)

    def train_batch(self, key: jax.Array) -> tasks.Batch:
        """One training batch, as this run draws it (`data.train_batch`)."""
        return data.train_batch(self.config.data, key)

    # -- model -----------------------------------------------------------------
    def _logits(self, params, batch):
        return self.net.apply(
            {"params": params},
            batch.tokens,
            positions=batch.positions,
            valid=batch.valid,
            segments=batch.segments,
        )

    def _loss(self, params, batch):
        logits = self._logits(params, batch)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets)
        weights = batch.loss_mask.astype(jnp.float32)
        correct = (logits.argmax(-1) == batch.targets) * weights
        total = weights.sum()
        return (losses * weights).sum() / total, correct.sum() / total

    def init(self, seed: int) -> State:
        """The initial state of one seed (unbatched)."""
        return self._init(jax.random.key(seed))

    def _init(self, key: jax.Array) -> State:
        init_key, run_key = jax.random.split(key)
        max_len = self.config.train_length
        # Parameters depend on the input's shapes only: zeros of a batch's
        # shapes stand for one.
        lengths = jnp.full((2,), max_len)
        shapes = jax.eval_shape(lambda: self.batch(init_key, lengths, max_len))
        dummy = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        params = self.net.init(
            init_key,
            dummy.tokens,
            positions=dummy.positions,
            valid=dummy.valid,
            segments=dummy.segments,
        )["params"]
        return State(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.optimizer.init(params),
            key=jax.random.key_data(run_key),
        )

    def init_seeds(self, seeds: list[int]) -> State:
        """States for several seeds, stacked along a leading axis.

        One compiled program builds them all (vmap over the seeds' keys): the
        same numbers as :meth:`init` one seed at a time, at a fraction of the
        start-up time of initializing op by op.
        """
        return self._init_seeds(jnp.stack([jax.random.key(seed) for seed in seeds]))

    # -- training --------------------------------------------------------------
    def _train_step(self, state: State, batch: tasks.Batch):
        batch = self._shard(batch)
        (loss, accuracy), grads = jax.value_and_grad(self._loss, has_aux=True)(
            state.params, batch
        )
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = State(state.step + 1, params, opt_state, state.key)
        return new_state, (loss, accuracy)

    def _train_chunk(self, state: State, batches: tasks.Batch):
        # ``batches`` [chunk, ...]: one step per batch.
        return jax.lax.scan(self._train_step, state, batches)

    def train(self, state: State, steps: int) -> tuple[State, tuple[jax.Array, ...]]:
        """Runs ``steps`` steps on every seed; returns per-step loss and accuracy.

        The batches are drawn by one compiled program (`data.Batches.train`), the
        steps run in another, one scan; call this with the same ``steps`` each
        time to compile once.
        """
        return self._train(state, self.batches.train(state, steps))

    # -- evaluation ------------------------------------------------------------
    def _evaluate_one(self, params, batches: tasks.Batch):
        # ``batches`` from data.eval_batches: row i packs lengths a = shorts[i] and
        # test_length + 1 - a.
        max_len = self.config.test_length

        def pair(batch):
            batch = self._shard(batch)
            logits = self._logits(params, batch)
            correct = (logits.argmax(-1) == batch.targets) & batch.loss_mask

            def by_example(mask):  # [2]: counts in the short and the long one
                return jnp.stack([(mask & (batch.segments == s)).sum() for s in (0, 1)])

            return by_example(correct), by_example(batch.loss_mask)

        correct, scored = jax.lax.map(pair, batches)
        shorts = data.eval_shorts(max_len)
        lengths = jnp.asarray(np.stack([shorts, max_len + 1 - shorts], axis=-1))
        # An odd test_length pairs its middle length with itself: both halves
        # count for it.
        by_length = jnp.zeros(max_len + 1, jnp.float32)
        hits = by_length.at[lengths.ravel()].add(correct.ravel().astype(jnp.float32))
        total = by_length.at[lengths.ravel()].add(scored.ravel().astype(jnp.float32))
        return (hits / jnp.maximum(total, 1))[1:]

    def evaluate(self, state: State) -> np.ndarray:
        """Per-token accuracy ``[seeds, test_length]`` at lengths ``1..test_length``."""
        return np.asarray(self._evaluate(state.params, self.batches.evaluation(state)))
