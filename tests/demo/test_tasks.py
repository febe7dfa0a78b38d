"""Task data: make_batch and random_lengths against plain-Python references,
and the randomized positions of data.randomize_positions."""

from __future__ import annotations

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.demo.helpers import count_compiles
from train_demo import data, tasks

# As the demo page says: Bucket Sort over 5 symbols, Reverse String over a binary one.
NUM_SYMBOLS = {"bucket_sort": 5, "reverse_string": 2}
ANSWER = {"bucket_sort": sorted, "reverse_string": lambda xs: list(reversed(xs))}


# Compiled whole: called op by op, each new shape would compile every operation.
make_batch = jax.jit(tasks.make_batch, static_argnums=(0, 3))


def reference_batch(task, inputs, lengths, max_len):
    """The documented layout, built example by example in plain Python.

    ``inputs[b]`` is the list of the ``n`` input symbols of example ``b``.
    """
    rows = collections.defaultdict(list)
    for x, n in zip(inputs, lengths, strict=True):
        x = [int(s) for s in x]
        assert len(x) == n
        y = ANSWER[task.name](x)
        pad = max_len - n
        rows["tokens"].append(
            x + [task.pad] * pad + [task.placeholder] * n + [task.pad] * pad
        )
        rows["positions"].append(
            list(range(n)) + [0] * pad + list(range(n, 2 * n)) + [0] * pad
        )
        rows["valid"].append(([True] * n + [False] * pad) * 2)
        rows["targets"].append([0] * max_len + y + [0] * pad)
        rows["loss_mask"].append([False] * max_len + [True] * n + [False] * pad)
        rows["segments"].append([0] * 2 * max_len)
    return {k: np.array(v) for k, v in rows.items()}


def test_task_vocabularies():
    for name, num_symbols in NUM_SYMBOLS.items():
        task = tasks.TASKS[name]
        assert task.num_symbols == num_symbols
        specials = {task.placeholder, task.pad}
        assert len(specials) == 2
        assert specials.isdisjoint(range(num_symbols))
        assert max(specials) < task.vocab_size
        assert task.chance == pytest.approx(1 / num_symbols)
    assert set(tasks.TASKS) == set(NUM_SYMBOLS)


@pytest.mark.parametrize("name", sorted(NUM_SYMBOLS))
@pytest.mark.parametrize("max_len", [1, 3, 7])
def test_make_batch_matches_reference(name, max_len):
    task = tasks.TASKS[name]
    lengths = np.array([1, max_len, *range(1, max_len + 1)] * 4)
    batch = make_batch(task, jax.random.key(max_len), lengths, max_len)
    arrays = {k: np.asarray(v) for k, v in batch._asdict().items()}
    for k, a in arrays.items():
        assert a.shape == (len(lengths), 2 * max_len), k
    assert arrays["tokens"].dtype == np.int32
    assert arrays["positions"].dtype == np.int32
    assert arrays["targets"].dtype == np.int32
    assert arrays["valid"].dtype == np.bool_
    assert arrays["loss_mask"].dtype == np.bool_
    assert arrays["segments"].dtype == np.int32

    # The drawn inputs: the first n slots of each example, symbols only.
    inputs = [arrays["tokens"][b, :n] for b, n in enumerate(lengths)]
    for x in inputs:
        assert np.all((x >= 0) & (x < NUM_SYMBOLS[name]))
    expected = reference_batch(task, inputs, lengths, max_len)
    for k in expected:
        np.testing.assert_array_equal(arrays[k], expected[k], err_msg=k)


@pytest.mark.parametrize("name", sorted(NUM_SYMBOLS))
def test_make_batch_draws_every_symbol_and_depends_on_key(name):
    task = tasks.TASKS[name]
    lengths = np.full(200, 10)
    one = make_batch(task, jax.random.key(0), lengths, 10)
    two = make_batch(task, jax.random.key(1), lengths, 10)
    inputs = np.asarray(one.tokens[:, :10])
    counts = np.bincount(inputs.ravel(), minlength=task.num_symbols)
    assert len(counts) == task.num_symbols
    # Uniform symbols: 2000 draws, each symbol within 25% of its share.
    np.testing.assert_allclose(counts / counts.sum(), 1 / task.num_symbols, rtol=0.25)
    assert not np.array_equal(inputs, np.asarray(two.tokens[:, :10]))


def test_make_batch_one_program_for_every_length():
    task = tasks.TASKS["bucket_sort"]
    make = jax.jit(tasks.make_batch, static_argnums=(0, 3))
    with count_compiles("make_batch") as compiles:
        for n in (1, 4, 6):
            batch = make(task, jax.random.key(n), jnp.full((3,), n), 6)
            assert int(batch.loss_mask.sum()) == 3 * n
    assert compiles.count == 1


