"""Data parallelism: 4 forced CPU devices give the numbers of 1 device.

The 4-device run is a Python process of its own, since the device count is
fixed when JAX starts; the 1-device run is the same code in this process (one
CPU device), at the same time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests import children

REPO = pathlib.Path(__file__).resolve().parents[2]

TRAIN = """
import json
import jax
import jax.numpy as jnp
import numpy as np
from tests.demo.helpers import tiny
from train_demo import train

# On one device, the programs of test_cli's run (the same sizes, one 4-step
# chunk, the command line's 64 evaluation rows): JAX's persistent cache
# shares them.
trainer = train.Trainer(tiny(encoding="rope", batch_size=8, eval_batch=64))
state = trainer.init_seeds([0, 1])
state, (loss, _) = trainer.train(state, 4)
batch = jax.jit(
    lambda key: trainer._shard(trainer.batch(key, jnp.full((8,), 3), 4))
)(jax.random.key(0))
print(json.dumps({
    "devices": jax.device_count(),
    "mesh": int(trainer.mesh.devices.size),
    "shard_rows": sorted(s.data.shape[0] for s in batch.tokens.addressable_shards),
    "losses": np.asarray(loss).tolist(),
    "params": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.params)],
    "accuracy": trainer.evaluate(state).tolist(),
}))
"""

# Then, in the 4-device process only: batch size 6 cannot be split over 4
# devices, bad input that only the Trainer can find.
CLI = """
import pathlib, sys, traceback
from train_demo.cli import main
out = pathlib.Path(sys.argv[1])
try:
    code = main(["--encodings", "none", "--steps", "2", "--batch-size", "6",
                 "--train-length", "3", "--test-length", "4", "--layers", "1",
                 "--features", "16", "--heads", "2", "--out", str(out)])
    print("EXIT", code, "EXISTS", out.exists())
except BaseException:
    traceback.print_exc(file=sys.stdout)
"""


def _start(code, devices, *args):
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": children.xla_flags_with_devices(devices),
        "COLUMNS": "300",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli4") / "run"
    four = _start(TRAIN + CLI, 4, str(out))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(TRAIN, "TRAIN", "exec"), {})
    stdout, stderr = four.communicate(timeout=300)
    one = (0, buffer.getvalue(), "")
    return {"four": (four.returncode, stdout, stderr), "one": one}


def _train_output(processes, name):
    code, stdout, stderr = processes[name]
    assert code == 0, stderr[-3000:]
    return json.loads(next(line for line in stdout.splitlines() if line[:1] == "{"))


def test_four_devices_split_the_batch(processes):
    four, one = _train_output(processes, "four"), _train_output(processes, "one")
    assert four["devices"] == four["mesh"] == 4
    assert four["shard_rows"] == [2, 2, 2, 2]
    assert one["devices"] == one["mesh"] == 1
    assert one["shard_rows"] == [8]


def test_sharded_equals_unsharded(processes):
    four, one = _train_output(processes, "four"), _train_output(processes, "one")
    # The loss is a sum over the batch: split over devices it is summed in
    # another order, so float32 results differ in the last bits, and Adam
    # carries that through the 4 steps; 1e-5 is far above that and far below
    # any real difference.
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5, atol=1e-5)
    assert len(four["params"]) == len(one["params"]) > 0
    for a, b in zip(four["params"], one["params"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Accuracies are counts / total: exact unless a near-tie argmax flips.
    np.testing.assert_allclose(four["accuracy"], one["accuracy"], atol=1e-6)
    assert np.asarray(four["losses"]).shape == (2, 4)  # seeds, steps


def test_batch_not_divisible_by_devices_is_bad_input(processes):
    code, stdout, stderr = processes["four"]
    assert code == 0, stderr[-3000:]
    text = " ".join(line for line in stdout.splitlines() if line[:1] != "{")
    text = " ".join(text.split())
    assert "batch_size 6" in text and "4 devices" in text, text
    assert "EXIT 2 EXISTS False" in text, text
