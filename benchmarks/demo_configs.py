"""The demo's configuration: time and story of the configurations tried.

For each configuration, runs ``python -m train_demo`` (its four default
encodings) twice in a subprocess: once with one seed, timed whole (start-up,
training, evaluation, plots: what ``make demo`` runs after the install), and
once with seeds 0, 1 and 2 trained together, whose per-seed accuracies give
the mean and spread. Prints a Markdown table.

    python -m benchmarks.demo_configs [--only before,default] [--out runs/configs]

A run whose folder under ``--out`` holds its results is not run again, so the
timed runs can be taken later on an idle machine (``--part time``) than the
three-seed runs (``--part seeds``); the table is printed from what is there.

The story every configuration must tell: ``none`` cannot sort (about 0.42 in
the training lengths, the position-blind bound); sinusoidal fits the training
lengths and collapses beyond; alibi holds part of the way; randomized RoPE
generalises.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from benchmarks import _timing
from train_demo import report

# name: (description, flags). "default" is what `make demo` runs.
CONFIGS = {
    "before": (
        "batch 128, 1000 steps, constant 1e-3",
        "--batch-size 128 --steps 1000 --learning-rate 1e-3 --schedule constant "
        "--warmup-steps 0",
    ),
    "batch64": (
        "batch 64, 1000 steps, constant 1e-3",
        "--batch-size 64 --steps 1000 --learning-rate 1e-3 --schedule constant "
        "--warmup-steps 0",
    ),
    "default": ("batch 64, 500 steps, cosine 3e-3, warm-up 50", ""),
    "short": (
        "batch 64, 300 steps, cosine 3e-3, warm-up 30",
        "--steps 300 --warmup-steps 30",
    ),
}


def demo(flags: str, out: pathlib.Path) -> float:
    """Runs the demo CLI unless ``out`` holds its results; its wall seconds."""
    timing = out / "wall_seconds.json"
    if not timing.exists():
        command = [sys.executable, "-m", "train_demo", "--out", str(out)]
        start = time.perf_counter()
        subprocess.run(
            [*command, *flags.split()], check=True, stdout=subprocess.DEVNULL
        )
        seconds = time.perf_counter() - start
        timing.write_text(json.dumps({"seconds": seconds, "load": os.getloadavg()}))
    return json.loads(timing.read_text())["seconds"]


def cells(results: dict) -> dict[str, str]:
    """``encoding -> "iid / beyond"``, each mean ± standard deviation over seeds."""
    return {
        encoding: f"{report.mean_spread([r['iid_accuracy'] for r in rows])} / "
        f"{report.mean_spread([r['ood_accuracy'] for r in rows])}"
        for encoding, rows in report.by_encoding(results).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CONFIGS))
    parser.add_argument("--out", default="runs/demo-configs")
    parser.add_argument("--part", choices=("time", "seeds", "both"), default="both")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    print(f"machine: {_timing.machine()}")
    rows = []
    for name in args.only.split(","):
        description, flags = CONFIGS[name]
        seconds = by_encoding = None
        if args.part != "seeds":
            seconds = demo(flags, out / f"{name}-1seed")
            print(f"{name}: {seconds:.0f} s", flush=True)
        if args.part != "time":
            demo(f"{flags} --seeds 3", out / f"{name}-3seeds")
            results = out / f"{name}-3seeds" / "results.json"
            by_encoding = cells(json.loads(results.read_text()))
        rows.append((name, description, seconds, by_encoding))
    if args.part != "both":
        return
    encodings = list(rows[0][3])
    print()
    print("| configuration | `make demo` run time | " + " | ".join(encodings) + " |")
    print("|---|---:|" + "---|" * len(encodings))
    for name, description, seconds, by_encoding in rows:
        accuracies = " | ".join(by_encoding[e] for e in encodings)
        print(f"| {name}: {description} | {seconds:.0f} s | {accuracies} |")


if __name__ == "__main__":
    main()
