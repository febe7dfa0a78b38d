"""Dynamic Tanh (Zhu et al. 2025): gamma * tanh(alpha * x) + beta, no statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen
from flax_posenc import nnx as pnnx


def _inputs():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 5, 8)) * 4).astype(np.float32)
    scale = rng.standard_normal(8).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    return x, scale, bias


def test_the_formula_and_its_gradients():
    x, scale, bias = _inputs()
    expected = scale * np.tanh(0.7 * x.astype(np.float64)) + bias
    np.testing.assert_allclose(
        fp.dynamic_tanh(x, 0.7, scale, bias), expected, atol=2e-6
    )
    # d/d alpha of sum(y): sum(scale * x * (1 - tanh(alpha x)^2)).
    grad = jax.grad(lambda a: fp.dynamic_tanh(x, a, scale, bias).sum())(0.7)
    t = np.tanh(0.7 * x.astype(np.float64))
    np.testing.assert_allclose(grad, (scale * x * (1 - t**2)).sum(), rtol=1e-5)
    # bfloat16 in, bfloat16 out, computed in float32.
    y = fp.dynamic_tanh(jnp.asarray(x, jnp.bfloat16), 0.7)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.float32(y),
        np.tanh(0.7 * np.float32(jnp.asarray(x, jnp.bfloat16))),
        atol=8e-3,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(alpha=jnp.ones(2)), ValueError, "alpha must be a scalar"),
        (dict(alpha=0.5, scale=jnp.ones(3)), ValueError, "scale must have the shape"),
        (dict(alpha=0.5, bias=jnp.ones(3)), ValueError, "bias must have the shape"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    x, _, _ = _inputs()
    with pytest.raises(error, match=match):
        fp.dynamic_tanh(x, **kwargs)


def test_the_twins_start_as_the_paper_and_agree():
    x, _, _ = _inputs()
    module = linen.DynamicTanh(alpha_init=0.25)
    variables = module.init(jax.random.key(0), x)
    params = nn.meta.unbox(variables)["params"]
    assert float(params["alpha"]) == 0.25
    np.testing.assert_array_equal(params["scale"], np.ones(8))
    np.testing.assert_array_equal(params["bias"], np.zeros(8))
    names = nn.get_partition_spec(variables)["params"]
    assert names["scale"] == jax.sharding.PartitionSpec("embed")
    out = module.apply(variables, x)
    np.testing.assert_allclose(out, np.tanh(0.25 * x.astype(np.float64)), atol=2e-6)
    twin = pnnx.DynamicTanh(8, alpha_init=0.25, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(twin(x), out, atol=0)
    trained = jax.tree.map(lambda p: p + 0.5, variables)
    pnnx.from_linen(twin, trained)
    np.testing.assert_allclose(twin(x), module.apply(trained, x), atol=1e-6)
    bare = linen.DynamicTanh(use_scale=False, use_bias=False).init(jax.random.key(0), x)
    assert sorted(bare["params"]) == ["alpha"]
