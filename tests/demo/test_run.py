"""run.py: resuming is bit-identical, a Ctrl-C leaves a usable checkpoint, and
the result rows."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from tests.demo.helpers import RESULT_ROW_KEYS, tiny
from train_demo import run

# Chunks of 2 steps, a checkpoint every 2 steps, 6 steps in all; the
# interrupted run stops at step 4, after the checkpoint at step 2.
STEPS, PER_CALL, EVERY, STOP = 6, 2, 2, 4


def _config():
    return tiny(encoding="learned", steps=STEPS, seeds=2, steps_per_call=PER_CALL)


def _recorder(seen, stop_at=None):
    def on_progress(step, loss, accuracy, rate):
        seen.append(step)
        assert np.isfinite(loss) and 0 <= accuracy <= 1 and rate > 0
        if step == stop_at:
            raise KeyboardInterrupt

    return on_progress


def _assert_states_equal(actual, expected):
    actual_leaves = jax.tree_util.tree_leaves_with_path(actual)
    expected_leaves = jax.tree_util.tree_leaves_with_path(expected)
    assert [p for p, _ in actual_leaves] == [p for p, _ in expected_leaves]
    for (path, a), (_, b) in zip(actual_leaves, expected_leaves, strict=True):
        np.testing.assert_array_equal(
            np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path)
        )


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    config = _config()
    result = {"whole_dir": tmp_path_factory.mktemp("whole"), "whole_steps": []}
    result["whole"] = run.train_encoding(
        config, result["whole_dir"], EVERY, _recorder(result["whole_steps"])
    )

    out = tmp_path_factory.mktemp("interrupted")
    result["first_steps"], result["second_steps"] = [], []
    with pytest.raises(KeyboardInterrupt):
        run.train_encoding(config, out, EVERY, _recorder(result["first_steps"], STOP))
    result["checkpoints"] = sorted(
        p.name for p in (out / "checkpoints" / config.encoding).iterdir()
    )
    history = out / "checkpoints" / config.encoding / str(STOP) / run.HISTORY_FILE
    result["history_at_interrupt"] = json.loads(history.read_text())
    result["second"] = run.train_encoding(
        config, out, EVERY, _recorder(result["second_steps"])
    )
    return result


def test_interrupt_leaves_a_checkpoint_of_the_last_chunk(resumed):
    assert resumed["whole_steps"] == [2, 4, 6]
    assert resumed["first_steps"] == [2, 4]
    # max_to_keep=1: the checkpoint of the interrupted step is the one left.
    assert str(STOP) in resumed["checkpoints"]
    assert resumed["history_at_interrupt"]["step"] == [2, 4]
    # The resumed run starts where the interrupted one stopped.
    assert resumed["second_steps"] == [6]


def test_resume_is_bit_identical(resumed):
    _, whole_state, whole_history, _ = resumed["whole"]
    _, state, history, _ = resumed["second"]
    assert np.asarray(state.step).tolist() == [STEPS, STEPS]
    _assert_states_equal(state, whole_state)  # params, Adam moments, step, key
    # The learning curve, continued from the saved history, is the same too.
    assert history == whole_history
    assert history["step"] == [2, 4, 6]
    assert np.asarray(history["loss"]).shape == (3, 2)


def test_resuming_a_finished_run_trains_nothing(resumed):
    steps = []
    _, state, history, _ = run.train_encoding(
        _config(), resumed["whole_dir"], EVERY, _recorder(steps)
    )
    assert steps == []
    _, whole_state, whole_history, _ = resumed["whole"]
    _assert_states_equal(state, whole_state)
    assert history == whole_history


# -- result rows ---------------------------------------------------------------


def test_summarize_rows():
    config = tiny(encoding="rope", train_length=2, test_length=5)
    accuracy = np.array([[1.0, 0.5, 0.25, 0.0, 0.75], [0.0, 1.0, 0.5, 0.5, 0.5]])
    rows = run.summarize(config, accuracy, 12.5)
    assert [r["seed"] for r in rows] == [0, 1]
    for row, by_length in zip(rows, accuracy.tolist(), strict=True):
        assert set(row) == RESULT_ROW_KEYS
        assert row["encoding"] == "rope"
        assert row["iid_accuracy"] == pytest.approx(sum(by_length[:2]) / 2)
        assert row["ood_accuracy"] == pytest.approx(sum(by_length[2:]) / 3)
        assert row["accuracy_by_length"] == {
            str(n): a for n, a in zip(range(1, 6), by_length, strict=True)
        }
        assert row["train_seconds"] == 12.5
    json.dumps(rows, allow_nan=False)


def test_summarize_train_length_equal_to_test_length_is_valid_json():
    # --train-length == --test-length is accepted; nothing lies beyond the
    # training lengths, and results.json must still be standard JSON (no NaN).
    config = tiny(train_length=3, test_length=3)
    rows = run.summarize(config, np.array([[1.0, 0.5, 0.25]]), 1.0)
    assert rows[0]["iid_accuracy"] == pytest.approx(1.75 / 3)
    json.dumps(rows, allow_nan=False)


def test_history_point_is_the_chunk_mean_per_seed():
    # The learning curves read training-batch loss and accuracy averaged over
    # each chunk's steps, one value per seed.
    loss = np.array([[1.0, 2.0, 6.0], [0.5, 0.5, 2.0]])
    accuracy = np.array([[0.0, 0.5, 1.0], [0.25, 0.25, 1.0]])
    history = run._extended({"step": [], "loss": [], "accuracy": []}, 3, loss, accuracy)
    assert history == {"step": [3], "loss": [[3.0, 1.0]], "accuracy": [[0.5, 0.5]]}
