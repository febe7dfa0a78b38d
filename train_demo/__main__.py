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
from rich.text import Text

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
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seeds", type=int, default=1, help="seeds trained together (vmap)")
    p.add_argument("--train-length", type=int, default=20)
    p.add_argument("--test-length", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=3e-3)
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


def console_for_stdout() -> Console:
    """A rich Console; off a terminal (logs, pipes) it never wraps lines, so
    paths and messages stay whole on one line."""
    console = Console()
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=max(console.width, 160))
    return console


def _say(console: Console, text: str) -> None:
    """Prints plain text: no markup, no highlighting (paths may hold '[')."""
    console.print(Text(text))


def _error(console: Console, error: Exception) -> int:
    console.print(Text.assemble(("error:", "red"), f" {error}"))
    return 2


def _interrupted(out: pathlib.Path, encodings, steps: int) -> str:
    """What an interrupt left in ``out`` and how to go on."""
    if not (out / run.CONFIG_FILE).is_file():
        return "interrupted before the run started: nothing was saved."
    progress = run.saved_progress(out, encodings)
    if not any(progress.values()):
        return (
            f"interrupted before the first checkpoint: {out} holds nothing to "
            "resume yet (with --resume, training starts again from step 0)."
        )
    saved = "; ".join(
        f"{encoding} at step {step}/{steps}" if step else f"{encoding}: none yet"
        for encoding, step in progress.items()
    )
    return (
        f"interrupted. Checkpoints in {out}: {saved}. "
        "Continue with the same arguments and --resume."
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code (130 after Ctrl-C)."""
    seen = {}  # what _main got to before an interrupt
    try:
        return _main(argv, seen)
    except KeyboardInterrupt:
        if "out" not in seen:
            _say(console_for_stdout(), "\ninterrupted: nothing was saved.")
            return 130
        config = seen.get("config")
        message = _interrupted(
            seen["out"],
            config.encodings if config else None,
            config.base.steps if config else seen["args"].steps,
        )
        _say(seen["console"], "\n" + message)
        return 130


def _main(argv: list[str] | None, seen: dict) -> int:
    args = parser().parse_args(argv)
    console = console_for_stdout()
    out = pathlib.Path(args.out)
    seen.update(args=args, console=console, out=out)
    try:
        config = seen["config"] = config_from_args(args)
        run.prepare_output(out, config, args.resume)
        outcome = _train(config, out, console)
        _say(
            console,
            f"Accuracy of the trained models on fresh examples of every length "
            f"1..{config.base.test_length} (the progress showed train-batch "
            "accuracy):",
        )
        console.print(report.table(outcome["report"]))
        paths = report.plots(outcome["report"], outcome["histories"], out)
    except (run.UsageError, ValueError) as error:
        return _error(console, error)
    plots = ", ".join(map(str, paths))
    _say(console, f"results: {out / 'results.json'}; plots: {plots}")
    return 0


def _train(config: run.RunConfig, out: pathlib.Path, console: Console) -> dict:
    """run.run with a progress bar on a terminal, progress lines elsewhere."""
    columns = (
        TextColumn("{task.description:24s}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn(
            "loss {task.fields[loss]:.3f} train-batch acc {task.fields[acc]:.3f}"
        ),
        TextColumn("{task.fields[rate]:.1f} steps/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        current = {}

        def on_start(encoding, step):
            current["id"] = bar.add_task(
                encoding,
                total=config.base.steps,
                completed=step,
                loss=float("nan"),
                acc=0.0,
                rate=0.0,
            )
            if not console.is_terminal:
                since = f" from the checkpoint at step {step}" if step else ""
                _say(console, f"training {encoding}{since} ...")

        def on_progress(step, loss, acc, rate):
            bar.update(current["id"], completed=step, loss=loss, acc=acc, rate=rate)
            if not console.is_terminal and step % 500 == 0:
                _say(
                    console,
                    f"  step {step}: loss {loss:.3f} train-batch acc {acc:.3f} "
                    f"({rate:.1f} steps/s)",
                )

        return run.run(config, out, on_start=on_start, on_progress=on_progress)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before main could handle it
        sys.exit(130)
