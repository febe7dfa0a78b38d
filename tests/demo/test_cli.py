"""The command line: a tiny full run, --resume, every bad-input path, --help
and the progress lines."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys

import pytest

from tests.demo.helpers import DOCUMENTED_ENCODINGS, RESULT_ROW_KEYS, sha256sum_lines
from train_demo import cli, command, train
from train_demo.cli import main

REPO = pathlib.Path(__file__).resolve().parents[2]

# The sizes and schedule of tests/demo/helpers.tiny: the run's programs (one
# 4-step chunk of 2 seeds) are those of test_sharding's one-device run, and
# JAX's persistent cache shares them.
TINY = {
    "--task": "bucket_sort",
    "--encodings": "rope",
    "--steps": "4",
    "--seeds": "2",
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
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def argv(out, **changes):
    args = {**TINY, **{f"--{k.replace('_', '-')}": v for k, v in changes.items()}}
    return [x for kv in args.items() for x in kv] + ["--out", str(out)]


def snapshot(root):
    """Every path under ``root`` with its bytes and modification time."""
    if not root.exists():
        return None
    if root.is_file():
        return {".": (root.read_bytes(), root.stat().st_mtime_ns)}
    return {
        str(p.relative_to(root)): (
            (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else "dir"
        )
        for p in sorted(root.rglob("*"))
    }


def strict_json(text):
    def no_constants(name):
        raise ValueError(f"not standard JSON: {name}")

    return json.loads(text, parse_constant=no_constants)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny full run: its folder, exit code and output."""
    out = tmp_path_factory.mktemp("cli") / "run"
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "200")
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            code = main(argv(out))
    return out, code, buffer.getvalue()


def test_full_run_writes_results_and_plots(finished):
    out, code, output = finished
    assert code == 0, output
    report = strict_json((out / "results.json").read_text())
    assert {"task", "config", "results"} <= set(report)
    assert report["task"] == "bucket_sort"
    config = report["config"]
    assert config["train_length"] == 4 and config["test_length"] == 6
    assert config["steps"] == 4 and config["seeds"] == 2
    assert config["encodings"] == ["rope"]
    assert config["schedule"] == "constant" and config["warmup_steps"] == 0
    rows = report["results"]
    assert [(r["encoding"], r["seed"]) for r in rows] == [("rope", 0), ("rope", 1)]
    for row in rows:
        assert set(row) == RESULT_ROW_KEYS
        by_length = row["accuracy_by_length"]
        assert list(by_length) == ["1", "2", "3", "4", "5", "6"]
        values = list(by_length.values())
        assert all(0 <= a <= 1 for a in values)
        assert row["iid_accuracy"] == pytest.approx(sum(values[:4]) / 4)
        assert row["ood_accuracy"] == pytest.approx(sum(values[4:]) / 2)
        assert row["train_seconds"] > 0
    for name in ("accuracy_vs_length.png", "learning_curves.png"):
        width, height = png_size(out / name)
        assert width > 200 and height > 200
    assert "rope" in output and "results.json" in output


def test_resume_of_a_finished_run_reproduces_results(finished, tmp_path, capsys):
    out, code, _ = finished
    assert code == 0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert main([*argv(copy), "--resume"]) == 0, capsys.readouterr().out
    before = strict_json((out / "results.json").read_text())
    after = strict_json((copy / "results.json").read_text())
    for key in ("encoding", "seed", "iid_accuracy", "ood_accuracy"):
        assert [r[key] for r in after["results"]] == [r[key] for r in before["results"]]
    assert [r["accuracy_by_length"] for r in after["results"]] == [
        r["accuracy_by_length"] for r in before["results"]
    ]
    assert after["config"] == before["config"]


