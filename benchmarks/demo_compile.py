"""train_demo compile time: batches drawn inside each encoding's training
program, against batches drawn by programs of their own that encodings share.

For each encoding at the demo's default size, compiles one training chunk
(``steps_per_call`` steps, one seed) two ways, in the same process:

- fused: one program draws every step's batch and trains on it (the demo's
  layout before the batch programs were split off);
- split: the model program of `train.Trainer` (batches in, state out) plus the
  batch program of `data.batches`, compiled once per set of batches that
  encodings share (positions 0..2n-1, or randomized).

Prints seconds (trace + lower + compile) per encoding and the totals' ratio.

    python -m benchmarks.demo_compile [--encodings none,sinusoidal,...]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks import _timing
from train_demo import model, train


def _compile_seconds(fn, *args) -> float:
    start = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return time.perf_counter() - start


def fused_chunk(trainer: train.Trainer):
    """One seed's chunk with each step's batch drawn inside the program."""

    def step(state, _):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
        return trainer._train_step(state, trainer.train_batch(key))

    return lambda state, steps: jax.lax.scan(step, state, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encodings", default=",".join(model.ENCODINGS))
    args = parser.parse_args()
    print(f"machine: {_timing.machine()}")
    fused_total = split_total = 0.0
    compiled_batches = set()
    for encoding in args.encodings.split(","):
        config = train.TrainConfig(encoding=encoding)
        trainer = train.Trainer(config)
        state = trainer.init_seeds([0])
        chunk = config.steps_per_call
        steps = jnp.zeros((1, chunk))
        fused = _compile_seconds(jax.vmap(fused_chunk(trainer)), state, steps)
        split = 0.0
        if config.data not in compiled_batches:  # one batch program per set
            compiled_batches.add(config.data)
            split += _compile_seconds(
                jax.vmap(trainer.batches._draw_train), state.key, state.step, steps
            )
        batches = trainer.batches.train(state, chunk)
        split += _compile_seconds(jax.vmap(trainer._train_chunk), state, batches)
        fused_total += fused
        split_total += split
        print(f"{encoding:24s} fused {fused:6.2f} s   split {split:6.2f} s")
    print(
        f"{'total':24s} fused {fused_total:6.2f} s   split {split_total:6.2f} s"
        f"   ratio split/fused {split_total / fused_total:.2f}"
    )


if __name__ == "__main__":
    main()
