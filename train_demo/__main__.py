"""``python -m train_demo``: compare positional schemes on a sequence task.

Example::

    python -m train_demo --task bucket_sort \\
        --encodings none,sinusoidal,randomized_rope --steps 3000 --out runs/demo
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import jax
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from train_demo import model, report, run, tasks, train

DEFAULT_ENCODINGS = "none,sinusoidal,alibi,randomized_rope"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train_demo",
        description="Train a small encoder with each positional scheme and "
        "compare accuracy in and beyond the training lengths.",
    )
    p.add_argument(
        "--task", default="bucket_sort", help=f"one of {', '.join(tasks.TASKS)}"
    )
    p.add_argument(
        "--encodings",
        default=DEFAULT_ENCODINGS,
        help=f"comma-separated, from {', '.join(model.ENCODINGS)}",
    )
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=1, help="seeds trained together (vmap)")
    p.add_argument("--train-length", type=int, default=20)
    p.add_argument("--test-length", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--norm", choices=("layer", "rms"), default="layer")
    p.add_argument("--norm-position", choices=("post", "pre"), default="post")
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
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    return p


def config_from_args(args: argparse.Namespace) -> run.RunConfig:
    """Validates the arguments; raises run.UsageError with a clear message."""
    if args.task not in tasks.TASKS:
        raise run.UsageError(
            f"unknown task {args.task!r}; choose from {', '.join(tasks.TASKS)}."
        )
    encodings = tuple(e.strip() for e in args.encodings.split(",") if e.strip())
    unknown = [e for e in encodings if e not in model.ENCODINGS]
    if unknown or not encodings:
        raise run.UsageError(
            f"unknown encoding(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(model.ENCODINGS)}."
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
    args = parser().parse_args(argv)
    console = Console()
    out = pathlib.Path(args.out)
    try:
        config = config_from_args(args)
        run.prepare_output(out, config, args.resume)
    except (run.UsageError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        return 2

    columns = (
        TextColumn("{task.description:24s}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"),
        TextColumn("{task.fields[rate]:.1f} steps/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        current = {}

        def on_start(encoding):
            current["id"] = bar.add_task(
                encoding, total=config.base.steps, loss=float("nan"), acc=0.0, rate=0.0
            )
            if not console.is_terminal:
                console.print(f"training {encoding} ...")

        def on_progress(step, loss, acc, rate):
            bar.update(current["id"], completed=step, loss=loss, acc=acc, rate=rate)
            if not console.is_terminal and step % 500 == 0:
                console.print(
                    f"  step {step}: loss {loss:.3f} acc {acc:.3f} ({rate:.1f} steps/s)"
                )

        try:
            outcome = run.run(config, out, on_start=on_start, on_progress=on_progress)
        except KeyboardInterrupt:
            console.print(
                f"\ninterrupted: a checkpoint is in {out}; continue with --resume."
            )
            return 130
        except ValueError as error:
            console.print(f"[red]error:[/red] {error}", highlight=False)
            return 2
    console.print(report.table(outcome["report"]))
    paths = report.plots(outcome["report"], outcome["histories"], out)
    console.print(
        f"results: {out / 'results.json'}; plots: {', '.join(map(str, paths))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
