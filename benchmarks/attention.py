"""Attention with positions: ours vs jax.nn and Flax's MultiHeadDotProductAttention.

1. Functional, grouped-query (q heads 16, kv heads 4), causal, RoPE on q and
   k: ``dot_product_attention`` with ``attention_mask`` from positions vs
   ``jax.nn.dot_product_attention(is_causal=True)`` called directly on the same
   rotated q and k. Forward, and forward + backward (one ``jax.vjp``).
2. Module, multi-head (Flax's module has no GQA): ``MultiHeadAttention`` with
   ``RotaryEmbedding`` vs ``flax.linen.MultiHeadDotProductAttention`` with RoPE
   added through its ``attention_fn`` hook and ``nn.make_causal_mask``.
3. Decoding: one new token against a cache of ``seq`` keys vs the same step
   without a cache (re-running the whole prefix).

Medians of alternating pairs in one process.

    python -m benchmarks.attention [--batch 8] [--seq 1024] [--pairs 5]
"""

from __future__ import annotations

import argparse
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

import flax_posenc as fp
from benchmarks import _timing
from flax_posenc.linen import MultiHeadAttention, RotaryEmbedding


def _vjp(fn):
    """fwd + bwd: the outputs' vjp with a ones cotangent, for every input."""

    def run(*args):
        out, pullback = jax.vjp(fn, *args)
        return pullback(jnp.ones_like(out))

    return jax.jit(run)


def functional(args, heads=16, kv_heads=4, head_dim=64):
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (args.batch, args.seq, heads, head_dim))
    k = jax.random.normal(keys[1], (args.batch, args.seq, kv_heads, head_dim))
    v = jax.random.normal(keys[2], (args.batch, args.seq, kv_heads, head_dim))
    positions = jnp.arange(args.seq)[None]

    def ours(q, k, v):
        q, k = fp.apply_rope(q, positions), fp.apply_rope(k, positions)
        mask = fp.attention_mask(positions, positions, causal=True)
        return fp.dot_product_attention(q, k, v, mask=mask)

    def theirs(q, k, v):
        q, k = fp.apply_rope(q, positions), fp.apply_rope(k, positions)
        return jax.nn.dot_product_attention(q, k, v, is_causal=True)

    rows = []
    for name, wrap in (("fwd", jax.jit), ("fwd+bwd", _vjp)):
        rows.append(
            (
                name,
                *_timing.alternating_pairs(
                    wrap(ours), wrap(theirs), (q, k, v), pairs=args.pairs
                ),
            )
        )
    return rows


def _rope_attention_fn(query, key, value, bias=None, mask=None, **kwargs):
    """Flax's attention_fn with RoPE: rotate q and k, then Flax's own attention."""
    positions = jnp.arange(query.shape[-3])
    query = fp.apply_rope(query, positions)
    key = fp.apply_rope(key, positions)
    return nn.dot_product_attention(query, key, value, bias=bias, mask=mask, **kwargs)


def module(args, heads=16, head_dim=64):
    features = heads * head_dim
    x = jax.random.normal(jax.random.key(1), (args.batch, args.seq, features))
    ours_module = MultiHeadAttention(
        num_heads=heads,
        head_dim=head_dim,
        qkv_bias=True,
        out_bias=True,
        rotary=RotaryEmbedding(),
        causal=True,
    )
    flax_module = nn.MultiHeadDotProductAttention(
        num_heads=heads, qkv_features=features, attention_fn=_rope_attention_fn
    )
    causal = nn.make_causal_mask(jnp.ones((args.batch, args.seq)))
    ours_params = ours_module.init(jax.random.key(2), x)["params"]
    flax_params = flax_module.init(jax.random.key(2), x, mask=causal)["params"]

    def ours(params, x):
        return ours_module.apply({"params": params}, x)

    def theirs(params, x):
        return flax_module.apply({"params": params}, x, mask=causal)

    rows = []
    for name, wrap in (("fwd", jax.jit), ("fwd+bwd", _vjp)):
        # Each gets its own parameters, bound here; both take x.
        ours_fn, theirs_fn = wrap(ours), wrap(theirs)
        rows.append(
            (
                name,
                *_timing.alternating_pairs(
                    functools.partial(ours_fn, ours_params),
                    functools.partial(theirs_fn, flax_params),
                    (x,),
                    pairs=args.pairs,
                ),
            )
        )
    return rows


def decoding(args, heads=16, kv_heads=4, head_dim=64):
    features = heads * head_dim
    block = MultiHeadAttention(
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rotary=RotaryEmbedding(),
        causal=True,
    )
    x = jax.random.normal(jax.random.key(3), (args.batch, args.seq, features))
    params = block.init(jax.random.key(4), x)["params"]
    cache = block.init(jax.random.key(4), x, decode=True)["cache"]
    # A cache holding seq - 1 tokens, so that the step fills its last slot.
    _, state = block.apply(
        {"params": params, "cache": cache}, x[:, :-1], decode=True, mutable=["cache"]
    )
    cache = state["cache"]

    @jax.jit
    def step(cache, token):
        out, _ = block.apply(
            {"params": params, "cache": cache}, token, decode=True, mutable=["cache"]
        )
        return out

    @jax.jit
    def rerun(x):
        return block.apply({"params": params}, x)[:, -1:]

    token = x[:, -1:]
    # Same argument tuple for both: (cache, x) is split by each.
    return _timing.alternating_pairs(
        lambda cache, x: step(cache, x[:, -1:]),
        lambda cache, x: rerun(x),
        (cache, x),
        pairs=args.pairs,
    ), float(jnp.abs(step(cache, token) - rerun(x)).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {_timing.machine()}")
    print(
        f"batch {args.batch}, seq {args.seq}, 16 heads of 64, causal, RoPE; "
        f"medians of {args.pairs} alternating pairs"
    )
    header = f"{'case':58s} {'pass':8s} {'ours ms':>8s} {'theirs ms':>9s} {'ratio':>6s}"
    print(header)
    for label, rows in (
        ("GQA (4 kv heads) vs jax.nn.dot_product_attention", functional(args)),
        ("MultiHeadAttention vs flax MultiHeadDotProductAttention", module(args)),
    ):
        for name, ours, theirs, ratio in rows:
            print(
                f"{label:58s} {name:8s} {ours * 1e3:8.2f} {theirs * 1e3:9.2f} "
                f"{ratio:6.2f}"
            )
    (ours, theirs, ratio), diff = decoding(args)
    print(
        f"{'decode 1 token with a cache vs re-running the prefix':58s} {'fwd':8s} "
        f"{ours * 1e3:8.2f} {theirs * 1e3:9.2f} {ratio:6.2f}"
    )
    print(f"max |cached step - re-run| = {diff:.2e}")


if __name__ == "__main__":
    main()
