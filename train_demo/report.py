"""The results table and the two plots."""

from __future__ import annotations

import dataclasses
import pathlib
import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rich.table import Table

from train_demo import model
from train_demo.flags import parser
from train_demo.train import TrainConfig


def by_encoding(report: dict) -> dict[str, list[dict]]:
    """A report's result rows (one per seed), grouped by encoding."""
    rows: dict[str, list[dict]] = {}
    for row in report["results"]:
        rows.setdefault(row["encoding"], []).append(row)
    return rows


def mean_spread(values: list[float | None]) -> str:
    """``mean ± standard deviation`` of per-seed values (one seed: the value)."""
    if any(v is None for v in values):
        return "-"  # no lengths beyond the training range
    values = np.asarray(values)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std():.3f}"


def table(report: dict) -> Table:
    """Per encoding: accuracy in and beyond the training lengths, train time."""
    config = report["config"]
    result = Table(
        title=(
            f"{report['task']}: per-token accuracy (chance "
            f"{report.get('chance', float('nan')):.2f}); trained on lengths "
            f"1..{config['train_length']}, {config['steps']} steps, "
            f"{config['seeds']} seed(s)"
        )
    )
    result.add_column("encoding")
    result.add_column(f"in-distribution 1..{config['train_length']}", justify="right")
    result.add_column(
        f"beyond {config['train_length'] + 1}..{config['test_length']}", justify="right"
    )
    result.add_column("train s", justify="right")
    for encoding, rows in by_encoding(report).items():
        result.add_row(
            encoding,
            mean_spread([r["iid_accuracy"] for r in rows]),
            mean_spread([r["ood_accuracy"] for r in rows]),
            f"{np.mean([r['train_seconds'] for r in rows]):.0f}",
        )
    return result


# Most weight of the past in the learning curves' moving average: a curve
# point averages at most about 1 / (1 - SMOOTHING) = 5 points.
SMOOTHING = 0.8


def smoothing_weight(points: int) -> float:
    """The moving average's weight for a curve of ``points`` points.

    A point averages about a tenth of the curve, ``1 / (1 - w) = points / 10``
    (no smoothing at 10 points or fewer), at most ``SMOOTHING``'s 5 points: a
    short run's curve is not dragged behind its own points.
    """
    return min(SMOOTHING, max(0.0, 1.0 - 10.0 / points)) if points else 0.0


# Flags whose configuration key has another name.
_CONFIG_KEYS = {"layers": "num_layers", "heads": "num_heads"}


