"""train_demo speed: steps/s of one seed at the default size, and K vmapped seeds.

Times ``--steps`` training steps after a first chunk that includes compilation,
for one seed and for ``--seeds`` seeds trained together by vmap, in the same
process. Prints the measured seconds, steps/s, the compile-inclusive time of
a run of the default number of steps projected from them, and the K-seed /
1-seed time ratio.

    python -m benchmarks.demo_speed [--encoding sinusoidal] [--steps 500] [--seeds 4]
"""

from __future__ import annotations

import argparse
import time

import jax

from benchmarks import _timing
from train_demo import train


def measure(config: train.TrainConfig, seeds: int, steps: int) -> tuple[float, float]:
    """(seconds of the first chunk incl. compilation, seconds of ``steps`` steps)."""
    trainer = train.Trainer(config)
    state = trainer.init_seeds(list(range(seeds)))
    chunk = config.steps_per_call
    start = time.perf_counter()
    state, (loss, _) = trainer.train(state, chunk)
    jax.block_until_ready(loss)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps // chunk):
        state, (loss, _) = trainer.train(state, chunk)
    jax.block_until_ready(loss)
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoding", default="sinusoidal")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    config = train.TrainConfig(encoding=args.encoding)
    print(f"machine: {_timing.machine()}")
    print(
        f"{args.encoding}, batch {config.batch_size}, {config.num_layers} layers, "
        f"d={config.features}, {config.num_heads} heads, "
        f"lengths 1..{config.train_length}"
    )
    times = {}
    for seeds in (1, args.seeds):
        first, seconds = measure(config, seeds, args.steps)
        rate = args.steps / seconds
        projected = first + (config.steps - config.steps_per_call) / rate
        times[seeds] = seconds
        print(
            f"seeds {seeds}: first chunk (compile + {config.steps_per_call} steps) "
            f"{first:.1f} s; {args.steps} steps {seconds:.1f} s = {rate:.1f} steps/s; "
            f"{config.steps}-step run projected {projected:.0f} s"
        )
    print(
        f"{args.seeds} vmapped seeds / 1 seed, time per step: "
        f"{times[args.seeds] / times[1]:.2f}x"
    )


if __name__ == "__main__":
    main()
