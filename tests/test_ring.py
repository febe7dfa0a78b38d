"""Context parallelism: the load-balancing order of the sequence over shards."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import flax_posenc as fp
from tests import children


def _llama3_order(length, shards):
    """Llama 3's rule, written plainly: shard i holds chunks i and 2n - 1 - i."""
    size = length // (2 * shards)
    chunk = [list(range(c * size, (c + 1) * size)) for c in range(2 * shards)]
    return [t for i in range(shards) for t in chunk[i] + chunk[2 * shards - 1 - i]]


@pytest.mark.parametrize(("length", "shards"), [(8, 1), (8, 2), (24, 3), (64, 4)])
def test_order_is_llama3s_and_argsort_inverts_it(length, shards):
    order = np.asarray(fp.load_balanced_order(length, shards))
    assert order.dtype == np.int32
    assert order.tolist() == _llama3_order(length, shards)
    assert np.argsort(order)[order].tolist() == list(range(length))


@pytest.mark.parametrize("shards", [2, 4, 8])
def test_every_shard_gets_the_same_causal_work(shards):
    length = 16 * shards
    order = np.asarray(fp.load_balanced_order(length, shards))
    # A query at position p attends to p + 1 keys under a causal mask.
    work = [int((part + 1).sum()) for part in np.split(order, shards)]
    assert len(set(work)) == 1, work
    plain = [int((part + 1).sum()) for part in np.split(np.arange(length), shards)]
    assert len(set(plain)) == shards  # what the reorder fixes


def test_masks_from_permuted_positions_are_the_permuted_mask():
    positions = np.arange(24)
    segments = np.repeat([1, 2, 2], 8)
    order = np.asarray(fp.load_balanced_order(24, 3))
    mask = np.asarray(
        fp.attention_mask(
            positions, positions, causal=True, q_segments=segments, k_segments=segments
        )
    )
    permuted = np.asarray(
        fp.attention_mask(
            positions[order],
            positions[order],
            causal=True,
            q_segments=segments[order],
            k_segments=segments[order],
        )
    )
    np.testing.assert_array_equal(permuted, mask[..., order, :][..., order])


@pytest.mark.parametrize(
    ("length", "shards", "error", "match"),
    [
        (10, 2, ValueError, r"multiple of 2 \* num_shards = 4"),
        (8, 0, ValueError, r"num_shards must be >= 1"),
        (0, 1, ValueError, r"length must be >= 1"),
        (8, True, TypeError, r"num_shards must be an int"),
        (8.0, 2, TypeError, r"length must be an int"),
    ],
)
def test_bad_sizes(length, shards, error, match):
    with pytest.raises(error, match=match):
        fp.load_balanced_order(length, shards)