def _demo_process(*args):
    """``python -m train_demo *args`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "train_demo", *args],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "400", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_resume_of_a_checkpoint_saved_damaged_is_one_line(finished, tmp_path):
    """``python -m train_demo --resume`` with the manifest of orbax's database
    (which every read of the state goes through) truncated before its checksum
    was taken, so that orbax, not the checksums, finds it: orbax's reads fail,
    and what they leave running prints nothing, up to the process's exit.
    (Every file, and the checksums' check, are tested in test_interrupts.py.)"""
    out, code, _ = finished
    assert code == 0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    folder = copy / "checkpoints" / "rope" / "4"
    manifest = folder / "state" / "manifest.ocdbt"
    manifest.write_bytes(manifest.read_bytes()[: manifest.stat().st_size // 2])
    (folder / "state.sha256").write_text(sha256sum_lines(folder))
    before = snapshot(copy)
    result = _demo_process(*argv(copy), "--resume")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert result.stderr == "", output
    assert len(output.splitlines()) == 1, output
    assert output.startswith(f"error: the checkpoint {folder / 'state'} is damaged"), (
        output
    )
    assert f"Move {folder} away" in output and "new --out" in output, output
    assert snapshot(copy) == before


# -- bad input -----------------------------------------------------------------


def _fails(args, capsys, monkeypatch):
    """Runs the CLI; expects exit code 2; returns its output on one line."""
    monkeypatch.setenv("COLUMNS", "400")
    code = main(args)
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert code == 2, text
    assert "error" in text.lower(), text
    return text


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"encodings": "none,fourier"}, ["'fourier'", *DOCUMENTED_ENCODINGS]),
        ({"encodings": ","}, list(DOCUMENTED_ENCODINGS)),
        ({"encodings": "rope,rope"}, ["rope,rope"]),
        ({"train_length": "6", "test_length": "5"}, ["train-length 6", "5"]),
        ({"features": "16", "heads": "3"}, ["features 16", "heads 3"]),
        ({"features": "6", "heads": "2"}, ["features 6", "heads 2", "even"]),
        ({"steps": "0"}, ["--steps"]),
        ({"seeds": "0"}, ["--seeds"]),
        ({"train_length": "0"}, ["--train-length"]),
        ({"checkpoint_every": "0"}, ["--checkpoint-every"]),
        ({"learning_rate": "nan"}, ["--learning-rate", "nan"]),
        ({"learning_rate": "inf"}, ["--learning-rate", "inf"]),
        ({"learning_rate": "0"}, ["--learning-rate", "0"]),
        ({"learning_rate": "-0.001"}, ["--learning-rate", "-0.001"]),
    ],
    ids=lambda v: (
        ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None
    ),
)
def test_bad_arguments(changes, expected, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    text = _fails(argv(out, **changes), capsys, monkeypatch)
    for fragment in expected:
        assert fragment in text, (fragment, text)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_task_is_refused_by_the_parser(tmp_path, capsys):
    # --task is a list of choices: argparse refuses another name, with the
    # usage line, exit code 2, before anything is imported or created.
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(argv(out, task="sorting"))
    assert exit_.value.code == 2
    text = " ".join(capsys.readouterr().err.split())
    assert "--task: invalid choice: 'sorting'" in text, text
    assert "bucket_sort" in text and "reverse_string" in text, text
    assert not out.exists()


def test_out_under_a_regular_file(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("keep me\n")
    before = snapshot(tmp_path)
    text = _fails(argv(blocker / "run"), capsys, monkeypatch)
    assert "cannot write" in text and "file" in text
    assert snapshot(tmp_path) == before


def test_out_is_a_regular_file(tmp_path, capsys, monkeypatch):
    target = tmp_path / "results"
    target.write_text("keep me\n")
    before = snapshot(tmp_path)
    text = _fails(argv(target), capsys, monkeypatch)
    assert "results" in text
    assert snapshot(tmp_path) == before


def test_out_not_empty_without_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    (out / "results.json").write_text("{}\n")
    before = snapshot(out)
    text = _fails(argv(out), capsys, monkeypatch)
    assert "not empty" in text and "--resume" in text
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("changes", "differs"),
    [
        ({"steps": "5"}, "steps"),
        ({"encodings": "rope,alibi"}, "encodings"),
        ({"task": "reverse_string"}, "task"),
        ({"learning_rate": "0.01"}, "learning_rate"),
    ],
)
def test_resume_on_a_run_of_another_config(
    finished, changes, differs, capsys, monkeypatch
):
    out, code, _ = finished
    assert code == 0
    before = snapshot(out)
    text = _fails([*argv(out, **changes), "--resume"], capsys, monkeypatch)
    assert "another configuration" in text and differs in text
    assert snapshot(out) == before


def test_resume_on_an_empty_dir(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    text = _fails([*argv(out), "--resume"], capsys, monkeypatch)
    assert "--resume" in text and "config.json" in text
    assert list(out.iterdir()) == []


def test_resume_on_a_missing_dir(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    text = _fails([*argv(out), "--resume"], capsys, monkeypatch)
    assert "--resume" in text
    assert not out.exists()


def test_nnx_api_runs_end_to_end(tmp_path, monkeypatch):
    """--api nnx: the encoder of NNX twins trains, evaluates and says so (with
    a one-step warm-up, then the default cosine decay)."""
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "nnx"
    buffer = io.StringIO()
    # Two seeds, like the full run: the batches are drawn by its programs.
    changes = {"api": "nnx", "checkpoint_every": "4"}
    changes |= {"schedule": "cosine", "warmup_steps": "1"}
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(argv(out, **changes))
    assert code == 0, buffer.getvalue()
    config = strict_json((out / "results.json").read_text())["config"]
    assert config["api"] == "nnx"
    assert config["schedule"] == "cosine" and config["warmup_steps"] == 1


def test_command_line_defaults_are_the_train_config_defaults():
    # One set of defaults: `python -m train_demo` with no flags trains what
    # TrainConfig() describes (the plots' titles list flags against both).
    args = cli.parser().parse_args([])
    assert cli.config_from_args(args).base == train.TrainConfig()


# -- --help --------------------------------------------------------------------

HEAVY_MODULES = ("jax", "jaxlib", "flax", "optax", "orbax", "matplotlib", "numpy")


def test_help_answers_before_jax_loads_and_shows_the_defaults():
    # A fresh interpreter, as a user runs it; -X importtime lists every module
    # it imports (on stderr).
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "train_demo", "--help"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "argparse" in imported and "train_demo" in imported  # it did list them
    assert not imported & set(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))
    text = " ".join(result.stdout.split())
    assert "--task {bucket_sort,reverse_string}" in text, text
    expected = {
        "--steps STEPS": "(default: 500)",
        "--seeds SEEDS": "(default: 1)",
        "--batch-size BATCH_SIZE": "(default: 64)",
        "--learning-rate LEARNING_RATE": "(default: 0.003)",
        "--schedule {constant,cosine}": "(default: cosine)",
        "--warmup-steps WARMUP_STEPS": "(default: a tenth of --steps)",
        "--encodings ENCODINGS": "(default: none,sinusoidal,alibi,randomized_rope)",
        "--out OUT": "(default: runs/demo)",
    }
    for flag, default in expected.items():
        after = text.split(flag, 2)[2]  # past the usage line: the flag's help
        help_ = re.split(r" --[a-z-]+ (?=[A-Z{])| --resume ", after)[0]
        assert help_.endswith(default), (flag, help_)
    assert "(default: None)" not in text and "(default: False)" not in text


# -- progress off a terminal ---------------------------------------------------


def _progress_steps(steps, chunk, start=0):
    """The steps a run prints a progress line at, chunk by chunk."""
    printed, last = [], start
    for step in range(start + chunk, steps + chunk, chunk):
        step = min(step, steps)
        if command.progress_due(step, last, steps):
            printed.append(step)
            last = step
    return printed


@pytest.mark.parametrize(
    ("steps", "chunk", "start", "expected"),
    [
        (150, 50, 0, [50, 100, 150]),  # every chunk spans a tenth (15 steps)
        (500, 50, 0, list(range(50, 501, 50))),
        (3000, 50, 0, list(range(300, 3001, 300))),
        (3000, 50, 1500, list(range(1800, 3001, 300))),  # resumed half-way
        (4, 2, 0, [2, 4]),
        (1, 50, 0, [1]),
        (1005, 50, 0, [*range(150, 951, 100), 1005]),  # a tenth: 101 steps
    ],
)
def test_progress_lines_come_about_every_tenth_of_the_run(
    steps, chunk, start, expected
):
    assert _progress_steps(steps, chunk, start) == expected
