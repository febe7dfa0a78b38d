"""One comparison run: train every encoding, checkpoint, evaluate, report.

Output folder layout::

    config.json                       the run's configuration (resume checks it)
    checkpoints/<encoding>/<step>/    one committed checkpoint:
        state/                        the training state (orbax)
        state.sha256                  the SHA-256 of every file in state/
        history.json                  the learning curve up to <step>
    results.json                      written once every encoding is evaluated

A checkpoint is written into ``<step>.saving`` and committed by renaming that
folder to ``<step>``, so a checkpoint and its history appear together or not
at all. Leftovers of an interrupted save or deletion (``*.saving``,
``*.deleting``) are removed on the next start. Before a checkpoint is
restored, its files are checked against ``state.sha256`` (the format of
``sha256sum``; ``sha256sum -c state.sha256`` in the step's folder checks it
too): a file damaged, emptied or deleted since the save is one clear error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from train_demo import checksums, orbax_leftovers, train

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
STATE_DIR = "state"
CHECKSUMS_FILE = "state.sha256"
_SAVING, _DELETING = ".saving", ".deleting"


class UsageError(Exception):
    """Bad input from the command line: reported with exit code 2."""


class OutputError(UsageError):
    """A damaged or unusable output folder: reported with exit code 2.

    The message names the file or folder at fault.
    """


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
        advice = "It cannot be resumed; train again into a new --out."
        previous = _read_json(saved, "run configuration", advice)
        if not isinstance(previous, dict):
            raise OutputError(
                f"{saved} (the run configuration) is damaged: not a JSON object. "
                + advice
            )
        current = config.to_json()
        differing = sorted(
            k for k in set(previous) | set(current) if previous.get(k) != current.get(k)
        )
        if differing:
            raise UsageError(
                f"--resume: {out} was made with another configuration "
                f"(differs in {', '.join(differing)}); use a new --out."
            )
        for encoding in config.encodings:
            _check_checkpoints(checkpoint_dir(out, encoding), config.base.seeds)
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
        # Written whole or not at all: an interrupt leaves no half config.json.
        _write_atomically(saved, json.dumps(config.to_json(), indent=2) + "\n")
    except OSError as error:
        raise UsageError(f"cannot write to {out}: {error.strerror}.") from None


def _write_atomically(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_json(path: pathlib.Path, what: str, advice: str):
    """Reads a JSON file; raises OutputError naming it if it cannot."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise OutputError(
            f"{path} (the {what}) is damaged or unreadable: {reason}. {advice}"
        ) from None


# -- checkpoints ---------------------------------------------------------------


def checkpoint_dir(out: pathlib.Path, encoding: str) -> pathlib.Path:
    return out / "checkpoints" / encoding


def saved_steps(directory: pathlib.Path) -> list[int]:
    """The committed checkpoint steps in ``directory``, ascending."""
    if not directory.is_dir():
        return []
    return sorted(
        int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()
    )


def saved_progress(
    out: pathlib.Path, encodings: tuple[str, ...] | None = None
) -> dict[str, int]:
    """The step of each encoding's latest committed checkpoint (0: none).

    ``encodings`` defaults to every encoding with a checkpoint folder.
    """
    if encodings is None:
        root = out / "checkpoints"
        encodings = sorted(p.name for p in root.iterdir()) if root.is_dir() else ()
    return {
        encoding: max(saved_steps(checkpoint_dir(out, encoding)), default=0)
        for encoding in encodings
    }


def _check_checkpoints(directory: pathlib.Path, seeds: int) -> None:
    """Raises OutputError if ``directory`` or its latest checkpoint is damaged,
    as far as can be told without restoring the state."""
    if directory.exists() and not directory.is_dir():
        raise OutputError(
            f"{directory} should be the checkpoint folder of {directory.name} but "
            "is a file; move it away or train again into a new --out."
        )
    step = max(saved_steps(directory), default=0)
    if step:
        _read_history(directory, step, seeds)
        state = directory / str(step) / STATE_DIR
        if not state.is_dir():
            raise OutputError(
                f"the checkpoint {state} is missing. "
                + _checkpoint_advice(directory, step)
            )
        _check_state_files(directory, step)


