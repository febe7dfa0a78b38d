"""Max |error| per position decade, ours vs naive float32: sinusoidal and RoPE.

The naive formula is ``sin(positions * inv_freq)`` with both factors in
float32, as most code writes it (and as a float32 PyTorch or JAX port of a
checkpoint computes its RoPE angles). The reference is float64 NumPy. The RoPE
table rotates random unit-variance queries (head 128, Llama 3's base 500000)
and compares the rotated values.

    python -m benchmarks.precision [--dim 1024] [--samples 4096]
"""

from __future__ import annotations

import argparse
import itertools

import jax
import jax.numpy as jnp
import numpy as np

import flax_posenc as fp
from benchmarks import _timing

EDGES = (1, 10, 100, 1_000, 10_000, 100_000, 2**20)


def decade_errors(dim: int, samples: int) -> list[tuple[int, int, float, float]]:
    """``(low, high, ours, naive)`` max |error| against float64 per decade.

    Each decade ``[low, high)`` is measured on its last ``samples`` positions,
    plus as many drawn at random from the rest when the decade is larger.
    """
    inv_freq = fp.sinusoidal_frequencies(dim)
    ours_fn = jax.jit(lambda p: fp.sinusoidal_encoding(p, dim, layout="halves"))

    @jax.jit
    def naive_fn(p):
        angles = p.astype(jnp.float32)[:, None] * jnp.asarray(inv_freq, jnp.float32)
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)

    rng = np.random.default_rng(0)
    rows = []
    for low, high in itertools.pairwise(EDGES):
        count = min(samples, high - low)
        positions = np.arange(high - count, high)
        if high - low > 2 * samples:  # and a random sample of the rest
            positions = np.concatenate([positions, rng.integers(low, high, count)])
        angles = positions[:, None].astype(np.float64) * inv_freq
        expected = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
        ours, naive = (
            float(
                np.abs(
                    np.asarray(fn(jnp.asarray(positions)), np.float64) - expected
                ).max()
            )
            for fn in (ours_fn, naive_fn)
        )
        rows.append((low, high, ours, naive))
    return rows


def rope_decade_errors(
    head_dim: int, base: float, samples: int
) -> list[tuple[int, int, float, float]]:
    """``(low, high, ours, naive)`` max |error| of rotated queries per decade."""
    inv_freq = fp.rope_frequencies(head_dim, base=base)[0]
    ours_fn = jax.jit(lambda x, p: fp.apply_rope(x, p, base=base))

    @jax.jit
    def naive_fn(x, p):
        angles = p.astype(jnp.float32)[:, None] * jnp.asarray(inv_freq, jnp.float32)
        cos = jnp.concatenate([jnp.cos(angles)] * 2, axis=-1)[:, None]
        sin = jnp.concatenate([jnp.sin(angles)] * 2, axis=-1)[:, None]
        half = head_dim // 2
        rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    rng = np.random.default_rng(0)
    rows = []
    for low, high in itertools.pairwise(EDGES):
        count = min(samples, high - low)
        positions = np.arange(high - count, high)
        x = rng.standard_normal((positions.size, 1, head_dim)).astype(np.float32)
        angles = positions[:, None].astype(np.float64) * inv_freq
        cos = np.concatenate([np.cos(angles)] * 2, axis=-1)[:, None]
        sin = np.concatenate([np.sin(angles)] * 2, axis=-1)[:, None]
        x64 = x.astype(np.float64)
        half = head_dim // 2
        rotated = np.concatenate([-x64[..., half:], x64[..., :half]], axis=-1)
        expected = x64 * cos + rotated * sin
        ours, naive = (
            float(
                np.abs(
                    np.asarray(fn(jnp.asarray(x), jnp.asarray(positions)), np.float64)
                    - expected
                ).max()
            )
            for fn in (ours_fn, naive_fn)
        )
        rows.append((low, high, ours, naive))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=4096)
    args = parser.parse_args()
    print(f"machine: {_timing.machine()}")
    print(f"dim {args.dim}; per decade: the last {args.samples} positions of it")
    print(f"{'positions':>22s} {'ours':>10s} {'naive f32':>10s}")
    for low, high, ours, naive in decade_errors(args.dim, args.samples):
        label = f"[{low}, {high})"
        print(f"{label:>22s} {ours:10.2e} {naive:10.2e}")
    print()
    print(
        "RoPE, head_dim 128, base 500000: rotated N(0, 1) queries, the last "
        f"{args.samples} positions of each decade"
    )
    print(f"{'positions':>22s} {'ours':>10s} {'naive f32':>10s}")
    for low, high, ours, naive in rope_decade_errors(128, 500_000.0, args.samples):
        label = f"[{low}, {high})"
        print(f"{label:>22s} {ours:10.2e} {naive:10.2e}")


if __name__ == "__main__":
    main()
