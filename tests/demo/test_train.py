"""Training: every encoding trains, learning beats chance and position-blindness,
vmap over seeds equals training them one by one, one compiled program."""

from __future__ import annotations

import collections
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.demo.helpers import DOCUMENTED_ENCODINGS, count_compiles, tiny
from train_demo import model, tasks, train


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_encoding_names_are_the_documented_ones():
    assert tuple(model.ENCODINGS) == DOCUMENTED_ENCODINGS


@pytest.mark.parametrize("encoding", DOCUMENTED_ENCODINGS)
def test_every_encoding_trains_without_nan(encoding):
    trainer = train.trainer(tiny(encoding=encoding))
    state = trainer.init_seeds([0])
    before = _leaves(state.params)
    state, (loss, accuracy) = trainer.train(state, 2)
    loss, accuracy = np.asarray(loss), np.asarray(accuracy)
    assert loss.shape == accuracy.shape == (1, 2)
    assert np.all(np.isfinite(loss)) and np.all(loss > 0)
    assert np.all((accuracy >= 0) & (accuracy <= 1))
    after = _leaves(state.params)
    assert all(np.all(np.isfinite(a)) for a in after)
    assert any(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    assert np.asarray(state.step).tolist() == [2]


# -- packed training batches -------------------------------------------------


def test_train_batch_packs_two_examples_of_uniform_lengths_per_row():
    config = tiny(batch_size=4000, train_length=6)
    batch = jax.jit(train.Trainer(config).train_batch)(jax.random.key(0))
    shapes = {field: np.shape(a) for field, a in batch._asdict().items()}
    assert set(shapes.values()) == {(2000, 14)}, shapes  # rows, 2 (6 + 1)
    assert np.asarray(batch.valid).all()
    scored, segments = np.asarray(batch.loss_mask), np.asarray(batch.segments)
    n_first = (scored & (segments == 0)).sum(1)
    n_second = (scored & (segments == 1)).sum(1)
    np.testing.assert_array_equal(n_first + n_second, 7)
    lengths = np.concatenate([n_first, n_second])
    assert set(lengths.tolist()) == set(range(1, 7))
    counts = np.bincount(lengths, minlength=7)[1:]
    np.testing.assert_allclose(counts / 4000, 1 / 6, rtol=0.15)


@pytest.mark.parametrize(
    "encoding",
    ["sinusoidal", "learned", "rope", "alibi", "relative", "randomized_rope"],
)
def test_packing_is_invisible_to_the_model(encoding):
    # A packed row's logits are those of its two examples processed alone.
    trainer = train.trainer(tiny(encoding=encoding))
    max_len = trainer.config.train_length
    params = jax.tree.map(lambda a: a[0], trainer.init_seeds([0]).params)
    lengths = jnp.arange(1, max_len + 1)
    keys = jax.random.split(jax.random.key(3), 2)
    first = trainer.batch(keys[0], lengths, max_len)
    second = trainer.batch(keys[1], max_len + 1 - lengths, max_len)
    packed = tasks.pack_pairs(first, second, 2 * (max_len + 1))
    logits = jax.jit(trainer._logits)
    alone = [np.asarray(logits(params, b)) for b in (first, second)]
    together = np.asarray(logits(params, packed))
    for row in range(max_len):
        expected = np.concatenate(
            [
                alone[0][row][np.asarray(first.valid[row])],
                alone[1][row][np.asarray(second.valid[row])],
            ]
        )
        # Same math on other shapes: float32 sums may group differently.
        np.testing.assert_allclose(together[row], expected, rtol=1e-5, atol=1e-5)


# -- learning ------------------------------------------------------------------

SORT_LENGTH = 5
SORT_SEEDS = [0, 1, 2]


def position_blind_bound(num_symbols: int, max_len: int) -> float:
    """Best per-token accuracy on Bucket Sort of a model that ignores positions.

    Without positions every placeholder sees the same thing, so all n outputs
    of an example get one prediction; the best is the most frequent input
    symbol, right on (its count) / n slots. Averaged over lengths 1..max_len
    with equal weight, as evaluate() reports them; exact by enumeration.
    """
    per_length = []
    for n in range(1, max_len + 1):
        total = sum(
            max(collections.Counter(x).values())
            for x in itertools.product(range(num_symbols), repeat=n)
        )
        per_length.append(total / n / num_symbols**n)
    return float(np.mean(per_length))


@pytest.fixture(scope="module", params=["linen", "nnx"])
def sort_runs(request):
    """Untrained and trained accuracy [seeds] of none and sinusoidal.

    Once with the encoder built from the linen modules, once from their NNX
    twins: both must show the same pattern.
    """
    runs = {}
    for encoding in ("none", "sinusoidal"):
        config = tiny(
            api=request.param,
            encoding=encoding,
            steps=300,
            features=32,
            batch_size=16,
            learning_rate=3e-3,
            train_length=SORT_LENGTH,
            test_length=SORT_LENGTH,
            eval_batch=64,
            steps_per_call=300,
        )
        trainer = train.Trainer(config)
        state = trainer.init_seeds(SORT_SEEDS)
        untrained = trainer.evaluate(state)
        state, _ = trainer.train(state, 300)
        trained = trainer.evaluate(state)
        assert untrained.shape == trained.shape == (len(SORT_SEEDS), SORT_LENGTH)
        runs[encoding] = (untrained.mean(1), trained.mean(1))
    return runs


def test_untrained_model_is_at_chance(sort_runs):
    chance = 1 / 5
    for encoding, (untrained, _) in sort_runs.items():
        # Loose: a random network is not a uniform guesser, but it has no
        # reason to be right more (or less) often than chance.
        assert abs(untrained.mean() - chance) < 0.08, (encoding, untrained)
        assert np.all((untrained > 0.05) & (untrained < 0.4)), (encoding, untrained)


def test_short_run_of_sinusoidal_beats_none(sort_runs):
    bound = position_blind_bound(5, SORT_LENGTH)  # 0.613 for lengths 1..5
    none, sinusoidal = sort_runs["none"][1], sort_runs["sinusoidal"][1]
    # none cannot sort: at most the bound (+ sampling noise of 64 examples per
    # length, standard deviation about 0.01 of the mean).
    assert np.all(none < bound + 0.05), (none, bound)
    # none does learn what it can (the most frequent symbol).
    assert np.all(none > bound - 0.1), (none, bound)
    # Measured: sinusoidal reaches >= 0.99 on every seed, none about 0.61.
    assert np.all(sinusoidal > bound + 0.2), (sinusoidal, bound)
    assert sinusoidal.mean() > none.mean() + 0.25


# -- vmap over seeds, and compiling once -------------------------------------


@pytest.fixture(scope="module")
def seed_runs():
    """Seeds 0 and 1 trained together (vmap) and alone, two chunks of 2 steps.

    Also counts the compilations of the train chunk: one per number of seeds.
    """
    # rope: positions act inside attention, the part vmap batches most. A
    # Trainer of its own, whose compilations are counted; the 1-seed programs
    # are those of test_every_encoding_trains_without_nan[rope] (JAX's
    # persistent cache shares them).
    trainer = train.Trainer(tiny(encoding="rope"))

    def two_chunks(seeds):
        state, (loss_a, _) = trainer.train(trainer.init_seeds(seeds), 2)
        state, (loss_b, _) = trainer.train(state, 2)
        return state, np.concatenate([loss_a, loss_b], axis=1)

    with count_compiles("_train_chunk") as compiles:
        together = two_chunks([0, 1])
        alone = [two_chunks([seed]) for seed in (0, 1)]
    return together, alone, compiles.count


def test_vmap_over_seeds_equals_one_by_one(seed_runs):
    (together, loss), alone, _ = seed_runs
    assert loss.shape == (2, 4)
    for i, (state, seed_loss) in enumerate(alone):
        # Not bit-exact: XLA may pick another reduction order (and fusion) for
        # the batched program, so float32 sums differ in the last bits and
        # Adam carries that through four steps; 1e-5 is far below any real
        # difference (the two seeds' parameters differ by more than 1e-2).
        np.testing.assert_allclose(loss[i], seed_loss[0], rtol=1e-5, atol=1e-5)
        for a, b in zip(_leaves(together), _leaves(state), strict=True):
            np.testing.assert_allclose(a[i], b[0], rtol=1e-5, atol=1e-5)
    first, second = _leaves(together.params), _leaves(alone[1][0].params)
    assert any(
        np.abs(a[0] - b[0]).max() > 1e-2 for a, b in zip(first, second, strict=True)
    )


def test_chunks_of_one_size_compile_once(seed_runs):
    # Trainer.train: "call this with the same steps each time to compile once".
    # Three runs of two 2-step chunks, with 2, 1 and 1 seeds: two programs.
    assert seed_runs[2] == 2


@pytest.mark.parametrize("encoding", ["sinusoidal", "learned"])
def test_concat_splits_the_features_between_token_and_position(encoding):
    config = tiny(encoding=encoding, combine="concat", features=16)
    trainer = train.Trainer(config)
    state = trainer.init_seeds([0])
    shapes = jax.tree.map(np.shape, nn.meta.unbox(state.params))
    assert shapes["InputEmbedding_0"]["token"]["embedding"] == (1, 7, 8)  # vocab 5+2
    if encoding == "learned":
        table = shapes["LearnedPositionEmbedding_0"]["embedding"]
        assert table == (1, config.model_config().max_position, 8)
    batch = trainer.batch(jax.random.key(0), jnp.full((2,), 3), 4)
    params = jax.tree.map(lambda a: a[0], state.params)
    assert trainer._logits(params, batch).shape == (2, 8, 5)
    state, (loss, _) = trainer.train(state, 2)
    assert np.all(np.isfinite(np.asarray(loss)))


# -- start-up, schedule and evaluation ----------------------------------------


def test_init_seeds_equals_init_one_seed_at_a_time():
    trainer = train.Trainer(tiny(encoding="learned"))
    together = trainer.init_seeds([3, 1])
    init = jax.jit(trainer.init)  # one program for both seeds, not op by op
    for i, seed in enumerate((3, 1)):
        alone = init(seed)
        # The same random draws; the batched program may fuse the scaling of a
        # draw differently from the unbatched one: 1 float32 ulp apart.
        for a, b in zip(_leaves(together), _leaves(alone), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=3e-7, atol=0)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_schedule(schedule):
    config = tiny(steps=100, learning_rate=0.5, schedule=schedule, warmup_steps=10)
    rate = train.learning_rate(config)
    steps = np.arange(0, 101)
    # Linear warm-up from 0, then constant or half a cosine period down to 0.
    warm = 0.5 * steps / 10
    after = (steps - 10) / 90
    rest = 0.5 * (0.5 * (1 + np.cos(np.pi * after))) if schedule == "cosine" else 0.5
    want = np.where(steps < 10, warm, rest)
    got = np.array([float(rate(s)) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert train.learning_rate(tiny(learning_rate=0.5)) == 0.5
    with pytest.raises(ValueError, match="schedule 'linear'"):
        train.learning_rate(tiny(schedule="linear"))


@pytest.mark.parametrize("test_length", [5, 6])
def test_evaluation_packs_lengths_in_pairs_and_scores_each_alone(test_length):
    """Evaluation packs lengths a and test_length + 1 - a into one row; each
    length's accuracy equals scoring its examples alone, unpacked (an odd
    test_length's middle length gets both halves of its row)."""
    config = tiny(encoding="rope", test_length=test_length)
    trainer = train.trainer(config)
    state = trainer.init_seeds([0])
    got = trainer.evaluate(state)[0]

    params = jax.tree.map(lambda a: a[0], state.params)
    eval_key = jax.random.fold_in(jax.random.wrap_key_data(state.key[0]), 2**31 - 1)
    make_batch = jax.jit(trainer.batch, static_argnums=2)
    logits = jax.jit(trainer._logits)
    hits = collections.Counter()
    scored = collections.Counter()
    for short in range(1, (test_length + 1) // 2 + 1):
        keys = jax.random.split(jax.random.fold_in(eval_key, short))
        for key, length in zip(keys, (short, test_length + 1 - short), strict=True):
            lengths = jnp.full((config.eval_batch,), length)
            batch = make_batch(key, lengths, test_length)
            right = logits(params, batch).argmax(-1) == batch.targets
            hits[length] += int((right & batch.loss_mask).sum())
            scored[length] += int(batch.loss_mask.sum())
    want = [hits[n] / scored[n] for n in range(1, test_length + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert len(set(np.round(want, 3))) > 1  # the check can see a mix-up
