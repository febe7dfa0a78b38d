"""What ``python -m train_demo`` does once `train_demo.cli` has parsed its
arguments: train, report, and say what an interrupt left behind."""

from __future__ import annotations

import argparse
import math
import pathlib
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from train_demo import report, run
from train_demo.flags import NOTHING_SAVED

# Off a terminal, training prints a progress line about this many times per
# encoding (and always at its last step).
PROGRESS_LINES = 10


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


def main(
    args: argparse.Namespace,
    config_from_args: Callable[[argparse.Namespace], run.RunConfig],
) -> int:
    """Runs parsed arguments, made a run.RunConfig by ``config_from_args``
    (`train_demo.cli`'s); returns the exit code (130 after Ctrl-C)."""
    seen = {}  # what _main got to before an interrupt
    try:
        return _main(args, config_from_args, seen)
    except KeyboardInterrupt:
        if "out" not in seen:
            _say(console_for_stdout(), "\n" + NOTHING_SAVED)
            return 130
        config = seen.get("config")
        message = _interrupted(
            seen["out"],
            config.encodings if config else None,
            config.base.steps if config else args.steps,
        )
        _say(seen["console"], "\n" + message)
        return 130


def _main(
    args: argparse.Namespace,
    config_from_args: Callable[[argparse.Namespace], run.RunConfig],
    seen: dict,
) -> int:
    console = console_for_stdout()
    out = pathlib.Path(args.out)
    seen.update(console=console, out=out)
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


def progress_due(step: int, last: int, steps: int) -> bool:
    """Whether a progress line is due at ``step``, the last one having been
    printed at (or training having started from) step ``last``.

    One is due each time training passes a multiple of a tenth of the run
    (``ceil(steps / PROGRESS_LINES)`` steps), and at the last step: lines
    come about ``PROGRESS_LINES`` times per run, however long (fewer when a
    chunk of steps spans several tenths).
    """
    every = max(1, math.ceil(steps / PROGRESS_LINES))
    return step >= steps or step // every > last // every


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
            current["printed"] = step
            if not console.is_terminal:
                since = f" from the checkpoint at step {step}" if step else ""
                _say(console, f"training {encoding}{since} ...")

        def on_progress(step, loss, acc, rate):
            bar.update(current["id"], completed=step, loss=loss, acc=acc, rate=rate)
            if console.is_terminal:
                return
            if progress_due(step, current["printed"], config.base.steps):
                current["printed"] = step
                _say(
                    console,
                    f"  step {step}/{config.base.steps}: loss {loss:.3f} "
                    f"train-batch acc {acc:.3f} ({rate:.1f} steps/s)",
                )

        return run.run(config, out, on_start=on_start, on_progress=on_progress)