def _check_state_files(directory: pathlib.Path, step: int) -> None:
    """Raises OutputError unless the files of checkpoint ``step``'s state are
    exactly those its ``state.sha256`` lists, with the same SHA-256."""
    folder = directory / str(step)
    advice = _checkpoint_advice(directory, step)
    what = f"{folder / CHECKSUMS_FILE} (the checksums of the checkpoint's files)"
    try:
        listed = checksums.parse((folder / CHECKSUMS_FILE).read_text("utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{what} is missing. {advice}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise OutputError(
            f"{what} is damaged or unreadable: {reason}. {advice}"
        ) from None
    try:
        found = checksums.of_files(folder, STATE_DIR)
    except OSError as error:
        raise OutputError(
            f"the checkpoint {folder} is damaged: {error.filename} is unreadable "
            f"({error.strerror}). {advice}"
        ) from None
    differences = checksums.compare(listed, found)
    if any(differences):
        problems = [
            *(f"{folder / p} is missing" for p in differences.missing),
            *(
                f"{folder / p} has changed since it was saved"
                for p in differences.changed
            ),
            *(
                f"{folder / p} is not listed in {CHECKSUMS_FILE}"
                for p in differences.unlisted
            ),
        ]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise OutputError(
            f"the checkpoint {folder} is damaged: {problems[0]}{more}. {advice}"
        )


def _checkpoint_advice(directory: pathlib.Path, step: int) -> str:
    return (
        f"Move {directory / str(step)} away to train {directory.name} again from "
        "step 0, or train again into a new --out."
    )


def _read_history(directory: pathlib.Path, step: int, seeds: int) -> dict:
    path = directory / str(step) / HISTORY_FILE
    advice = _checkpoint_advice(directory, step)
    history = _read_json(path, "learning curve of the checkpoint", advice)
    if not _history_is_valid(history, step, seeds):
        raise OutputError(
            f"{path} (the learning curve of the checkpoint) is damaged: it does "
            f"not run up to step {step}. {advice}"
        )
    return history


def _remove_leftovers(directory: pathlib.Path) -> None:
    """Removes what an interrupted save or deletion left behind, nothing else."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.name.endswith((_SAVING, _DELETING)):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Holds a first Ctrl-C (SIGINT) back until the block is done, then raises
    KeyboardInterrupt; a second Ctrl-C stops the block at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []

    def hold(signum, frame):
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(
            signal.SIGINT,
            signal.default_int_handler if previous is None else previous,
        )
    if pending:
        raise KeyboardInterrupt


def _save(directory: pathlib.Path, state: train.State, history: dict) -> None:
    """Commits ``state`` and ``history`` as one checkpoint; then drops older ones.

    Synchronous: when it returns the checkpoint is on disk, and no thread is
    left writing. Interrupted, it leaves the earlier checkpoints as they were.
    """
    step = int(state.step[0])
    final = directory / str(step)
    tmp = directory / f"{step}{_SAVING}"
    if not final.is_dir():  # else committed already, before an interrupt
        threads = set(threading.enumerate())
        try:
            with _interrupts_held():
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir(parents=True)
                checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
                checkpointer.save(
                    (tmp / STATE_DIR).absolute(), ocp.args.StandardSave(state)
                )
                checkpointer.close()
                sums = checksums.of_files(tmp, STATE_DIR)
                (tmp / CHECKSUMS_FILE).write_text(checksums.listing(sums), "utf-8")
                (tmp / HISTORY_FILE).write_text(json.dumps(history) + "\n")
                os.rename(tmp, final)  # the commit
        except BaseException:
            # Stopped inside orbax, the save may have worker threads still
            # creating its folders (its event loop shuts them down without
            # waiting): let them finish before the folder goes, or they
            # recreate it under a later save.
            deadline = time.monotonic() + 10.0
            for thread in set(threading.enumerate()) - threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    for older in saved_steps(directory):
        if older < step:
            doomed = directory / f"{older}{_DELETING}"
            os.rename(directory / str(older), doomed)
            shutil.rmtree(doomed, ignore_errors=True)


def _restore(
    directory: pathlib.Path, step: int, template: train.State
) -> tuple[train.State, dict]:
    """Reads checkpoint ``step``; raises OutputError naming what is damaged."""
    history = _read_history(directory, step, template.step.shape[0])
    folder = directory / str(step)
    advice = _checkpoint_advice(directory, step)
    orbax_leftovers.silence()
    try:
        checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
        state = checkpointer.restore(
            (folder / STATE_DIR).absolute(), ocp.args.StandardRestore(template)
        )
        checkpointer.close()
    except Exception as error:  # whatever orbax or tensorstore raise
        while error.__cause__ is not None:  # the root cause says most
            error = error.__cause__
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if len(reason) > 200:
            reason = reason[:197] + "..."
        raise OutputError(
            f"the checkpoint {folder / STATE_DIR} is damaged or unreadable "
            f"({type(error).__name__}: {reason}). {advice}"
        ) from None
    if np.asarray(state.step).tolist() != [step] * template.step.shape[0]:
        raise OutputError(
            f"the checkpoint {folder / STATE_DIR} holds step "
            f"{np.asarray(state.step).tolist()}, not {step}. {advice}"
        )
    return state, history


def _history_is_valid(history, step: int, seeds: int) -> bool:
    if not isinstance(history, dict):
        return False
    try:
        steps, loss, accuracy = (history[k] for k in ("step", "loss", "accuracy"))
        return (
            len(steps) == len(loss) == len(accuracy) > 0
            and steps[-1] == step
            and all(len(row) == seeds for row in (*loss, *accuracy))
        )
    except (KeyError, TypeError):
        return False


def _extended(history: dict, step: int, loss: np.ndarray, accuracy: np.ndarray):
    """A new history with one more point (the old one is left as it was): the
    chunk's loss and training-batch accuracy per seed, averaged over its steps."""
    return {
        "step": [*history["step"], step],
        "loss": [*history["loss"], loss.mean(axis=1).tolist()],
        "accuracy": [*history["accuracy"], accuracy.mean(axis=1).tolist()],
    }


def train_encoding(
    config: train.TrainConfig,
    out: pathlib.Path,
    checkpoint_every: int,
    on_progress: Callable[[int, float, float, float], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> tuple[train.Trainer, train.State, dict, float]:
    """Trains one encoding over its seeds, resuming from ``out`` if it can.

    ``on_resume(step)`` is told the step training starts from (0: no
    checkpoint). On KeyboardInterrupt the last completed chunk is checkpointed
    (unless it already is) before the interrupt goes on.

    Returns the trainer, the final state, the learning-curve history and the
    training seconds (of this process, compilation included).

    Raises:
        OutputError: the checkpoint folder is damaged.
    """
    directory = checkpoint_dir(out, config.encoding)
    _check_checkpoints(directory, config.seeds)
    _remove_leftovers(directory)
    trainer = train.trainer(config)
    state = trainer.init_seeds(list(range(config.seeds)))
    history = {"step": [], "loss": [], "accuracy": []}
    saved = max(saved_steps(directory), default=0)
    if saved:
        state, history = _restore(directory, saved, state)
    if on_resume:
        on_resume(saved)
    # One name for the last completed (state, history) pair: rebinding it is
    # a single store, so an interrupt never sees a state with the history of
    # another step.
    current = (state, history)

    start = time.perf_counter()
    step = saved
    try:
        while step < config.steps:
            # Chunks end on multiples of steps_per_call, so a resumed run
            # replays exactly the same compiled programs as an uninterrupted one.
            chunk = min(
                config.steps_per_call - step % config.steps_per_call,
                config.steps - step,
            )
            tick = time.perf_counter()
            new_state, (loss, accuracy) = trainer.train(current[0], chunk)
            loss, accuracy = np.asarray(loss), np.asarray(accuracy)  # waits
            current = (new_state, _extended(current[1], step + chunk, loss, accuracy))
            step += chunk
            if on_progress:
                rate = chunk / (time.perf_counter() - tick)
                on_progress(
                    step, float(loss[:, -1].mean()), float(accuracy[:, -1].mean()), rate
                )
            if step % checkpoint_every == 0 or step == config.steps:
                _save(directory, *current)
                saved = step
    except KeyboardInterrupt:
        # Keep the last completed chunk: a usable checkpoint.
        if int(current[0].step[0]) > saved:
            _save(directory, *current)
        raise
    state, history = current
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
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float, float, float], None] | None = None,
) -> dict:
    """Trains and evaluates every encoding; writes results.json; returns it.

    ``on_start(encoding, step)`` is called as each encoding starts training
    from ``step`` (0, or the step of its checkpoint in ``out``).
    """
    results, histories = [], {}
    for encoding in config.encodings:
        train_config = config.for_encoding(encoding)
        trainer, state, history, seconds = train_encoding(
            train_config,
            out,
            config.checkpoint_every,
            on_progress,
            on_resume=functools.partial(on_start, encoding) if on_start else None,
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
    _write_atomically(out / "results.json", json.dumps(report, indent=2) + "\n")
    return {"report": report, "histories": histories}
