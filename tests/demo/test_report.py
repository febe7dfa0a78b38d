"""The results table and the two plots, on a small synthetic report."""

from __future__ import annotations

import io
import struct

import matplotlib.colors
import numpy as np
import pytest
from rich.console import Console

from tests.demo.helpers import DOCUMENTED_ENCODINGS
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


def _smooth_reference(values, weight):
    """Point t: the average of values[0..t] with weights weight**(t - k)."""
    values = np.asarray(values, np.float64)
    result = []
    for t in range(len(values)):
        weights = weight ** np.arange(t, -1, -1, dtype=np.float64)
        result.append((weights * values[: t + 1]).sum() / weights.sum())
    return np.array(result)


@pytest.mark.parametrize("weight", [0.0, 0.5, report.SMOOTHING, 0.95])
def test_smooth_matches_a_float64_reference(weight):
    values = np.random.default_rng(0).lognormal(size=60).astype(np.float32)
    smoothed = report.smooth(values, weight)
    assert smoothed.dtype == np.float64 and smoothed.shape == values.shape
    np.testing.assert_allclose(
        smoothed, _smooth_reference(values, weight), rtol=1e-12, atol=0
    )


def test_smooth_edge_cases():
    # Debiased: a constant stays that constant from the first point on.
    np.testing.assert_allclose(report.smooth([3.0] * 5), [3.0] * 5, rtol=1e-15)
    assert report.smooth([2.5]).tolist() == [2.5]
    assert report.smooth([]).shape == (0,)
    # Smoothing lags: a step from 0 to 1 is only partly followed at once.
    assert 0 < report.smooth([0.0, 0.0, 1.0])[-1] < 1
    with pytest.raises(ValueError, match="weight"):
        report.smooth([1.0, 2.0], 1.0)


def _demo_config(*argv):
    """The config json a ``python -m train_demo *argv`` run would save."""
    from train_demo.cli import config_from_args
    from train_demo.flags import parser

    return config_from_args(parser().parse_args(list(argv))).to_json()


def test_settings_name_the_task_and_only_the_changed_flags():
    assert report.settings(_demo_config()) == ["--task bucket_sort"]
    changed = _demo_config("--steps", "7", "--layers", "2", "--encodings", "rope")
    assert report.settings(changed) == [
        "--task bucket_sort",
        "--encodings rope",
        "--steps 7",
        "--layers 2",
    ]
    # A key that no flag sets is compared with TrainConfig's default.
    assert report.settings({**_demo_config(), "clip_norm": 0.5})[-1] == "clip_norm=0.5"
    # Keys an older results.json lacks are not reported.
    older = {k: v for k, v in _demo_config("--steps", "7").items() if k != "api"}
    assert report.settings(older) == ["--task bucket_sort", "--steps 7"]


def test_title_of_a_default_run_says_so():
    text = report.title({"task": "bucket_sort", "config": _demo_config()}, "x", 80)
    assert text.splitlines()[0] == "bucket_sort: x"
    assert "--task bucket_sort (every other flag at its default)" in text


def test_titles_name_the_task_and_the_non_default_flags(synthetic):
    report_, histories = synthetic
    accuracy = report.accuracy_figure(report_)
    curves = report.learning_curves_figure(report_, histories)
    for fig in (accuracy, curves):
        text = " ".join(fig.get_suptitle().split())  # unwrapped
        assert text.startswith("bucket_sort: ")
        assert "--task bucket_sort" in text and "--steps 100" in text
        assert "--seeds 2" in text and "--train-length 2" in text
        assert "--batch-size" not in text  # absent from this config


def test_learning_curves_are_smoothed_over_faint_raw_curves(synthetic):
    report_, histories = synthetic
    steps = list(range(50, 1001, 50))
    loss = np.random.default_rng(1).lognormal(size=(len(steps), 2))
    histories["none"] = {"step": steps, "loss": loss.tolist()}
    histories["none"]["accuracy"] = (1 / (1 + loss)).tolist()
    fig = report.learning_curves_figure(report_, histories)
    loss_ax, acc_ax = fig.axes
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        raw, smoothed = [
            line for line in ax.get_lines() if line.get_xdata()[-1] == 1000
        ]
        mean = np.mean(histories["none"][key], axis=1)
        np.testing.assert_array_equal(raw.get_ydata(), mean)
        assert raw.get_alpha() < 0.5 and raw.get_label().startswith("_")
        np.testing.assert_allclose(
            smoothed.get_ydata(), _smooth_reference(mean, 0.5), rtol=1e-12
        )
        assert smoothed.get_label() == "none" and smoothed.get_alpha() is None
        assert raw.get_color() == smoothed.get_color()
    labels = [t.get_text() for t in acc_ax.get_legend().get_texts()]
    assert labels == ["none", "randomized_rope", "± std over 2 seeds"]
    title = " ".join(fig.get_suptitle().split())
    assert "faint: the mean of each chunk" in title, title
    assert "bold: their moving average over about 2 chunks" in title, title


def _band(ax, x):
    """The lower and upper edge, at each of ``x``, of the one shaded band."""
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices
    edges = [vertices[np.isclose(vertices[:, 0], v), 1] for v in x]
    return np.array([e.min() for e in edges]), np.array([e.max() for e in edges])


def _one_seed(report_, histories):
    """The synthetic run with seed 0 alone."""
    report_["results"] = [r for r in report_["results"] if r["seed"] == 0]
    report_["config"]["seeds"] = 1
    for history in histories.values():
        for key in ("loss", "accuracy"):
            history[key] = [row[:1] for row in history[key]]
    return report_, histories


