"""What absolute positions output on Bucket Sort past the training lengths.

Trains ``--encodings`` (default sinusoidal and learned) for ``--seeds`` seeds
(default 3, trained together by vmap, seeds 0, 1, 2) with the demo's own
defaults (the ``python -m train_demo`` flags; any of them can be passed here
too, e.g. ``--steps 3000``), predicts ``--examples`` fresh examples at each of
``--lengths``, and prints per encoding, seed and length:

- ``acc``: per-token accuracy, the demo's measure (chance: 1/5);
- ``above`` / ``below``: outputs higher / lower than the correct symbol;
- ``copy``: outputs equal to the input token of the same slot;
- ``seen``: output slots whose position ``n + j`` was an output position in
  training (``< 2 * train_length``), and over those: ``seen acc``, and the
  ``shift`` ``k`` for which most outputs equal the sorted answer read ``k``
  slots later (``at shift``: that fraction, reads past the end counting as
  misses);
- over the other, unseen, output positions: ``unseen acc``, ``mode`` (outputs
  equal to the example's most frequent one there) and ``0s`` (outputs equal to
  symbol 0, the lowest).

The network's output layer has one logit per symbol and none for the
placeholder, so it cannot output the placeholder.

    python -m benchmarks.demo_dip [--lengths 20,23,25,27,30,33,35,40] \\
        [--examples 256] [--dump FILE.npz] [python -m train_demo flags]
    python -m benchmarks.demo_dip --load FILE.npz  # print again, no training
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _timing
from train_demo import train
from train_demo.cli import config_from_args
from train_demo.flags import parser as demo_parser


def train_seeds(config: train.TrainConfig) -> tuple[train.Trainer, train.State]:
    """Trains ``config.seeds`` seeds as ``python -m train_demo`` does."""
    trainer = train.Trainer(config)
    state = trainer.init_seeds(list(range(config.seeds)))
    step = 0
    while step < config.steps:
        chunk = min(config.steps_per_call, config.steps - step)
        state, _ = trainer.train(state, chunk)
        step += chunk
    jax.block_until_ready(state)
    return trainer, state


def predict(
    trainer: train.Trainer, state: train.State, length: int, examples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``[examples, length]``, targets and predictions ``[seeds, ...]``."""
    config = trainer.config
    key = jax.random.fold_in(jax.random.key(seed), length)
    batch = trainer.batch(key, jnp.full((examples,), length), config.test_length)
    logits = jax.jit(jax.vmap(trainer._logits, in_axes=(0, None)))(state.params, batch)
    out = slice(config.test_length, config.test_length + length)
    inputs = np.asarray(batch.tokens[:, :length])
    targets = np.asarray(batch.targets[:, out])
    predictions = np.asarray(logits.argmax(-1)[:, :, out])
    return inputs, targets, predictions


def describe(inputs, targets, predictions, train_length: int) -> dict[str, float]:
    """What one seed outputs at one length (see the module docstring)."""
    n = targets.shape[1]
    seen = n + np.arange(n) < 2 * train_length  # output positions trained on
    result = {
        "acc": (predictions == targets).mean(),
        "above": (predictions > targets).mean(),
        "below": (predictions < targets).mean(),
        "copy": (predictions == inputs).mean(),
        "seen": seen.sum(),
    }
    if seen.any():
        out, answer = predictions[:, seen], targets
        slots = np.flatnonzero(seen)

        def match(k):  # the sorted answer read k slots later; none past the end
            read = slots + k
            inside = (read >= 0) & (read < n)
            hits = out[:, inside] == answer[:, read[inside]]
            return hits.sum() / out.size

        shift = max(range(-n + 1, n), key=match)
        result |= {
            "seen acc": (out == targets[:, seen]).mean(),
            "shift": shift,
            "at shift": match(shift),
        }
    if not seen.all():
        out = predictions[:, ~seen]
        modes = np.array([np.bincount(row, minlength=5).argmax() for row in out])
        result |= {
            "unseen acc": (out == targets[:, ~seen]).mean(),
            "mode": (out == modes[:, None]).mean(),
            "0s": (out == 0).mean(),
        }
    return {k: float(v) for k, v in result.items()}


COLUMNS = (
    ("acc", "6.3f"),
    ("above", "6.3f"),
    ("below", "6.3f"),
    ("copy", "6.3f"),
    ("seen", "5.0f"),
    ("seen acc", "9.3f"),
    ("shift", "+6.0f"),
    ("at shift", "9.3f"),
    ("unseen acc", "11.3f"),
    ("mode", "6.3f"),
    ("0s", "6.3f"),
)


def print_rows(encoding, dump, lengths, train_length):
    print(f"\n{encoding}")
    header = "seed length " + " ".join(
        f"{name:>{int(spec.split('.')[0].lstrip('+'))}}" for name, spec in COLUMNS
    )
    print(header)
    for length in lengths:
        inputs, targets, *predictions = dump[f"{encoding}_{length}"]
        for seed, prediction in enumerate(predictions):
            row = describe(inputs, targets, prediction, train_length)
            cells = []
            for name, spec in COLUMNS:
                width = int(spec.split(".")[0].lstrip("+"))
                cells.append(
                    format(row[name], spec) if name in row else "-".rjust(width)
                )
            print(f"{seed:4d} {length:6d} " + " ".join(cells))


def main() -> None:
    ours = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ours.add_argument("--lengths", default="20,23,25,27,30,33,35,40")
    ours.add_argument("--examples", type=int, default=256)
    ours.add_argument("--dump", help="save inputs, targets and predictions (npz)")
    ours.add_argument("--load", help="print from a --dump file instead of training")
    args, demo_argv = ours.parse_known_args()
    for flag, value in {"--encodings": "sinusoidal,learned", "--seeds": "3"}.items():
        if not any(a == flag or a.startswith(flag + "=") for a in demo_argv):
            demo_argv += [flag, value]
    run_config = config_from_args(demo_parser().parse_args(demo_argv))
    base = run_config.base
    lengths = [int(n) for n in args.lengths.split(",")]
    if args.load:
        with np.load(args.load) as saved:
            dump = dict(saved)
        print(f"predictions from {args.load}: {dump.pop('made_by', '')}")
    else:
        print(f"machine: {_timing.machine()}")
        dump = {"made_by": f"{_timing.machine()}; demo flags {' '.join(demo_argv)}"}
    print(
        f"{base.task}, {base.steps} steps, batch {base.batch_size}, "
        f"{base.num_layers} layers, d={base.features}, {base.num_heads} heads, "
        f"train lengths 1..{base.train_length} (output positions up to "
        f"{2 * base.train_length - 1} seen), {base.seeds} seeds"
    )
    for encoding in run_config.encodings:
        if not args.load:
            config = dataclasses.replace(base, encoding=encoding)
            start = time.perf_counter()
            trainer, state = train_seeds(config)
            seconds = time.perf_counter() - start
            print(f"\n{encoding}: trained in {seconds:.0f} s", end="")
            for length in lengths:
                inputs, targets, predictions = predict(
                    trainer, state, length, args.examples, seed=12345
                )
                dump[f"{encoding}_{length}"] = np.stack([inputs, targets, *predictions])
        print_rows(encoding, dump, lengths, base.train_length)
    if args.dump:
        np.savez(args.dump, **dump)


if __name__ == "__main__":
    main()
