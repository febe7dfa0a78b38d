"""The command line's flags, parsed before jax and the training code load.

``python -m train_demo --help`` and a misspelt flag answer at once: this
module imports nothing heavier than `argparse` and `train_demo.names`; what
trains (`train_demo.command`) is imported once the arguments are parsed.
"""

from __future__ import annotations

import argparse
import math

from train_demo import names

DEFAULT_ENCODINGS = "none,sinusoidal,alibi,randomized_rope"

# Printed when a Ctrl-C comes before the run has an output folder.
NOTHING_SAVED = "interrupted: nothing was saved."


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Ends each flag's help with its default, unless the help gives it in
    words (``(default: ...)``); on/off flags (``--resume``) are off unless given."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(default:" in (action.help or "") or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train_demo",
        description="Train a small encoder with each positional scheme and "
        "compare accuracy in and beyond the training lengths.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--task",
        choices=tuple(names.TASK_SYMBOLS),
        default="bucket_sort",
        help="the sequence task to learn",
    )
    p.add_argument(
        "--encodings",
        default=DEFAULT_ENCODINGS,
        help=f"comma-separated, from {', '.join(names.ENCODINGS)}",
    )
    p.add_argument("--steps", type=int, default=500, help="training steps")
    p.add_argument("--seeds", type=int, default=1, help="seeds trained together (vmap)")
    p.add_argument(
        "--train-length",
        type=int,
        default=20,
        help="training examples have lengths 1..this",
    )
    p.add_argument(
        "--test-length",
        type=int,
        default=60,
        help="accuracy is measured at every length 1..this",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="examples per training step"
    )
    p.add_argument(
        "--learning-rate", type=float, default=3e-3, help="peak learning rate"
    )
    p.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default="cosine",
        help="after the warm-up: a constant learning rate, or a cosine decay to 0",
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="steps of linear warm-up from 0 before either schedule "
        "(default: a tenth of --steps)",
    )
    p.add_argument("--layers", type=int, default=3, help="encoder blocks")
    p.add_argument("--features", type=int, default=64, help="model width")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument(
        "--norm", choices=("layer", "rms"), default="layer", help="LayerNorm or RMSNorm"
    )
    p.add_argument(
        "--norm-position",
        choices=("post", "pre"),
        default="post",
        help="normalize after each residual sum (post-LN) or before each block",
    )
    p.add_argument(
        "--combine",
        choices=("add", "concat"),
        default="add",
        help="sinusoidal and learned positions added to the token embeddings, "
        "or concatenated (half the features each); other schemes ignore it",
    )
    p.add_argument(
        "--api",
        choices=("linen", "nnx"),
        default="linen",
        help="build the encoder from the linen modules or their NNX twins",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=500,
        help="steps between checkpoints (and one at the end)",
    )
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    return p


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
    return command.main(args)