def test_accuracy_band_is_the_tables_spread_over_seeds(synthetic):
    report_, _ = synthetic
    ax = report.accuracy_figure(report_).axes[0]
    # none: seeds [1, .6, .4, .2] and [1, .4, .2, .2]: mean [1, .5, .3, .2],
    # population standard deviation (as the table) [0, .1, .1, 0].
    lower, upper = _band(ax, [1, 2, 3, 4])
    np.testing.assert_allclose(lower, [1.0, 0.4, 0.2, 0.2], atol=1e-12)
    np.testing.assert_allclose(upper, [1.0, 0.6, 0.4, 0.2], atol=1e-12)
    (mean,) = [line for line in ax.get_lines() if line.get_label() == "none"]
    np.testing.assert_allclose(mean.get_ydata(), [1.0, 0.5, 0.3, 0.2], atol=1e-12)
    assert ax.collections[0].get_facecolor()[0][:3] == pytest.approx(
        matplotlib.colors.to_rgb(mean.get_color())
    )
    # randomized_rope has one seed: no band of its own (the one band is none's).
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "training lengths",
        "none",
        "randomized_rope",
        "chance",
        "± std over 2 seeds",
    ]


def test_learning_curves_band_is_the_spread_over_seeds(synthetic):
    report_, histories = synthetic
    loss_ax, acc_ax = report.learning_curves_figure(report_, histories).axes
    # none: loss [[1.5, 1.3], [1.0, 0.9]], accuracy [[.3, .4], [.5, .6]] at
    # steps 50 and 100; two points, so no smoothing: mean ± std of the seeds.
    lower, upper = _band(loss_ax, [50, 100])
    np.testing.assert_allclose(lower, [1.3, 0.9], atol=1e-12)
    np.testing.assert_allclose(upper, [1.5, 1.0], atol=1e-12)
    lower, upper = _band(acc_ax, [50, 100])
    np.testing.assert_allclose(lower, [0.3, 0.5], atol=1e-12)
    np.testing.assert_allclose(upper, [0.4, 0.6], atol=1e-12)


def test_smoothed_learning_curves_band_is_the_spread_of_the_smoothed_seeds(
    synthetic,
):
    report_, histories = synthetic
    steps = list(range(50, 1001, 50))
    loss = np.random.default_rng(2).lognormal(size=(len(steps), 2))
    histories = {"none": {"step": steps, "loss": loss.tolist()}}
    histories["none"]["accuracy"] = (1 / (1 + loss)).tolist()
    loss_ax, acc_ax = report.learning_curves_figure(report_, histories).axes
    for ax, values in ((loss_ax, loss), (acc_ax, 1 / (1 + loss))):
        seeds = [_smooth_reference(values[:, s], 0.5) for s in (0, 1)]
        lower, upper = _band(ax, steps)
        np.testing.assert_allclose(lower, np.minimum(*seeds), rtol=1e-12)
        np.testing.assert_allclose(upper, np.maximum(*seeds), rtol=1e-12)


def test_one_seed_draws_no_band(synthetic):
    report_, histories = _one_seed(*synthetic)
    accuracy = report.accuracy_figure(report_)
    curves = report.learning_curves_figure(report_, histories)
    for ax in (*accuracy.axes, *curves.axes):
        assert len(ax.collections) == 0
    for ax in (accuracy.axes[0], curves.axes[1]):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert not any("std" in label for label in labels), labels


def test_learning_curves_of_ten_chunks_draw_the_chunk_means_once(synthetic):
    # The default run: 500 steps in chunks of 50, 10 points. A moving average
    # over a tenth of the run would be the points themselves: one curve per
    # encoding, and the title promises no faint and bold pair.
    report_, histories = synthetic
    report_["config"]["steps_per_call"] = 50
    steps = list(range(50, 501, 50))
    loss = np.random.default_rng(3).lognormal(size=(len(steps), 2))
    histories["none"] = {"step": steps, "loss": loss.tolist()}
    histories["none"]["accuracy"] = (1 / (1 + loss)).tolist()
    fig = report.learning_curves_figure(report_, histories)
    for ax, values in zip(fig.axes, (loss, 1 / (1 + loss)), strict=True):
        (line,) = [line for line in ax.get_lines() if line.get_xdata()[-1] == 500]
        np.testing.assert_allclose(line.get_ydata(), values.mean(axis=1), rtol=1e-12)
        assert line.get_label() == "none" and line.get_alpha() is None
    title = " ".join(fig.get_suptitle().split())
    assert "each point: the mean of a chunk of 50 steps" in title, title
    assert "faint" not in title and "bold" not in title, title


@pytest.mark.parametrize(
    ("points", "weight"),
    [(0, 0.0), (1, 0.0), (10, 0.0), (20, 0.5), (40, 0.75), (60, 0.8)],
)
def test_smoothing_window_is_a_tenth_of_the_curve_at_most_five_points(points, weight):
    # 1 / (1 - w) points averaged: points / 10, capped at 5 (w = 0.8).
    assert report.smoothing_weight(points) == pytest.approx(weight)


def test_nine_encodings_get_nine_distinct_styles():
    styles = [report.style(e) for e in DOCUMENTED_ENCODINGS]
    assert len({s["color"] for s in styles}) == 9
    assert (
        report.style("randomized_rope")["linestyle"]
        != report.style("rope")["linestyle"]
    )
    assert report.style("none")["linestyle"] != report.style("sinusoidal")["linestyle"]
