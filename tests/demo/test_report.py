"""The results table and the two plots, on a small synthetic report."""

from __future__ import annotations

import io
import struct

import pytest
from rich.console import Console

from train_demo import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(encoding, seed, by_length, seconds):
    return {
        "encoding": encoding,
        "seed": seed,
        "iid_accuracy": sum(by_length[:2]) / 2,
        "ood_accuracy": sum(by_length[2:]) / 2,
        "accuracy_by_length": {str(n): a for n, a in enumerate(by_length, 1)},
        "train_seconds": seconds,
    }


@pytest.fixture
def synthetic():
    results = [
        _row("none", 0, [1.0, 0.6, 0.4, 0.2], 10.0),
        _row("none", 1, [1.0, 0.4, 0.2, 0.2], 20.0),
        _row("randomized_rope", 0, [1.0, 1.0, 0.9, 0.7], 31.0),
    ]
    config = {
        "task": "bucket_sort",
        "steps": 100,
        "seeds": 2,
        "train_length": 2,
        "test_length": 4,
        "encodings": ["none", "randomized_rope"],
    }
    report_ = {"task": "bucket_sort", "chance": 0.2, "config": config}
    report_["results"] = results
    histories = {
        "none": {"step": [50, 100], "loss": [[1.5, 1.3], [1.0, 0.9]]},
        "randomized_rope": {"step": [50, 100], "loss": [[1.2], [0.2]]},
    }
    histories["none"]["accuracy"] = [[0.3, 0.4], [0.5, 0.6]]
    histories["randomized_rope"]["accuracy"] = [[0.5], [0.9]]
    return report_, histories


def _render(table):
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_table(synthetic):
    text = _render(report.table(synthetic[0]))
    lines = text.splitlines()
    assert "bucket_sort" in text and "chance 0.20" in text
    assert "1..2" in text and "3..4" in text
    none = next(line for line in lines if line.strip().startswith("│ none"))
    rope = next(line for line in lines if "randomized_rope" in line)
    # none: iid per seed 0.8 and 0.7, ood 0.3 and 0.2; mean ± population std.
    assert "0.750 ± 0.050" in none and "0.250 ± 0.050" in none
    assert " 15 " in none  # mean train seconds
    # One seed: the value alone, no spread.
    assert "1.000" in rope and "0.800" in rope and "±" not in rope
    assert " 31 " in rope


def test_plots(synthetic, tmp_path):
    report_, histories = synthetic
    paths = report.plots(report_, histories, tmp_path)
    assert [p.name for p in paths] == ["accuracy_vs_length.png", "learning_curves.png"]
    for path in paths:
        assert path.parent == tmp_path
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC
        width, height = struct.unpack(">II", data[16:24])
        assert width > 200 and height > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_table_with_nothing_beyond_the_training_lengths(synthetic):
    report_ = synthetic[0]
    report_["config"]["test_length"] = 2
    for row in report_["results"]:
        row["ood_accuracy"] = None  # as run.summarize writes it then
    lines = _render(report.table(report_)).splitlines()
    none = next(line for line in lines if line.strip().startswith("│ none"))
    assert "0.750 ± 0.050" in none and " - " in none