@pytest.mark.parametrize("max_len", [1, 4, 9])
def test_pack_pairs_matches_reference(max_len):
    task = tasks.TASKS["bucket_sort"]
    lengths = np.arange(1, max_len + 1)
    first = make_batch(task, jax.random.key(0), lengths, max_len)
    second = make_batch(task, jax.random.key(1), max_len + 1 - lengths, max_len)
    width = 2 * (max_len + 1)
    packed = jax.jit(tasks.pack_pairs, static_argnums=2)(first, second, width)
    for field in tasks.Batch._fields:
        a, b = np.asarray(getattr(first, field)), np.asarray(getattr(second, field))
        va, vb = np.asarray(first.valid), np.asarray(second.valid)
        got = np.asarray(getattr(packed, field))
        assert got.shape == (max_len, width), field
        for row in range(max_len):
            # The real slots of the first example, in order, then the second's.
            expected = np.concatenate([a[row][va[row]], b[row][vb[row]]])
            if field == "segments":
                expected = np.repeat([0, 1], [va[row].sum(), vb[row].sum()])
            np.testing.assert_array_equal(got[row], expected, err_msg=field)
    assert np.asarray(packed.valid).all()
    # Every example keeps its n scored slots.
    scored = np.asarray(packed.loss_mask)
    segments = np.asarray(packed.segments)
    np.testing.assert_array_equal((scored & (segments == 0)).sum(1), lengths)
    np.testing.assert_array_equal(
        (scored & (segments == 1)).sum(1), 1 + max_len - lengths
    )


@pytest.mark.parametrize("max_len", [1, 5, 20])
def test_random_lengths_cover_one_to_max_len(max_len):
    lengths = np.asarray(tasks.random_lengths(jax.random.key(3), 4000, max_len))
    assert lengths.shape == (4000,)
    assert np.issubdtype(lengths.dtype, np.integer)
    assert lengths.min() >= 1 and lengths.max() <= max_len
    assert set(lengths.tolist()) == set(range(1, max_len + 1))
    counts = np.bincount(lengths, minlength=max_len + 1)[1:]
    np.testing.assert_allclose(counts / 4000, 1 / max_len, rtol=0.35)


# -- randomized positions ------------------------------------------------------


def _randomized(max_len, lengths, max_position, seed=0):
    batch = make_batch(
        tasks.TASKS["bucket_sort"], jax.random.key(seed), jnp.asarray(lengths), max_len
    )
    out = jax.jit(data.randomize_positions, static_argnums=2)(
        jax.random.key(seed + 1), batch, max_position
    )
    return batch, out


@pytest.mark.parametrize(("max_len", "max_position"), [(1, 2), (10, 480)])
def test_randomize_positions_sorted_distinct_in_range(max_len, max_position):
    lengths = np.array(list(range(1, max_len + 1)) * 25)
    batch, out = _randomized(max_len, lengths, max_position)
    positions = np.asarray(out.positions)
    assert positions.shape == batch.positions.shape
    for b, n in enumerate(lengths):
        # Slot order of the sequence: the n inputs, then the n outputs.
        seq = np.concatenate([positions[b, :n], positions[b, max_len : max_len + n]])
        assert np.all(np.diff(seq) > 0), (n, seq)  # strictly: hence distinct
        assert seq.min() >= 0 and seq.max() < max_position, seq
        assert np.all(positions[b, n:max_len] == 0)
        assert np.all(positions[b, max_len + n :] == 0)
    for field in ("tokens", "valid", "targets", "loss_mask"):
        np.testing.assert_array_equal(
            np.asarray(getattr(out, field)), np.asarray(getattr(batch, field))
        )
    # Not just 0..2n-1: the draws spread over the range.
    if max_position > 2 * max_len:
        assert positions.max() > 2 * max_len


@pytest.mark.parametrize(("max_len", "max_position"), [(2, 6), (3, 6)])
def test_randomize_positions_every_subset_equally_likely(max_len, max_position):
    # n = 1: the (input, output) position pair is a 2-subset of [0, max_position);
    # Ruoss et al. draw it uniformly, so each of the C(6, 2) = 15 pairs is 1/15.
    rows = 15_000
    _, out = _randomized(max_len, np.ones(rows, np.int32), max_position, seed=7)
    positions = np.asarray(out.positions)
    pairs = collections.Counter(
        zip(positions[:, 0].tolist(), positions[:, max_len].tolist(), strict=True)
    )
    assert set(pairs) == set(itertools.combinations(range(max_position), 2))
    freq = np.array(list(pairs.values())) / rows
    # 1000 expected per pair, standard deviation ~31: 15% is ~5 sigma.
    np.testing.assert_allclose(freq, 1 / 15, rtol=0.15)
