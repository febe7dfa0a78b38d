"""The results table and the two plots."""

from __future__ import annotations

import pathlib

import numpy as np
from rich.table import Table


def _by_encoding(report: dict) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in report["results"]:
        rows.setdefault(row["encoding"], []).append(row)
    return rows


def _mean_spread(values: list[float | None]) -> str:
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
    for encoding, rows in _by_encoding(report).items():
        result.add_row(
            encoding,
            _mean_spread([r["iid_accuracy"] for r in rows]),
            _mean_spread([r["ood_accuracy"] for r in rows]),
            f"{np.mean([r['train_seconds'] for r in rows]):.0f}",
        )
    return result


def plots(report: dict, histories: dict, out: pathlib.Path) -> list[pathlib.Path]:
    """Writes accuracy_vs_length.png and learning_curves.png into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = report["config"]
    paths = [out / "accuracy_vs_length.png", out / "learning_curves.png"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.axvspan(0.5, config["train_length"] + 0.5, color="0.9", label="training lengths")
    for encoding, rows in _by_encoding(report).items():
        lengths = [int(k) for k in rows[0]["accuracy_by_length"]]
        accuracy = np.mean(
            [[r["accuracy_by_length"][str(n)] for n in lengths] for r in rows], axis=0
        )
        ax.plot(lengths, accuracy, label=encoding)
    if "chance" in report:
        ax.axhline(report["chance"], color="0.5", linestyle=":", label="chance")
    ax.set_xlabel("sequence length")
    ax.set_ylabel("per-token accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{report['task']}: accuracy by length")
    # Beside the axes: inside, it would hide the curves it names.
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4))
    for encoding, history in histories.items():
        steps = history["step"]
        loss_ax.plot(steps, np.mean(history["loss"], axis=1), label=encoding)
        acc_ax.plot(steps, np.mean(history["accuracy"], axis=1), label=encoding)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    loss_ax.set_yscale("log")
    acc_ax.set_xlabel("step")
    acc_ax.set_ylabel("training accuracy")
    acc_ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths
