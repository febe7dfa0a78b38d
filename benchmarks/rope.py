"""apply_rope on q and k vs a plain ``rotate_half`` implementation, fwd.

The plain implementation is what most JAX ports write: float32
``positions * inv_freq``, ``cos``/``sin`` cast to the input dtype, and
``x * cos + rotate_half(x) * sin`` in the input dtype. Both are timed on q and
k in one jitted call, and against one ``x * 2`` pass over q and k (read and
write both: the memory-bandwidth bound). Medians of alternating pairs.

    python -m benchmarks.rope [--shape 8 2048 32 128] [--pairs 9]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import flax_posenc as fp
from benchmarks import _timing


def plain_rope(x, positions, base=10_000.0):
    dim = x.shape[-1]
    inv_freq = 1.0 / (base ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)[..., None, :]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    half = dim // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 2048, 32, 128])
    parser.add_argument("--pairs", type=int, default=9)
    args = parser.parse_args()
    shape = tuple(args.shape)
    positions = jnp.arange(shape[1])[None]

    ours = jax.jit(
        lambda q, k: (fp.apply_rope(q, positions), fp.apply_rope(k, positions))
    )
    plain = jax.jit(lambda q, k: (plain_rope(q, positions), plain_rope(k, positions)))
    bound = jax.jit(lambda q, k: (q * 2, k * 2))

    print(f"machine: {_timing.machine()}")
    print(f"q and k of shape {shape}, positions arange({shape[1]})")
    print(
        f"{'dtype':9s} {'ours ms':>8s} {'plain ms':>9s} {'x2 ms':>7s} "
        f"{'ours/plain':>10s} {'ours/x2':>8s} {'plain/x2':>9s} {'max|ours-plain|':>16s}"
    )
    for dtype in (jnp.float32, jnp.bfloat16):
        keys = jax.random.split(jax.random.key(0), 2)
        q = jax.random.normal(keys[0], shape, dtype)
        k = jax.random.normal(keys[1], shape, dtype)
        t_ours, t_plain, ratio_plain = _timing.alternating_pairs(
            ours, plain, (q, k), pairs=args.pairs
        )
        _, t_bound, ratio_bound = _timing.alternating_pairs(
            ours, bound, (q, k), pairs=args.pairs
        )
        diff = np.max(
            np.abs(
                np.asarray(ours(q, k)[0], np.float32)
                - np.asarray(plain(q, k)[0], np.float32)
            )
        )
        print(
            f"{jnp.dtype(dtype).name:9s} {t_ours * 1e3:8.1f} {t_plain * 1e3:9.1f} "
            f"{t_bound * 1e3:7.1f} {ratio_plain:10.2f} {ratio_bound:8.2f} "
            f"{t_plain / t_bound:9.2f} {diff:16.2e}"
        )


if __name__ == "__main__":
    main()
