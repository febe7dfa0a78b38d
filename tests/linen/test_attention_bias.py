"""ALiBiBias and RelativePositionBias modules."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

import flax_posenc as fp
from flax_posenc.linen import ALiBiBias, RelativePositionBias
from tests import references
from tests.references import f64

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]


# -------------------------------------------------------------------- ALiBiBias


def test_alibi_no_params():
    variables = ALiBiBias(num_heads=4).init(jax.random.key(0), jnp.arange(5))
    assert jax.tree.leaves(variables) == []


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_alibi_k_defaults_to_q(transform):
    q = jnp.array([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])
    bias = transform(ALiBiBias(num_heads=6).apply)({}, q)
    chex.assert_shape(bias, (2, 6, 5, 5))
    chex.assert_trees_all_close(bias, fp.alibi_bias(q, q, 6), atol=0.0)
    expected = references.alibi_bias(q, q, references.alibi_get_slopes(6))
    chex.assert_trees_all_close(f64(bias), expected, atol=1e-7)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_alibi_explicit_keys_and_dtype(transform):
    q = jnp.array([7, 8])
    k = jnp.arange(9)
    module = ALiBiBias(num_heads=8, dtype=jnp.bfloat16)
    bias = transform(module.apply)({}, q, k)
    chex.assert_shape(bias, (8, 2, 9))
    chex.assert_type(bias, jnp.bfloat16)
    chex.assert_trees_all_close(
        bias, fp.alibi_bias(q, k, 8, dtype=jnp.bfloat16), atol=0.0
    )
    expected = references.alibi_bias(q, k, references.alibi_get_slopes(8))
    chex.assert_trees_all_close(f64(bias), expected, atol=1e-2, rtol=1e-2)


# --------------------------------------------------------- RelativePositionBias


def _reference_bias(table, q, k, bidirectional, num_buckets=32, max_distance=128):
    rel = np.asarray(k)[..., None, :] - np.asarray(q)[..., :, None]
    buckets = references.t5_relative_position_bucket(
        rel, bidirectional, num_buckets, max_distance
    )
    return np.moveaxis(f64(table)[:, buckets], 0, -3), buckets


def test_param_shape_and_logical_axes():
    module = RelativePositionBias(num_heads=4, num_buckets=16)
    variables = module.init(jax.random.key(0), jnp.arange(6))
    shapes = jax.tree.map(jnp.shape, nn.meta.unbox(variables))
    assert shapes == {"params": {"rel_embedding": (4, 16)}}
    spec = nn.get_partition_spec(variables)
    assert spec["params"]["rel_embedding"] == PartitionSpec("heads", "relpos_buckets")
    table = nn.meta.unbox(variables)["params"]["rel_embedding"]
    chex.assert_type(table, jnp.float32)
    assert float(jnp.std(table)) > 0.0


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_output_is_table_lookup(transform, bidirectional):
    module = RelativePositionBias(num_heads=3, bidirectional=bidirectional)
    q = jnp.array([[0, 1, 2, 3], [40, 41, 42, 43]])
    k = jnp.array([[0, 1, 2, 3, 4, 5], [0, 10, 41, 42, 90, 300]])
    variables = module.init(jax.random.key(1), q, k)
    bias = transform(module.apply)(variables, q, k)
    chex.assert_shape(bias, (2, 3, 4, 6))
    chex.assert_type(bias, jnp.float32)
    table = nn.meta.unbox(variables)["params"]["rel_embedding"]
    expected, _ = _reference_bias(table, q, k, bidirectional)
    chex.assert_trees_all_close(f64(bias), expected, atol=0.0)
    # k defaults to q
    chex.assert_trees_all_close(
        module.apply(variables, q),
        _reference_bias(table, q, q, bidirectional)[0],
        atol=0.0,
    )


def test_num_buckets_and_max_distance():
    module = RelativePositionBias(num_heads=2, num_buckets=16, max_distance=32)
    q = jnp.arange(50)
    variables = module.init(jax.random.key(2), q)
    table = nn.meta.unbox(variables)["params"]["rel_embedding"]
    expected, _ = _reference_bias(table, q, q, True, 16, 32)
    chex.assert_trees_all_close(f64(module.apply(variables, q)), expected, atol=0.0)


@pytest.mark.parametrize(
    ("dtype", "param_dtype", "out_dtype"),
    [
        (None, jnp.float32, jnp.float32),
        (jnp.bfloat16, jnp.float32, jnp.bfloat16),
        (None, jnp.bfloat16, jnp.bfloat16),
        (jnp.float32, jnp.float16, jnp.float32),
    ],
)
def test_dtype_and_param_dtype(dtype, param_dtype, out_dtype):
    module = RelativePositionBias(num_heads=2, dtype=dtype, param_dtype=param_dtype)
    q = jnp.arange(5)
    variables = module.init(jax.random.key(3), q)
    table = nn.meta.unbox(variables)["params"]["rel_embedding"]
    chex.assert_type(table, param_dtype)
    bias = module.apply(variables, q)
    chex.assert_type(bias, out_dtype)
    expected, _ = _reference_bias(table, q, q, True)
    # the looked-up entries, rounded once to the output dtype
    expected = f64(jnp.asarray(expected, jnp.float32).astype(out_dtype))
    chex.assert_trees_all_close(f64(bias), expected, atol=0.0)


def test_custom_init():
    module = RelativePositionBias(
        num_heads=2, embedding_init=nn.initializers.constant(0.5)
    )
    variables = module.init(jax.random.key(0), jnp.arange(3))
    np.testing.assert_array_equal(
        np.asarray(nn.meta.unbox(variables)["params"]["rel_embedding"]), 0.5
    )


@pytest.mark.parametrize("bidirectional", [True, False])
def test_grad_only_at_used_buckets(bidirectional):
    module = RelativePositionBias(num_heads=2, bidirectional=bidirectional)
    q = jnp.arange(6)
    variables = nn.meta.unbox(module.init(jax.random.key(4), q))
    upstream = jnp.asarray(
        np.random.default_rng(5).uniform(0.5, 1.5, (2, 6, 6)), jnp.float32
    )

    @jax.jit
    def loss(params):
        return jnp.sum(module.apply({"params": params}, q) * upstream)

    grad = np.asarray(jax.grad(loss)(variables["params"])["rel_embedding"])
    chex.assert_shape(grad, (2, 32))
    _, buckets = _reference_bias(np.zeros((2, 32)), q, q, bidirectional)
    expected = np.zeros((2, 32))
    for h in range(2):
        np.add.at(expected[h], buckets, f64(upstream[h]))
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=0.0)
    used = np.unique(buckets)
    assert np.all(grad[:, used] > 0)
    unused = np.setdiff1d(np.arange(32), used)
    assert unused.size > 0
    np.testing.assert_array_equal(grad[:, unused], 0.0)
