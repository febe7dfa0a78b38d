"""The command line: a tiny full run, --resume, and every bad-input path."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct

import pytest

from tests.demo.helpers import DOCUMENTED_ENCODINGS, RESULT_ROW_KEYS
from train_demo import __main__ as demo_main
from train_demo import train
from train_demo.__main__ import main

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
        ({"task": "sorting"}, ["'sorting'", "bucket_sort", "reverse_string"]),
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
    args = demo_main.parser().parse_args([])
    assert demo_main.config_from_args(args).base == train.TrainConfig()
