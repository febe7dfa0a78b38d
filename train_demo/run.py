"""One comparison run: train every encoding, checkpoint, evaluate, report."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from train_demo import train

CONFIG_FILE = "config.json"


class UsageError(Exception):
    """Bad input from the command line: reported with exit code 2."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A comparison: one TrainConfig per encoding, plus run-level settings."""

    base: train.TrainConfig
    encodings: tuple[str, ...]
    checkpoint_every: int = 500

    def for_encoding(self, encoding: str) -> train.TrainConfig:
        return dataclasses.replace(self.base, encoding=encoding)

    def to_json(self) -> dict:
        config = dataclasses.asdict(self.base)
        del config["encoding"]
        config["encodings"] = list(self.encodings)
        config["checkpoint_every"] = self.checkpoint_every
        return config


def prepare_output(out: pathlib.Path, config: RunConfig, resume: bool) -> None:
    """Creates ``out`` or checks that resuming it is safe; never overwrites."""
    saved = out / CONFIG_FILE
    if resume:
        if not saved.exists():
            raise UsageError(f"--resume: {out} holds no run ({CONFIG_FILE} missing).")
        previous = json.loads(saved.read_text())
        current = config.to_json()
        differing = sorted(
            k for k in set(previous) | set(current) if previous.get(k) != current.get(k)
        )
        if differing:
            raise UsageError(
                f"--resume: {out} was made with another configuration "
                f"(differs in {', '.join(differing)}); use a new --out."
            )
        return
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"{out} is a file, not a folder; choose another --out. "
            "Nothing was overwritten."
        )
    if out.exists() and any(out.iterdir()):
        raise UsageError(
            f"{out} is not empty; pass --resume to continue that run or choose "
            "another --out. Nothing was overwritten."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write to {out}: {error.strerror}.") from None
    saved.write_text(json.dumps(config.to_json(), indent=2) + "\n")


def _history_path(out: pathlib.Path, encoding: str) -> pathlib.Path:
    return out / "history" / f"{encoding}.json"


def train_encoding(
    config: train.TrainConfig,
    out: pathlib.Path,
    checkpoint_every: int,
    on_progress: Callable[[int, float, float, float], None] | None = None,
) -> tuple[train.Trainer, train.State, dict, float]:
    """Trains one encoding over its seeds, resuming from ``out`` if it can.

    Returns the trainer, the final state, the learning-curve history and the
    training seconds (of this process, compilation included).
    """
    trainer = train.Trainer(config)
    manager = ocp.CheckpointManager(
        (out / "checkpoints" / config.encoding).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=1),
    )
    state = trainer.init_seeds(list(range(config.seeds)))
    history = {"step": [], "loss": [], "accuracy": []}
    latest = manager.latest_step()
    if latest is not None:
        state = manager.restore(latest, args=ocp.args.StandardRestore(state))
        history = json.loads(_history_path(out, config.encoding).read_text())

    def save(state):
        step = int(state.step[0])
        if manager.latest_step() == step:
            return
        manager.save(step, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
        path = _history_path(out, config.encoding)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(history) + "\n")

    start = time.perf_counter()
    step = int(state.step[0])
    try:
        while step < config.steps:
            # Chunks end on multiples of steps_per_call, so a resumed run
            # replays exactly the same compiled programs as an uninterrupted one.
            chunk = min(
                config.steps_per_call - step % config.steps_per_call,
                config.steps - step,
            )
            tick = time.perf_counter()
            new_state, (loss, accuracy) = trainer.train(state, chunk)
            loss, accuracy = np.asarray(loss), np.asarray(accuracy)  # waits
            state, step = new_state, step + chunk
            history["step"].append(step)
            history["loss"].append(loss[:, -1].tolist())
            history["accuracy"].append(accuracy[:, -1].tolist())
            if on_progress:
                rate = chunk / (time.perf_counter() - tick)
                on_progress(
                    step, float(loss[:, -1].mean()), float(accuracy[:, -1].mean()), rate
                )
            if step % checkpoint_every == 0 or step == config.steps:
                save(state)
    except KeyboardInterrupt:
        save(state)  # the last completed chunk: a usable checkpoint
        manager.close()
        raise
    manager.close()
    return trainer, state, history, time.perf_counter() - start


def summarize(
    config: train.TrainConfig, accuracy: np.ndarray, seconds: float
) -> list[dict]:
    """Result rows, one per seed, from accuracies ``[seeds, test_length]``."""
    rows = []
    for seed, by_length in enumerate(accuracy):
        beyond = by_length[config.train_length :]
        rows.append(
            {
                "encoding": config.encoding,
                "seed": seed,
                "iid_accuracy": float(by_length[: config.train_length].mean()),
                # null when nothing lies beyond (train length == test length)
                "ood_accuracy": float(beyond.mean()) if beyond.size else None,
                "accuracy_by_length": {
                    str(length): float(a) for length, a in enumerate(by_length, 1)
                },
                "train_seconds": seconds,
            }
        )
    return rows


def run(
    config: RunConfig,
    out: pathlib.Path,
    on_start: Callable[[str], None] | None = None,
    on_progress: Callable[[int, float, float, float], None] | None = None,
) -> dict:
    """Trains and evaluates every encoding; writes results.json; returns it."""
    results, histories = [], {}
    for encoding in config.encodings:
        if on_start:
            on_start(encoding)
        train_config = config.for_encoding(encoding)
        trainer, state, history, seconds = train_encoding(
            train_config, out, config.checkpoint_every, on_progress
        )
        accuracy = trainer.evaluate(state)
        results.extend(summarize(train_config, accuracy, seconds))
        histories[encoding] = history
    report = {
        "task": config.base.task,
        "chance": config.base.task_spec.chance,
        "config": config.to_json(),
        "devices": [str(d) for d in jax.devices()],
        "results": results,
    }
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out / "results.json")
    return {"report": report, "histories": histories}
