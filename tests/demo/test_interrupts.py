"""The command line under Ctrl-C and on damaged output folders.

A Ctrl-C is simulated at many instants of a tiny two-encoding run: at lines
of run.py, cli.py and command.py, and at calls into orbax (inside a checkpoint
save or restore). After each, the folder must hold no half-written files, keep every
checkpoint committed before the interrupt, and ``--resume`` must finish with
exactly the results of an uninterrupted run. Damaged files must give one clear
error naming the file (exit code 2, no traceback) and change nothing: every
file of a checkpoint, truncated, emptied, deleted or overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import sys

import orbax.checkpoint as ocp
import pytest

from tests.demo.helpers import sha256sum_lines
from train_demo import cli, command, report, run

ENCODINGS = ("none", "alibi")
STEPS = 4
ARGS = {
    "--task": "bucket_sort",
    "--encodings": ",".join(ENCODINGS),
    "--steps": str(STEPS),
    "--seeds": "1",
    "--train-length": "4",
    "--test-length": "6",
    "--batch-size": "8",
    "--layers": "1",
    "--features": "16",
    "--heads": "2",
    "--schedule": "constant",
    "--warmup-steps": "0",
    "--checkpoint-every": "2",
}
RUN_FILES = {run.__file__, cli.__file__, command.__file__}
# The handler of an interrupt, and the call that leads to it.
HANDLERS = {cli.main.__code__, command.main.__code__}
LEFTOVER_MARKS = (".saving", ".deleting", "orbax-checkpoint-tmp", ".tmp")


def argv(out, *extra):
    return [x for kv in ARGS.items() for x in kv] + ["--out", str(out), *extra]


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    """Two chunks of two steps per encoding; the plots are skipped: what is
    tested is the run's bookkeeping. (Runs of one configuration share their
    compiled programs: `train.trainer` builds one Trainer per configuration.
    The sizes, schedule and chunks are those of tests/demo/helpers.tiny, whose
    programs test_train compiles too: JAX's persistent cache shares them.)
    """
    real_config_from_args = cli.config_from_args

    def config_from_args(args):
        config = real_config_from_args(args)
        base = dataclasses.replace(config.base, steps_per_call=2, eval_batch=4)
        return dataclasses.replace(config, base=base)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "config_from_args", config_from_args)
        mp.setattr(report, "plots", lambda report, histories, out: [])
        mp.delenv("COLUMNS", raising=False)
        yield tmp_path_factory


def cli_run(*args):
    """Runs the CLI with its output captured; returns (exit code, output)."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            code = cli.main(list(args))
    except KeyboardInterrupt:  # would stop the test session, not fail a test
        pytest.fail(f"KeyboardInterrupt escaped main:\n{buffer.getvalue()}")
    return code, buffer.getvalue()


def results_of(out):
    """What a run computed, timings left out."""
    rows = json.loads((out / "results.json").read_text())["results"]
    for row in rows:
        del row["train_seconds"]
    return rows


def histories_of(out):
    """Each encoding's learning curve, as its final checkpoint holds it."""
    return {
        encoding: json.loads(
            (out / "checkpoints" / encoding / str(STEPS) / "history.json").read_text()
        )
        for encoding in ENCODINGS
    }


def committed(out):
    """The step of each encoding's latest checkpoint folder (0: none)."""
    steps = {}
    for encoding in ENCODINGS:
        folder = out / "checkpoints" / encoding
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        steps[encoding] = max((int(n) for n in names if n.isdigit()), default=0)
    return steps


def leftovers(out):
    return [str(p) for p in out.rglob("*") if any(m in p.name for m in LEFTOVER_MARKS)]


@pytest.fixture(scope="module")
def reference(fast):
    """An uninterrupted run into a long path, output captured (not a terminal)."""
    out = fast.mktemp("reference") / ("a-long-folder-name-" * 5) / "run"
    code, output = cli_run(*argv(out))
    assert code == 0, output
    return out, output


@pytest.fixture(scope="module")
def expected(reference):
    """The results of the uninterrupted run."""
    return results_of(reference[0])


