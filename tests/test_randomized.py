"""randomized_positions: sorted distinct positions drawn uniformly."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]


def _check_valid(positions, length, max_position):
    positions = np.asarray(positions)
    assert positions.shape[-1] == length
    assert np.all(np.diff(positions, axis=-1) > 0)
    assert np.all((positions >= 0) & (positions < max_position))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(
    ("length", "max_position"), [(5, 100), (1, 1), (1, 7), (16, 17), (3, 5000)]
)
def test_shape_dtype_sorted_in_range(transform, length, max_position):
    fn = transform(lambda key: fp.randomized_positions(key, length, max_position))
    positions = fn(jax.random.key(0))
    chex.assert_shape(positions, (length,))
    chex.assert_type(positions, jnp.int32)
    _check_valid(positions, length, max_position)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_full_length_is_arange(transform):
    fn = transform(lambda key: fp.randomized_positions(key, 12, 12))
    np.testing.assert_array_equal(np.asarray(fn(jax.random.key(3))), np.arange(12))


def test_length_zero():
    positions = fp.randomized_positions(jax.random.key(0), 0, 10)
    chex.assert_shape(positions, (0,))
    chex.assert_type(positions, jnp.int32)


def test_legacy_uint32_key():
    positions = fp.randomized_positions(jax.random.PRNGKey(1), 4, 50)
    _check_valid(positions, 4, 50)


def test_different_keys_differ_same_key_repeats():
    draws = {
        tuple(fp.randomized_positions(jax.random.key(seed), 6, 1000).tolist())
        for seed in range(8)
    }
    assert len(draws) == 8
    first = fp.randomized_positions(jax.random.key(5), 6, 1000)
    again = fp.randomized_positions(jax.random.key(5), 6, 1000)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))


def test_vmap_over_keys_one_draw_per_row():
    keys = jax.random.split(jax.random.key(0), 16)
    rows = jax.jit(jax.vmap(lambda k: fp.randomized_positions(k, 8, 64)))(keys)
    chex.assert_shape(rows, (16, 8))
    chex.assert_type(rows, jnp.int32)
    _check_valid(rows, 8, 64)
    assert len({tuple(r) for r in np.asarray(rows).tolist()}) == 16
    np.testing.assert_array_equal(
        np.asarray(rows[3]), np.asarray(fp.randomized_positions(keys[3], 8, 64))
    )


def _draws(num, length, max_position, seed=0):
    keys = jax.random.split(jax.random.key(seed), num)
    fn = jax.jit(jax.vmap(lambda k: fp.randomized_positions(k, length, max_position)))
    return np.asarray(fn(keys))


def test_every_position_equally_likely():
    """Each position appears in about length / max_position of the draws.

    Chi-square over the 16 positions (15 degrees of freedom, mean 15, sd ~5.5);
    a sampler favouring some positions (the first ones, say) is far above 60.
    """
    num, length, max_position = 4000, 4, 16
    rows = _draws(num, length, max_position)
    _check_valid(rows, length, max_position)
    counts = np.bincount(rows.reshape(-1), minlength=max_position)
    expected = num * length / max_position
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60.0, (chi2, counts)
    np.testing.assert_allclose(counts / num, length / max_position, atol=0.04)


def test_every_subset_equally_likely():
    """All C(6, 2) = 15 subsets about equally often (chi-square, 14 dof)."""
    num = 3000
    rows = _draws(num, 2, 6, seed=1)
    subsets = list(itertools.combinations(range(6), 2))
    index = {s: i for i, s in enumerate(subsets)}
    counts = np.bincount([index[tuple(r)] for r in rows.tolist()], minlength=15)
    expected = num / len(subsets)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 55.0, (chi2, counts)


def test_gaps_are_not_all_one():
    """Not just a random offset + arange: the gaps vary."""
    rows = _draws(200, 5, 1000, seed=2)
    assert np.mean(np.diff(rows, axis=-1) == 1) < 0.05


def test_length_above_max_raises():
    with pytest.raises(ValueError, match="max_position"):
        fp.randomized_positions(jax.random.key(0), 11, 10)


@pytest.mark.parametrize(("length", "max_position"), [(-1, 10), (0, 0)])
def test_negative_or_empty_sizes_raise(length, max_position):
    with pytest.raises(ValueError):
        fp.randomized_positions(jax.random.key(0), length, max_position)


@pytest.mark.parametrize(("length", "max_position"), [(2.0, 10), (2, 10.0)])
def test_non_int_sizes_raise(length, max_position):
    with pytest.raises(TypeError):
        fp.randomized_positions(jax.random.key(0), length, max_position)


def test_traced_length_is_rejected():
    with pytest.raises(TypeError):
        jax.jit(lambda n: fp.randomized_positions(jax.random.key(0), n, 10))(3)