# One child process with 8 CPU devices runs every ring case (the device count is
# fixed when JAX starts), on meshes of 4 and of 8 of them; it prints, per case,
# the largest differences from dense attention on one device, for the outputs
# and for the gradients (of q, k, v and of the T5 table that the bias case
# reads), and the same for the attention modules with context_axis.
RING_PROGRAM = """
import json
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import flax_posenc as fp

from flax_posenc import linen

MESHES = {
    n: jax.sharding.Mesh(jax.devices()[:n], ("context",)) for n in (4, 8)
}
T, heads, kv_heads, dim = 32, 4, 2, 8
keys = jax.random.split(jax.random.key(0), 5)
q = jax.random.normal(keys[0], (2, T, heads, dim))
k = jax.random.normal(keys[1], (2, T, kv_heads, dim))
v = jax.random.normal(keys[2], (2, T, kv_heads, dim))
w = jax.random.normal(keys[3], (2, T, heads, dim))
table = jax.random.normal(keys[4], (heads, 32))
positions = jnp.stack([jnp.arange(T), jnp.arange(T) % 20])  # row 1 packs 2
segments = jnp.stack([jnp.ones(T, jnp.int32), (jnp.arange(T) >= 20) + 1])
segments = segments.at[0, -3:].set(0)  # padding: rows with nothing to attend
# Each case covers several features at once (one compiled program per case):
# grouped heads in all, causal with padding and packed segments, soft-capping
# without a causal mask, chunks, a window, attention sinks, the load-balanced
# order.
CASES = {
    "causal-balanced-segments-t5-bias": dict(
        causal=True, segments=True, balanced=True, bias=True
    ),
    "bidirectional-chunks-softcap-8-devices": dict(
        chunk_size=6, softcap=2.0, devices=8, block_size=3
    ),
    "window-balanced-sinks-8-devices": dict(
        causal=True, sliding_window=7, balanced=True, devices=8, sinks=True
    ),
}
sinks = jnp.array([-1.0, 0.0, 0.5, 2.0])


def t5(table, q_pos, k_pos):
    return fp.relative_position_bias(table, q_pos, k_pos, bidirectional=False)


seq = P(None, "context")
results = {}
for name, case in CASES.items():
    case = dict(case)
    balanced, with_segments = case.pop("balanced", False), case.pop("segments", False)
    with_bias = case.pop("bias", False)
    case_sinks = sinks if case.pop("sinks", False) else None
    devices = case.pop("devices", 4)
    mesh = MESHES[devices]
    seg = segments if with_segments else None

    def dense(q, k, v, table):
        mask = fp.attention_mask(
            positions, positions, causal=case.get("causal", False),
            sliding_window=case.get("sliding_window"), q_segments=seg, k_segments=seg,
            chunk_size=case.get("chunk_size"),
        )
        bias = t5(table, positions, positions) if with_bias else None
        return fp.dot_product_attention(
            q, k, v, mask=mask, bias=bias, softcap=case.get("softcap"),
            sinks=case_sinks,
        )

    def ring(q, k, v, table):
        order = fp.load_balanced_order(T, devices) if balanced else jnp.arange(T)
        pos, sg = positions[:, order], None if seg is None else seg[:, order]

        def shard(q, k, v, p, s, table):
            # The bias function is built inside, from the replicated table.
            bias = jax.tree_util.Partial(t5, table) if with_bias else None
            return fp.ring_attention(
                q, k, v, axis_name="context", q_positions=p, k_positions=p,
                q_segments=s, k_segments=s, bias=bias, sinks=case_sinks, **case,
            )

        local = jax.shard_map(
            shard,
            mesh=mesh,
            in_specs=(seq, seq, seq, seq, None if sg is None else seq, P()),
            out_specs=seq,
        )
        out = local(q[:, order], k[:, order], v[:, order], pos, sg, table)
        return out[:, jnp.argsort(order)]

    def value_and_grads(f):
        # One compiled program per side: the output and the gradients of a
        # weighted sum of it.
        def run(q, k, v, table):
            out, vjp = jax.vjp(f, q, k, v, table)
            grads = vjp(w.astype(out.dtype))
            return out, grads if with_bias else grads[:3]

        return jax.jit(run)

    args = (q, k, v, table)
    out_ring, grads_ring = value_and_grads(ring)(*args)
    out_dense, grads_dense = value_and_grads(dense)(*args)
    results[name] = {
        "out": float(jnp.abs(out_ring - out_dense).max()),
        "grad": max(
            float(jnp.abs(a - b).max()) for a, b in zip(grads_ring, grads_dense)
        ),
        "finite": bool(all(jnp.isfinite(g).all() for g in grads_ring)),
        "padding_rows": (
            float(jnp.abs(out_ring[0, -3:]).max()) if with_segments else 0.0
        ),
        "table_grad": float(jnp.abs(grads_ring[-1]).max()) if with_bias else None,
    }

# The modules: linen MultiHeadAttention with RoPE and ALiBi, and
# MultiHeadLatentAttention (DeepSeek's MLA) with its rotary part; their twins
# with context_axis called on the shards (load-balanced order) in shard_map.
modules = {
    "module-context-axis": linen.MultiHeadAttention(
        num_heads=heads, num_kv_heads=kv_heads, head_dim=dim, causal=True,
        rotary=linen.RotaryEmbedding(), position_bias=linen.ALiBiBias(heads),
    ),
    "latent-module-context-axis": linen.MultiHeadLatentAttention(
        heads, kv_lora_rank=12, qk_nope_head_dim=4, qk_rope_head_dim=4,
        v_head_dim=6, q_lora_rank=10,
        rotary=linen.RotaryEmbedding(layout="interleaved"),
    ),
}
x = jax.random.normal(keys[0], (2, T, 16))
order = fp.load_balanced_order(T, 4)
every = jnp.broadcast_to(jnp.arange(T), (2, T))


def module_value_and_grads(f):
    def run(params, x):
        out, vjp = jax.vjp(f, params, x)
        return out, vjp(x)[0]

    return jax.jit(run)


for name, module in modules.items():
    ring_module = module.clone(context_axis="context")
    params = module.init(jax.random.key(1), x)["params"]

    def module_dense(params, x, module=module):
        return module.apply({"params": params}, x, positions=every)

    def module_ring(params, x, ring_module=ring_module):
        def shard(params, x, p):
            return ring_module.apply({"params": params}, x, positions=p)

        local = jax.shard_map(
            shard, mesh=MESHES[4], in_specs=(P(), seq, seq), out_specs=seq
        )
        return local(params, x[:, order], every[:, order])[:, jnp.argsort(order)]

    out_ring, grads_ring = module_value_and_grads(module_ring)(params, x)
    out_dense, grads_dense = module_value_and_grads(module_dense)(params, x)
    results[name] = {
        "out": float(jnp.abs(out_ring - out_dense).max()),
        "grad": max(
            float(jnp.abs(a - b).max())
            for a, b in zip(jax.tree.leaves(grads_ring), jax.tree.leaves(grads_dense))
        ),
        "finite": True,
        "padding_rows": 0.0,
    }
print(json.dumps(results))
"""


def test_ring_attention_on_four_and_eight_devices_equals_dense_attention():
    env = dict(os.environ, XLA_FLAGS=children.xla_flags_with_devices(8))
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", RING_PROGRAM],
        env=env,
        cwd=pathlib.Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results) == {
        "causal-balanced-segments-t5-bias",
        "bidirectional-chunks-softcap-8-devices",
        "window-balanced-sinks-8-devices",
        "module-context-axis",
        "latent-module-context-axis",
    }
    for name, found in results.items():
        assert found["out"] < 2e-6, (name, found)
        assert found["grad"] < 2e-5, (name, found)
        assert found["finite"], name
        assert found["padding_rows"] == 0.0, name  # nothing to attend: zeros
    assert results["causal-balanced-segments-t5-bias"]["table_grad"] > 0.1  # it flows


def test_a_ring_bias_closing_over_a_traced_array_is_an_error():
    # The ring's backward pass is traced apart from the caller: a traced
    # table must come as a Partial's argument, where its gradient can go.
    import jax
    import jax.numpy as jnp

    q = jnp.ones((1, 4, 2, 8))
    p = jnp.arange(4)[None]

    def ring(table):
        return fp.ring_attention(
            q,
            q,
            q,
            axis_name="context",
            q_positions=p,
            k_positions=p,
            bias=lambda a, b: fp.relative_position_bias(table, a, b),
        )

    with pytest.raises(ValueError, match=r"closes over traced arrays \(\(2, 32\)\)"):
        jax.jit(ring)(jnp.ones((2, 32)))