def test_captured_output_keeps_long_paths_on_one_line(reference):
    out, output = reference
    assert len(str(out)) > 100
    lines = output.splitlines()
    assert any(str(out / "results.json") in line for line in lines), output
    # The progress reports training-batch accuracy, the table evaluation
    # accuracy: the output says which is which.
    assert "train-batch" in output


def test_a_run_writes_one_checkpoint_folder_per_encoding(reference):
    out, _ = reference
    histories = histories_of(out)
    for encoding in ENCODINGS:
        assert histories[encoding]["step"] == [2, STEPS]
        folder = out / "checkpoints" / encoding
        assert sorted(p.name for p in folder.iterdir()) == [str(STEPS)]
        assert {p.name for p in (folder / str(STEPS)).iterdir()} == {
            "state",
            "state.sha256",
            "history.json",
        }
        # sha256sum's format: every file of the state, with its SHA-256.
        listing = (folder / str(STEPS) / "state.sha256").read_text()
        assert listing == sha256sum_lines(folder / str(STEPS))
    assert leftovers(out) == []


def test_progress_lines_off_a_terminal(reference):
    # Captured output is no terminal: each encoding prints a progress line
    # about every tenth of its 4 steps, here at each chunk of 2 (and so at the
    # end), with the step, the loss and the training-batch accuracy.
    _, output = reference
    lines = [line for line in output.splitlines() if line.startswith(("training", " "))]
    expected = []
    for encoding in ENCODINGS:
        expected += [f"training {encoding} ...", "step 2/4", "step 4/4"]
    shown = [
        re.sub(r"^  (step \d+/\d+): loss [\d.]+ train-batch acc [\d.]+ .*", r"\1", line)
        for line in lines
    ]
    assert shown == expected, output


# -- Ctrl-C at many instants ---------------------------------------------------


class Interrupt:
    """Counts the instants of a run; raises KeyboardInterrupt at one of them.

    Instants: each line run in run.py, cli.py or command.py, and each call
    into orbax (in the main thread, where Python delivers Ctrl-C). The lines
    of ``main`` itself are not counted: they are the handler of the interrupt.
    """

    def __init__(self, out, at=None):
        self.out, self.at = out, at
        self.counts = {"line": 0, "orbax": 0}
        self.where = self.saved_then = None

    def __enter__(self):
        sys.settrace(self._call)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)

    def _call(self, frame, event, arg):
        filename = frame.f_code.co_filename
        if filename in RUN_FILES and frame.f_code not in HANDLERS:
            return self._line
        # (An exception raised in __del__ is dropped, so a Ctrl-C lands after it.)
        if f"{os.sep}orbax{os.sep}" in filename and frame.f_code.co_name != "__del__":
            self._tick("orbax", frame)
        return None

    def _line(self, frame, event, arg):
        if event == "line":
            self._tick("line", frame)
        return self._line

    def _tick(self, kind, frame):
        self.counts[kind] += 1
        if self.at == (kind, self.counts[kind]):
            code = frame.f_code
            self.where = f"{code.co_filename}:{frame.f_lineno} ({code.co_name})"
            self.saved_then = committed(self.out)
            raise KeyboardInterrupt  # unsets the trace function: one interrupt


@pytest.fixture(scope="module")
def instants(fast, expected):
    """How many instants of each kind an uninterrupted run has."""
    out = fast.mktemp("counted") / "run"
    with Interrupt(out) as counter:
        code, output = cli_run(*argv(out))
    assert code == 0, output
    assert results_of(out) == expected
    return counter.counts


# Lines run the same way each time; the count of orbax calls may vary a little
# with timing, hence the last orbax point short of the end.
POINTS = [("line", f / 8) for f in range(9)] + [
    ("orbax", f) for f in (0.0, 0.25, 0.5, 0.75, 0.95)
]


