"""layer_norm / rms_norm vs flax.linen.LayerNorm / RMSNorm, fwd and fwd+bwd.

Prints medians of alternating pairs (same process), each ratio ours/theirs,
and every time as a multiple of one ``x * 2`` pass (read x, write x: the
memory-bandwidth bound of an elementwise op on the same array).

    python -m benchmarks.norms [--shape 64 512 1024] [--pairs 15]
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp

import flax_posenc as fp
from benchmarks import _timing


def _fwd_bwd(f):
    def run(x, params, cotangent):
        _, pullback = jax.vjp(f, x, params)
        return pullback(cotangent)

    return jax.jit(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 512, 1024])
    parser.add_argument("--pairs", type=int, default=15)
    args = parser.parse_args()
    shape = tuple(args.shape)
    features = shape[-1]
    keys = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(keys[0], shape, jnp.float32)
    cotangent = jax.random.normal(keys[1], shape, jnp.float32)
    ln_params = {"scale": jnp.ones(features), "bias": jnp.zeros(features)}
    rms_params = {"scale": jnp.ones(features)}

    flax_ln = nn.LayerNorm()
    flax_ln_exact = nn.LayerNorm(use_fast_variance=False)
    flax_rms = nn.RMSNorm()
    cases = [
        (
            "layer_norm vs flax LayerNorm (fast variance, default)",
            lambda x, p: fp.layer_norm(x, p["scale"], p["bias"]),
            lambda x, p: flax_ln.apply({"params": p}, x),
            ln_params,
        ),
        (
            "layer_norm vs flax LayerNorm(use_fast_variance=False)",
            lambda x, p: fp.layer_norm(x, p["scale"], p["bias"]),
            lambda x, p: flax_ln_exact.apply({"params": p}, x),
            ln_params,
        ),
        (
            "rms_norm vs flax RMSNorm",
            lambda x, p: fp.rms_norm(x, p["scale"]),
            lambda x, p: flax_rms.apply({"params": p}, x),
            rms_params,
        ),
    ]
    bound = jax.jit(lambda x: x * 2)
    bound_time, _, _ = _timing.alternating_pairs(bound, bound, (x,), pairs=args.pairs)

    print(f"machine: {_timing.machine()}")
    print(f"shape {shape} float32; x*2 pass: {bound_time * 1e3:.2f} ms")
    header = f"{'case':56s} {'pass':8s} {'ours ms':>8s} {'theirs ms':>9s}"
    print(f"{header} {'ratio':>6s} {'ours/x2':>7s} {'theirs/x2':>9s}")
    for name, ours, theirs, params in cases:
        for label, wrap, call_args in [
            ("fwd", jax.jit, (x, params)),
            ("fwd+bwd", _fwd_bwd, (x, params, cotangent)),
        ]:
            t_ours, t_theirs, ratio = _timing.alternating_pairs(
                wrap(ours), wrap(theirs), call_args, pairs=args.pairs
            )
            print(
                f"{name:56s} {label:8s} {t_ours * 1e3:8.2f} {t_theirs * 1e3:9.2f} "
                f"{ratio:6.2f} {t_ours / bound_time:7.2f} {t_theirs / bound_time:9.2f}"
            )


if __name__ == "__main__":
    main()
