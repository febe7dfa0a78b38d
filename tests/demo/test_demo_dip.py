"""benchmarks/demo_dip.py: its description of what a model outputs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import demo_dip


@pytest.fixture(scope="module")
def dip():
    return demo_dip


def _example(n, seed=0):
    inputs = np.random.default_rng(seed).integers(0, 5, (64, n))
    return inputs, np.sort(inputs, axis=-1)


def test_a_perfect_sorter(dip):
    inputs, targets = _example(12)
    row = dip.describe(inputs, targets, targets, train_length=20)
    assert row["acc"] == 1 and row["above"] == 0 and row["below"] == 0
    assert row["seen"] == 12 and row["shift"] == 0 and row["at shift"] == 1
    assert "unseen acc" not in row  # every output position was trained on


def test_a_sorter_reading_the_wrong_rank(dip):
    # Length 25, train length 20: output positions 25..39 seen, 40..49 not.
    inputs, targets = _example(25)
    k = 10
    predictions = np.zeros_like(targets)  # symbol 0 at the unseen positions
    predictions[:, :15] = targets[:, k : 15 + k]  # the answer read 10 slots later
    row = dip.describe(inputs, targets, predictions, train_length=20)
    assert row["seen"] == 15 and row["shift"] == k
    assert row["at shift"] == pytest.approx(1.0)
    seen = predictions[:, :15] == targets[:, :15]
    assert row["seen acc"] == pytest.approx(seen.mean())
    assert row["0s"] == 1 and row["mode"] == 1
    assert row["unseen acc"] == pytest.approx((targets[:, 15:] == 0).mean())
    assert row["acc"] == pytest.approx((predictions == targets).mean())
    assert row["above"] == pytest.approx((predictions > targets).mean())