@pytest.mark.parametrize(("kind", "fraction"), POINTS, ids=lambda v: str(v)[:5])
def test_interrupt_then_resume_gives_the_uninterrupted_result(
    fast, reference, expected, instants, kind, fraction
):
    n = max(1, round(fraction * instants[kind]))
    out = fast.mktemp("interrupted") / "run"
    with Interrupt(out, at=(kind, n)) as interrupt:
        code, output = cli_run(*argv(out))
    where = f"{kind} instant {n}/{instants[kind]}: {interrupt.where}\n{output}"
    assert interrupt.where is not None, where
    assert code == 130, where
    assert "interrupted" in output and "Traceback" not in output, where
    assert leftovers(out) == [], where
    # Every checkpoint committed before the interrupt is still there, and the
    # message says what there is to resume.
    saved = committed(out)
    for encoding in ENCODINGS:
        assert saved[encoding] >= interrupt.saved_then[encoding], where
        if saved[encoding]:
            assert f"{encoding} at step {saved[encoding]}/{STEPS}" in output, where

    if not (out / run.CONFIG_FILE).exists():
        assert "nothing was saved" in output, where
        code, again = cli_run(*argv(out, "--resume"))
        assert code == 2 and "config.json missing" in again, again
        code, again = cli_run(*argv(out))  # a fresh start is allowed
    else:
        if not any(saved.values()):
            assert "nothing to resume" in output, where
        code, again = cli_run(*argv(out, "--resume"))
    assert code == 0, f"{where}\n{again}"
    assert results_of(out) == expected, where
    assert leftovers(out) == []
    assert histories_of(out) == histories_of(reference[0]), where


def test_ctrl_c_during_a_save_waits_for_the_commit(
    fast, reference, expected, monkeypatch
):
    """A real SIGINT inside orbax's save: the checkpoint is committed whole,
    then the run stops."""
    real_save = ocp.StandardCheckpointHandler.save
    signalled = []

    def save(self, *args, **kwargs):
        if not signalled:
            signalled.append(True)
            signal.raise_signal(signal.SIGINT)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(ocp.StandardCheckpointHandler, "save", save)
    out = fast.mktemp("sigint") / "run"
    code, output = cli_run(*argv(out))
    assert signalled and code == 130, output
    assert "none at step 2/4" in output, output
    assert leftovers(out) == []
    assert committed(out) == {"none": 2, "alibi": 0}
    monkeypatch.undo()
    code, output = cli_run(*argv(out, "--resume"))
    assert code == 0, output
    assert results_of(out) == expected
    assert histories_of(out) == histories_of(reference[0])


# -- damaged output folders ----------------------------------------------------


def snapshot(root):
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def _damage_config_text(out):
    path = out / "config.json"
    path.write_text(path.read_text()[:-20])
    return path


def _damage_config_type(out):
    path = out / "config.json"
    path.write_text("[1, 2]\n")
    return path


def _damage_history_text(out):
    path = out / "checkpoints" / "none" / str(STEPS) / "history.json"
    path.write_bytes(b"\x00\xff garbage")
    return path


def _damage_history_steps(out):
    path = out / "checkpoints" / "none" / str(STEPS) / "history.json"
    history = json.loads(path.read_text())
    path.write_text(json.dumps({k: v[:-1] for k, v in history.items()}))
    return path


def _damage_history_missing(out):
    path = out / "checkpoints" / "none" / str(STEPS) / "history.json"
    path.unlink()
    return path


def _damage_state_files(out):
    folder = out / "checkpoints" / "none" / str(STEPS) / "state"
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "commit_success.txt":
            path.write_bytes(b"garbage")
    return folder


def _damage_state_missing(out):
    folder = out / "checkpoints" / "none" / str(STEPS) / "state"
    shutil.rmtree(folder)
    return folder


def _damage_checkpoint_folder_is_a_file(out):
    path = out / "checkpoints" / "alibi"
    shutil.rmtree(path)
    path.write_text("not a folder\n")
    return path


DAMAGES = [
    _damage_config_text,
    _damage_config_type,
    _damage_history_text,
    _damage_history_steps,
    _damage_history_missing,
    _damage_state_files,
    _damage_state_missing,
    _damage_checkpoint_folder_is_a_file,
]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__[8:])
def test_resume_of_a_damaged_folder_names_the_file(fast, reference, tmp_path, damage):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    culprit = damage(out)
    before = snapshot(out)
    code, output = cli_run(*argv(out, "--resume"))
    assert code == 2, output
    assert output.startswith("error:") and "Traceback" not in output, output
    assert str(culprit) in output, output
    assert len(output.strip().splitlines()) == 1, output
    assert snapshot(out) == before  # nothing written, nothing removed


