"""The precision promise: sin/cos within 1e-6 of float64 for positions < 2**20."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from flax_posenc._src import angles
from tests import references

TOLERANCE = 1e-6  # DESIGN.md's promise, for every position below 2**20.


def _max_error(positions: np.ndarray, dim: int, layout="interleaved") -> float:
    ours = jax.jit(lambda p: fp.sinusoidal_encoding(p, dim, layout=layout))(
        jnp.asarray(positions, jnp.int32)
    )
    expected = references.sinusoidal(
        positions, dim, references.paper_frequencies(dim), layout
    )
    return float(np.max(np.abs(np.asarray(ours, np.float64) - expected)))


def test_every_position_below_2_pow_20_small_dim():
    # All 2**20 positions at dim 64 (its fastest frequencies are the ones the
    # naive float32 product gets most wrong), in chunks to bound memory.
    positions = np.arange(2**20, dtype=np.int64).reshape(16, -1)
    worst = max(_max_error(chunk, 64) for chunk in positions)
    assert worst <= TOLERANCE


@pytest.mark.parametrize("dim", [2, 128, 1024])
def test_sampled_positions_up_to_dim_1024(dim):
    rng = np.random.default_rng(dim)
    positions = np.concatenate(
        [
            np.arange(4096),
            np.arange(2**20 - 4096, 2**20),
            rng.integers(0, 2**20, size=8192),
        ]
    )
    assert _max_error(positions, dim) <= TOLERANCE
    assert _max_error(positions, dim, layout="halves") <= TOLERANCE


def test_negative_positions():
    positions = np.arange(-(2**20), 2**20, 997)
    assert _max_error(positions, 256) <= TOLERANCE


def test_naive_float32_product_misses_the_promise():
    # The baseline the promise is measured against: positions * inv_freq in
    # float32 is off by more than 1e-4 at position 4096 already.
    dim = 512
    inv_freq = references.paper_frequencies(dim)
    p = np.array([4096.0, 2.0**20 - 1])
    naive = np.sin(
        np.asarray(
            jnp.asarray(p, jnp.float32)[:, None] * jnp.asarray(inv_freq, jnp.float32)
        )
    )
    errors = np.abs(naive - np.sin(p[:, None] * inv_freq)).max(axis=1)
    assert errors[0] > 1e-4
    assert errors[1] > 1e-2
    assert _max_error(p.astype(np.int64), dim) <= TOLERANCE


@pytest.mark.parametrize("magnitude", [1.0, 1e3, 1e5])
def test_real_positions_keep_exact_angles(magnitude):
    """Fractional coordinates: sin/cos of p * w (+ phase) within 1e-6 of
    float64 at the float32 p, for angles up to about 1e6 radians."""
    rng = np.random.default_rng(int(magnitude))
    p = (rng.uniform(-1, 1, 4000) * magnitude).astype(np.float32)
    w = np.array([1e-3, 0.7, 3.0, 1570.8, 15707.96])
    w = w[p.max() * w < 2e6]
    phase = -w / 3
    s, c = angles.sin_cos_real(jnp.asarray(p), w, phase=phase)
    theta = p.astype(np.float64)[:, None] * w + phase
    np.testing.assert_allclose(s, np.sin(theta), atol=1e-6)
    np.testing.assert_allclose(c, np.cos(theta), atol=1e-6)
