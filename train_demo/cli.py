"""The command line: parses the flags (`train_demo.flags`) before jax and
the training code load, then hands them to `train_demo.command`.

``python -m train_demo --help`` and a misspelt flag answer at once: this
module imports nothing heavier than `argparse`, `train_demo.names` and
`train_demo.flags`; what trains (`train_demo.command`) is imported once the
arguments are parsed.
"""

from __future__ import annotations

import argparse
import math

from train_demo import names
from train_demo.flags import NOTHING_SAVED, parser


def config_from_args(args: argparse.Namespace):
    """The run.RunConfig of parsed arguments; raises run.UsageError with a
    clear message if they do not make one."""
    # Imported here, not above: --help must not wait for jax.
    import jax

    from train_demo import run, train

    encodings = tuple(e.strip() for e in args.encodings.split(",") if e.strip())
    unknown = [e for e in encodings if e not in names.ENCODINGS]
    if unknown or not encodings:
        raise run.UsageError(
            f"unknown encoding(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(names.ENCODINGS)}."
        )
    if len(set(encodings)) != len(encodings):
        raise run.UsageError(f"--encodings repeats a name: {args.encodings}.")
    for name in (
        "steps",
        "seeds",
        "train_length",
        "test_length",
        "batch_size",
        "layers",
        "features",
        "heads",
        "checkpoint_every",
    ):
        if getattr(args, name) < 1:
            raise run.UsageError(f"--{name.replace('_', '-')} must be >= 1.")
    if args.warmup_steps is not None and not 0 <= args.warmup_steps < args.steps:
        raise run.UsageError(
            f"--warmup-steps {args.warmup_steps} must be >= 0 and < --steps "
            f"{args.steps}."
        )
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise run.UsageError(
            f"--learning-rate must be a finite number > 0, not {args.learning_rate}."
        )
    if args.train_length > args.test_length:
        raise run.UsageError(
            f"--train-length {args.train_length} must be <= --test-length "
            f"{args.test_length}."
        )
    if args.features % args.heads or (args.features // args.heads) % 2:
        raise run.UsageError(
            f"--features {args.features} must split into --heads {args.heads} "
            "heads of even size (rotary pairs)."
        )
    base = train.TrainConfig(
        task=args.task,
        steps=args.steps,
        seeds=args.seeds,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        train_length=args.train_length,
        test_length=args.test_length,
        num_layers=args.layers,
        features=args.features,
        num_heads=args.heads,
        norm=args.norm,
        norm_position=args.norm_position,
        combine=args.combine,
        api=args.api,
    )
    try:
        train.check_divisible(base, jax.device_count())
    except ValueError as error:
        raise run.UsageError(str(error)) from None
    return run.RunConfig(base, encodings, checkpoint_every=args.checkpoint_every)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code (2 after bad input, 130
    after Ctrl-C). Bad flags and ``--help`` exit from `argparse` (code 2, 0)."""
    try:
        args = parser().parse_args(argv)
        from train_demo import command  # jax, orbax, matplotlib: seconds
    except KeyboardInterrupt:
        print("\n" + NOTHING_SAVED)
        return 130
    return command.main(args, config_from_args)