def smooth(values, weight: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average, debiased (as TensorBoard's smoothing).

    $s_t = w s_{t-1} + (1 - w) x_t$ from $s_{-1} = 0$, divided by $1 - w^{t+1}$
    so that the first points are not pulled towards zero: point ``t`` is the
    average of ``x_0..x_t`` with weights $w^{t-k}$. Computed in float64.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight must be in [0, 1), got {weight}.")
    values = np.asarray(values, np.float64)
    result = np.empty_like(values)
    average = 0.0
    for t, x in enumerate(values):
        average = weight * average + (1.0 - weight) * x
        result[t] = average / (1.0 - weight ** (t + 1))
    return result


def _flag_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings(config: dict) -> list[str]:
    """The run's task and every setting that differs from the demo's defaults.

    Flags are compared with ``python -m train_demo``'s own defaults and written
    as flags (``--steps 3000``); configuration keys that no flag sets
    (``clip_norm``...) are compared with ``TrainConfig``'s and written as
    ``key=value``. Keys the config lacks (results of older runs) are skipped.
    """
    flags = vars(parser().parse_args([]))
    flags["encodings"] = flags["encodings"].split(",")
    result, seen = [], set()
    for flag, default in flags.items():
        key = _CONFIG_KEYS.get(flag, flag)
        seen.add(key)
        if key not in config:
            continue  # --out, --resume; or a key older results lack
        value = config[key]
        if key == "task" or value != default:
            result.append(f"--{flag.replace('_', '-')} {_flag_value(value)}")
    for field in dataclasses.fields(TrainConfig):
        key = field.name
        if key in seen or key not in config:
            continue
        if config[key] != field.default:
            result.append(f"{key}={_flag_value(config[key])}")
    return result


def title(report: dict, what: str, width: int) -> str:
    """``task: what``, then the run's non-default settings, wrapped."""
    changed = settings(report["config"])
    rest = (
        "the other flags at their defaults"
        if len(changed) > 1
        else "every other flag at its default"
    )
    # Non-breaking spaces keep each flag on one line with its value.
    words = [item.replace(" ", "\u00a0") for item in changed]
    command = textwrap.fill(
        f"python -m train_demo {' '.join(words)} ({rest})",
        width,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return f"{report['task']}: {what}\n" + command.replace("\u00a0", " ")


def style(encoding: str) -> dict:
    """Plot style of an encoding, the same in every run and both plots.

    A colour of its own (tab10, in the order of ``model.ENCODINGS``); dashed
    for randomized positions, dotted for none, solid otherwise.
    """
    names = list(model.ENCODINGS)
    index = names.index(encoding) if encoding in names else len(names)
    if encoding == "none":
        linestyle = ":"
    elif encoding in names and model.is_randomized(encoding):
        linestyle = "--"
    else:
        linestyle = "-"
    return {"color": f"C{index % 10}", "linestyle": linestyle}


def _mean_with_spread(ax, x, per_seed, line: dict, **plot) -> bool:
    """Plots the mean over seeds of ``per_seed [points, seeds]`` and, with
    several seeds, shades mean ± standard deviation around it: the spread the
    table prints (`mean_spread`), point by point. Returns whether it shaded."""
    per_seed = np.asarray(per_seed, np.float64)
    mean = per_seed.mean(axis=1)
    ax.plot(x, mean, **line, **plot)
    if per_seed.shape[1] < 2:
        return False
    spread = per_seed.std(axis=1)
    ax.fill_between(
        x, mean - spread, mean + spread, color=line["color"], alpha=0.15, lw=0
    )
    return True


def _spread_legend_entry(seeds: int) -> Patch:
    return Patch(color="0.5", alpha=0.3, label=f"± std over {seeds} seeds")


def accuracy_figure(report: dict) -> Figure:
    """Mean per-token accuracy over seeds at every length, per encoding; with
    several seeds, ± their standard deviation shaded."""
    config = report["config"]
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    ax.axvspan(0.5, config["train_length"] + 0.5, color="0.9", label="training lengths")
    shaded = 0
    for encoding, rows in by_encoding(report).items():
        lengths = [int(k) for k in rows[0]["accuracy_by_length"]]
        per_seed = [[r["accuracy_by_length"][str(n)] for n in lengths] for r in rows]
        if _mean_with_spread(
            ax,
            lengths,
            np.transpose(per_seed),
            style(encoding),
            label=encoding,
            linewidth=1.6,
        ):
            shaded = max(shaded, len(rows))
    if "chance" in report:
        ax.axhline(report["chance"], color="0.5", linestyle=":", label="chance")
    ax.set_xlabel("sequence length")
    seeds = config.get("seeds", 1)
    mean = f", mean of {seeds} seeds" if seeds > 1 else ""
    ax.set_ylabel(f"per-token accuracy{mean}")
    ax.set_ylim(0, 1.02)
    fig.suptitle(title(report, "accuracy by length", 100), fontsize="medium")
    handles, _ = ax.get_legend_handles_labels()
    if shaded:
        handles.append(_spread_legend_entry(shaded))
    # Beside the axes: inside, it would hide the curves it names.
    ax.legend(
        handles=handles, fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5)
    )
    return fig


def learning_curves_figure(report: dict, histories: dict) -> Figure:
    """Training loss and accuracy per encoding, mean over seeds (with several,
    ± their standard deviation shaded).

    A history point is the mean of a chunk of steps. A curve of more than 10
    points is drawn faint, and its moving average (`smoothing_weight`) bold
    over it, the shading around the average; up to 10 points, the moving
    average would be the points themselves, and only they are drawn.
    """
    fig = Figure(figsize=(12, 4.8))
    loss_ax, acc_ax = fig.subplots(1, 2)
    weight = smoothing_weight(
        max((len(h["step"]) for h in histories.values()), default=0)
    )
    shaded = 0
    for encoding, history in histories.items():
        steps = history["step"]
        line = style(encoding)
        # A marker, or a history of one chunk would draw nothing.
        marker = "o" if len(steps) < 3 else None
        for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            per_seed = np.asarray(history[key], np.float64)  # [points, seeds]
            if weight:
                ax.plot(steps, per_seed.mean(axis=1), alpha=0.25, linewidth=0.8, **line)
                per_seed = np.stack([smooth(s, weight) for s in per_seed.T], axis=1)
            if _mean_with_spread(
                ax, steps, per_seed, line, label=encoding, lw=1.6, marker=marker
            ):
                shaded = max(shaded, per_seed.shape[1])
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    loss_ax.set_yscale("log")
    acc_ax.set_xlabel("step")
    acc_ax.set_ylabel("training accuracy")
    handles, _ = acc_ax.get_legend_handles_labels()
    if shaded:
        handles.append(_spread_legend_entry(shaded))
    acc_ax.legend(
        handles=handles, fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5)
    )
    chunk = f"{report['config'].get('steps_per_call', '?')} steps"
    if weight:
        what = (
            f"faint: the mean of each chunk of {chunk}; bold: their moving average "
            f"over about {1 / (1 - weight):.0f} chunks"
        )
    else:
        what = f"each point: the mean of a chunk of {chunk}"
    fig.suptitle(
        title(report, f"learning curves on training batches ({what})", 120),
        fontsize="medium",
    )
    return fig


def plots(report: dict, histories: dict, out: pathlib.Path) -> list[pathlib.Path]:
    """Writes accuracy_vs_length.png and learning_curves.png into ``out``."""
    paths = [out / "accuracy_vs_length.png", out / "learning_curves.png"]
    figures = [accuracy_figure(report), learning_curves_figure(report, histories)]
    for fig, path in zip(figures, paths, strict=True):
        fig.tight_layout()
        # "tight": the canvas grows to hold a long title and the legend.
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return paths