def test_resume_removes_what_an_interrupted_save_left(
    fast, reference, expected, tmp_path
):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    folder = out / "checkpoints" / "none"
    shutil.copytree(folder / str(STEPS), folder / "6.saving")
    (folder / "6.saving" / "state.orbax-checkpoint-tmp-123").mkdir()
    shutil.copytree(folder / str(STEPS), folder / "2.deleting")
    (out / "notes.txt").write_text("mine\n")
    code, output = cli_run(*argv(out, "--resume"))
    assert code == 0, output
    assert leftovers(out) == []
    assert (out / "notes.txt").read_text() == "mine\n"
    assert results_of(out) == expected


# -- every file of a checkpoint, damaged -----------------------------------------


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path):
    path.write_bytes(b"")


def _delete(path):
    path.unlink()


def _overwrite(path):
    path.write_bytes(b"\x00garbage\xff" * 3)


def checkpoint_files(out):
    """Every file of the checkpoint of ``none`` (relative to its folder)."""
    folder = out / "checkpoints" / "none" / str(STEPS)
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    # orbax's files, among them the data files the earlier error came from
    assert any(f.parts[:2] == ("state", "ocdbt.process_0") for f in files), files
    assert {pathlib.Path("history.json"), pathlib.Path("state.sha256")} <= set(files)
    return files


def _damaged_copy(reference, tmp_path, name, damage):
    out = tmp_path / str(name).replace("/", "_")
    shutil.copytree(reference, out)
    folder = out / "checkpoints" / "none" / str(STEPS)
    damage(folder / name)
    return out, folder


def _is_one_clear_error(code, output, folder):
    """Exit code 2 and one line: the error, naming the checkpoint's folder and
    how to go on."""
    return (
        code == 2
        and output.startswith("error:")
        and len(output.strip().splitlines()) == 1
        and "Traceback" not in output
        and f"Move {folder} away" in output
        and "new --out" in output
    )


@pytest.mark.parametrize("damage", [_truncate, _empty, _delete, _overwrite])
def test_resume_with_any_file_of_a_checkpoint_damaged(
    fast, reference, tmp_path, damage
):
    """Each file in turn, in a copy of the run: one clear error that names the
    file, and nothing written or removed."""
    wrong = []
    for name in checkpoint_files(reference[0]):
        out, folder = _damaged_copy(reference[0], tmp_path, name, damage)
        before = snapshot(out)
        code, output = cli_run(*argv(out, "--resume"))
        if not (
            _is_one_clear_error(code, output, folder)
            and str(folder / name) in output
            and snapshot(out) == before
        ):
            wrong.append(f"{name}: exit code {code}\n{output[:3000]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_resume_of_a_checkpoint_saved_damaged(
    fast, reference, expected, tmp_path, caplog
):
    """Each file of the state damaged before its checksum was taken, so that
    only orbax can tell: one clear error, or, where orbax does not need the
    file, the results of the undamaged run. Never a traceback, an unraisable
    exception (an error here) or a log record of asyncio."""
    failed = []
    for name in checkpoint_files(reference[0]):
        if name.parts[0] != "state":
            continue
        # Truncated, as a crash mid-write leaves a file. (Overwritten too
        # doubled the test's time; the checksum test above overwrites.)
        out, folder = _damaged_copy(reference[0], tmp_path, name, _truncate)
        (folder / "state.sha256").write_text(sha256sum_lines(folder))
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            code, output = cli_run(*argv(out, "--resume"))
            gc.collect()  # collects orbax's abandoned tasks, if it can
        assert [r.getMessage()[:300] for r in caplog.records] == [], name
        if code == 2:
            assert _is_one_clear_error(code, output, folder), f"{name}\n{output}"
            assert str(folder / "state") in output, output
            failed.append(name)
        else:
            assert code == 0, f"{name}\n{output}"
            assert results_of(out) == expected, name
    # The metadata and data files orbax reads, at least.
    assert pathlib.Path("state/_METADATA") in failed, failed
    assert any(f.parts[:2] == ("state", "d") for f in failed), failed
