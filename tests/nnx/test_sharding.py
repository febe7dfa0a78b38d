"""NNX twins shard by their logical axis names on 4 (and 8) forced CPU devices.

Each device count runs in its own Python process, since it is fixed when JAX
starts.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests import children

REPO = pathlib.Path(__file__).resolve().parents[2]

PROGRAM = """
import json
import jax
import jax.numpy as jnp
import flax.linen as nn
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from flax_posenc import nnx as pnnx


class Model(nnx.Module):
    def __init__(self, rngs):
        self.embed = pnnx.TokenEmbedding(32, 16, rngs=rngs)
        self.attn = pnnx.MultiHeadAttention(
            8, 2, 16, num_kv_heads=4, causal=True,
            rotary=pnnx.RotaryEmbedding(), rngs=rngs,
        )

    def __call__(self, ids):
        return self.embed.attend(self.attn(self.embed(ids)))


model = Model(nnx.Rngs(0))  # built with no mesh
ids = jnp.arange(16).reshape(2, 8) % 32
plain = model(ids)
devices = jax.device_count()
mesh = jax.make_mesh(
    (2, devices // 2), ("data", "model"),
    axis_types=(jax.sharding.AxisType.Auto,) * 2,
)
rules = (("vocab", "model"), ("embed", None), ("heads", "model"),
         ("kv_heads", "model"), ("kv", None))
state = nnx.state(model, nnx.Param)
specs = nn.logical_to_mesh(nnx.get_partition_spec(state), rules)
shardings = jax.tree.map(
    lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P)
)
nnx.update(model, jax.device_put(state, shardings))
out = nnx.jit(lambda m, i: m(i))(model, ids)


def spec(array):  # the mesh axis of every array axis (None: replicated)
    names = tuple(array.sharding.spec)
    return list(names + (None,) * (array.ndim - len(names)))


# A whole checkpoint (examples/) put straight onto the same mesh by the
# logical names of its parameters, on 4 devices.
checkpoint = None
if devices == 4:
    import numpy as np
    import examples

    folder = "examples/fixtures/qwen3_moe"  # layer 0 dense, layer 1 experts
    loaded = examples.from_pretrained(folder, mesh=mesh)
    unsharded = examples.from_pretrained(folder)
    ref_ids = np.load(folder + "/reference.npz")["input_ids"]
    batch = jax.device_put(ref_ids, NamedSharding(mesh, P("data")))
    logits = nnx.jit(lambda m, i: m(i))(loaded, batch)
    layer = loaded.layers[0]
    checkpoint = {
        "query": spec(layer.attention.sublayer.query.kernel[...]),
        "embed": spec(loaded.embed.embedding[...]),
        "down": spec(layer.mlp.sublayer.down.kernel[...]),
        "experts": spec(loaded.layers[1].mlp.sublayer.experts.down[...]),
        "diff": float(np.abs(np.asarray(logits) - unsharded(ref_ids)).max()),
    }


print(json.dumps({
    "checkpoint": checkpoint,
    "devices": devices,
    "table": spec(model.embed.embedding[...]),
    "query": spec(model.attn.query.kernel[...]),
    "key": spec(model.attn.key.kernel[...]),
    "table_shard_rows": sorted(
        s.data.shape[0] for s in model.embed.embedding[...].addressable_shards
    ),
    "max_diff": float(jnp.abs(out - plain).max()),
}))
"""


@pytest.fixture(scope="module")
def runs():
    processes = {}
    for count in (4, 8):
        env = dict(os.environ)
        env["XLA_FLAGS"] = children.xla_flags_with_devices(count)
        env["PYTHONPATH"] = str(REPO)
        processes[count] = subprocess.Popen(
            [sys.executable, "-c", PROGRAM],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for count, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        results[count] = json.loads(out.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("count", [4, 8])
def test_params_shard_by_logical_names_and_output_is_unchanged(runs, count):
    result = runs[count]
    assert result["devices"] == count
    assert result["table"] == ["model", None]
    assert result["query"] == [None, "model", None]
    assert result["key"] == [None, "model", None]
    model_axis = count // 2
    assert result["table_shard_rows"] == [32 // model_axis] * count
    # Sharded sums add in another order: equal up to float32 rounding.
    assert result["max_diff"] < 1e-5


def test_a_checkpoint_loads_straight_onto_the_mesh(runs):
    """examples.from_pretrained(mesh=) on 2 x 2 ("data", "model") devices: the
    parameters arrive sharded by their logical names (heads, MLP width and
    vocabulary over "model"; each expert's MLP width too), and the logits are
    the unsharded ones."""
    found = runs[4]["checkpoint"]
    assert found["query"] == [None, "model", None]
    assert found["embed"] == ["model", None]
    assert found["down"] == ["model", None]
    assert found["experts"] == [None, "model", None]
    assert found["diff"] < 1e-6
