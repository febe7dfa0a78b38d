"""Generation speed of examples/ decoders: prefill and decode tokens/s, with
the decode cache and without it.

For the tiny fixture decoder and a Llama-shaped model of about 100M
parameters (random weights), batch 1 and 8: a prompt is prefilled into the
cache in one jitted call, then each new token is one jitted step; the plain
loop without a cache runs the whole (padded, causal) sequence again for
every new token. Then the 100M model with a 16k-token prompt (batch 1) on
the blockwise path. Each measurement follows a run that compiles it.

    python -m benchmarks.generate [--prompt 128] [--new 16] [--long 16384]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import _timing
from examples import checkpoint, generation, models

LLAMA_100M = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 768,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
}


@nnx.jit
def _whole(model, ids):
    return model(ids)


def with_cache(model, ids, new):
    """(prefill seconds, decode seconds of ``new - 1`` steps)."""
    batch, length = ids.shape
    segments = np.ones_like(ids)
    positions = np.broadcast_to(np.arange(length, dtype=np.int32), ids.shape)
    model.init_cache(batch, length + new)
    start = time.perf_counter()
    logits = generation._forward(model, ids, positions, segments)[:, -1]
    jax.block_until_ready(logits)
    prefill = time.perf_counter() - start
    ones, last = np.ones((batch, 1), np.int32), positions[:, -1:]
    start = time.perf_counter()
    for _ in range(new - 1):
        token = jnp.argmax(logits, -1).astype(jnp.int32)[:, None]
        last = last + 1
        logits = generation._forward(model, token, last, ones)[:, -1]
    jax.block_until_ready(logits)
    return prefill, time.perf_counter() - start


def without_cache(model, ids, new):
    """Seconds of ``new - 1`` steps that each run the whole padded sequence."""
    batch, length = ids.shape
    seq = np.zeros((batch, length + new), np.int32)
    seq[:, :length] = ids
    start = time.perf_counter()
    for t in range(length, length + new - 1):
        logits = _whole(model, seq)[:, t - 1]
        seq[:, t] = np.asarray(jnp.argmax(logits, -1))
    return time.perf_counter() - start


def report(name, model, batch, prompt, new, plain=True):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, model.config["vocab_size"], (batch, prompt)).astype(np.int32)
    with_cache(model, ids, new)  # compiles
    prefill, decode = with_cache(model, ids, new)
    line = (
        f"{name:>10} batch {batch}: prefill {batch * prompt / prefill:9.0f} tok/s, "
        f"decode {batch * (new - 1) / decode:8.1f} tok/s"
    )
    if plain:
        without_cache(model, ids, 2)  # compiles
        seconds = without_cache(model, ids, new)
        line += (
            f", no cache {batch * (new - 1) / seconds:8.1f} tok/s "
            f"(cache {seconds / decode:.1f}x faster)"
        )
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=16)
    parser.add_argument("--long", type=int, default=16384)
    args = parser.parse_args()
    print(f"machine: {_timing.machine()}")
    print(f"prompt {args.prompt} tokens, {args.new} new tokens")
    tiny = models.build(
        checkpoint.read_config(
            checkpoint.__file__.rsplit("/", 1)[0] + "/fixtures/llama"
        )
    )
    big = models.build(LLAMA_100M)
    count = sum(
        int(np.prod(v.get_value().shape))
        for _, v in nnx.to_flat_state(nnx.state(big, nnx.Param))
    )
    print(f"Llama-shaped model: {count / 1e6:.1f}M parameters")
    for batch in (1, 8):
        report("tiny", tiny, batch, args.prompt, args.new)
        report("100M", big, batch, args.prompt, args.new)
    long = models.build(LLAMA_100M, attention={"implementation": "blockwise"})
    nnx.update(long, nnx.state(big, nnx.Param))
    print(
        f"{args.long}-token prompt, blockwise attention (no plain loop: each of "
        "its steps would be a whole 16k forward pass)"
    )
    report("100M", long, 1, args.long, args.new, plain=False)


if __name__ == "__main__":
    main()
