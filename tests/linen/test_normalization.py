"""Tests of LayerNorm, RMSNorm and Residual (flax_posenc.linen.normalization)."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec

from flax_posenc.linen import LayerNorm, Residual, RMSNorm
from tests.references import f64, normal
from tests.references import layer_norm as layer_norm_ref
from tests.references import rms_norm as rms_norm_ref

TRANSFORMS = [
    pytest.param(lambda f: f, id="eager"),
    pytest.param(jax.jit, id="jit"),
]

SHAPE = (2, 3, 8)
X = normal(0, SHAPE) * 2.0 + 0.5


def random_params(seed, shape, names):
    return {
        name: 1.0 + 0.5 * normal(seed + 1000 * i, shape) for i, name in enumerate(names)
    }


# -------------------------------------------------------------------- LayerNorm


def test_layer_norm_params_init_and_axis_names():
    variables = LayerNorm().init(jax.random.key(0), X)
    params = nn.meta.unbox(variables)["params"]
    assert set(params) == {"scale", "bias"}
    chex.assert_shape([params["scale"], params["bias"]], (8,))
    chex.assert_type([params["scale"], params["bias"]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(params["scale"]), np.ones(8))
    np.testing.assert_array_equal(np.asarray(params["bias"]), np.zeros(8))
    spec = nn.get_partition_spec(variables)
    assert spec == {
        "params": {"scale": PartitionSpec("embed"), "bias": PartitionSpec("embed")}
    }


@pytest.mark.parametrize(
    ("use_scale", "use_bias", "names"),
    [(True, False, {"scale"}), (False, True, {"bias"}), (False, False, set())],
)
def test_layer_norm_optional_params(use_scale, use_bias, names):
    module = LayerNorm(use_scale=use_scale, use_bias=use_bias)
    variables = module.init(jax.random.key(0), X)
    assert set(nn.meta.unbox(variables).get("params", {})) == names
    out = module.apply(variables, X)
    chex.assert_trees_all_close(f64(out), layer_norm_ref(X), atol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_layer_norm_matches_reference(transform):
    params = random_params(1, (8,), ["scale", "bias"])
    out = transform(LayerNorm().apply)({"params": params}, X)
    chex.assert_shape(out, SHAPE)
    chex.assert_type(out, jnp.float32)
    expected = layer_norm_ref(X, params["scale"], params["bias"])
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_layer_norm_multiple_axes_and_epsilon(transform):
    module = LayerNorm(axis=(-2, -1), param_axes=("seq", "embed"), epsilon=0.5)
    variables = module.init(jax.random.key(0), X)
    spec = nn.get_partition_spec(variables)["params"]
    assert spec["scale"] == PartitionSpec("seq", "embed")
    params = random_params(2, (3, 8), ["scale", "bias"])
    out = transform(module.apply)({"params": params}, X)
    expected = layer_norm_ref(
        X, params["scale"], params["bias"], eps=0.5, axis=(-2, -1)
    )
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


def test_layer_norm_axis_names_must_match_axes():
    with pytest.raises(ValueError, match="axis names"):
        LayerNorm(axis=(-2, -1)).init(jax.random.key(0), X)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_layer_norm_large_mean_float32(transform):
    # DESIGN: on 1e4 + N(0, 1) in float32, within 1e-3 of a float64 reference.
    x = 1e4 + normal(3, (4, 64))
    params = random_params(4, (64,), ["scale", "bias"])
    out = transform(LayerNorm().apply)({"params": params}, x)
    expected = layer_norm_ref(x, params["scale"], params["bias"])
    chex.assert_trees_all_close(f64(out), expected, atol=1e-3)


@pytest.mark.parametrize(
    ("module", "ref"),
    [
        pytest.param(LayerNorm(), layer_norm_ref, id="layer_norm"),
        pytest.param(RMSNorm(), rms_norm_ref, id="rms_norm"),
    ],
)
@pytest.mark.parametrize(
    ("in_dtype", "dtype", "out_dtype"),
    [
        (jnp.float32, None, jnp.float32),
        (jnp.bfloat16, None, jnp.bfloat16),
        (jnp.float16, None, jnp.float16),
        (jnp.bfloat16, jnp.float32, jnp.float32),
        (jnp.float32, jnp.bfloat16, jnp.bfloat16),
    ],
)
def test_norm_output_dtype(module, ref, in_dtype, dtype, out_dtype):
    module = module.clone(dtype=dtype)
    x = X.astype(in_dtype)
    variables = module.init(jax.random.key(0), x)
    for leaf in jax.tree.leaves(nn.meta.unbox(variables)):
        chex.assert_type(leaf, jnp.float32)  # param_dtype default
    out = module.apply(variables, x)
    chex.assert_type(out, out_dtype)
    tol = 0.0 if jnp.dtype(out_dtype).itemsize == 4 else 2e-2
    chex.assert_trees_all_close(f64(out), ref(x), atol=1e-5 + tol, rtol=tol)


@pytest.mark.parametrize("module", [LayerNorm(), RMSNorm()], ids=["ln", "rms"])
def test_norm_param_dtype(module):
    module = module.clone(param_dtype=jnp.bfloat16)
    variables = module.init(jax.random.key(0), X)
    for leaf in jax.tree.leaves(nn.meta.unbox(variables)):
        chex.assert_type(leaf, jnp.bfloat16)
    chex.assert_type(module.apply(variables, X), jnp.float32)


@pytest.mark.parametrize("module", [LayerNorm(), RMSNorm()], ids=["ln", "rms"])
def test_norm_bf16_large_values_finite(module):
    x = (1e4 + normal(5, (4, 32))).astype(jnp.bfloat16)
    variables = module.init(jax.random.key(0), x)
    out = jax.jit(module.apply)(variables, x)
    chex.assert_type(out, jnp.bfloat16)
    assert np.isfinite(f64(out)).all()
    if isinstance(module, RMSNorm):
        # x / rms(x) of values ~1e4 is ~1 everywhere.
        chex.assert_trees_all_close(f64(out), rms_norm_ref(x), atol=2e-2)


_LN0_APPLY = jax.jit(LayerNorm(epsilon=0.0).apply)
_LN0_VARIABLES = {"params": random_params(6, (8,), ["scale", "bias"])}


@settings(max_examples=15, deadline=None)
@given(
    shift=st.floats(-100.0, 100.0),
    factor=st.floats(0.1, 10.0),
)
def test_layer_norm_invariant_to_affine_input(shift, factor):
    # Without eps, LN(a * x + c) = LN(x) for every a > 0 and c.
    out = _LN0_APPLY(_LN0_VARIABLES, X)
    moved = _LN0_APPLY(_LN0_VARIABLES, factor * X + shift)
    chex.assert_trees_all_close(moved, out, atol=5e-4, rtol=1e-4)


def numerical_grad(fun, x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """Central finite differences of a float64 scalar function."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (fun(up) - fun(down)) / (2 * step)
    return grad


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("mean", [0.0, 1e4], ids=["centred", "large_mean"])
def test_layer_norm_gradients_match_finite_differences(transform, mean):
    x = mean + normal(10, (2, 8))
    weights = normal(11, (2, 8))
    params = random_params(12, (8,), ["scale", "bias"])
    module = LayerNorm()

    def loss(p, x):
        return jnp.sum(weights * module.apply({"params": p}, x))

    grads_p, grads_x = transform(jax.grad(loss, argnums=(0, 1)))(params, x)
    w, scale, bias = f64(weights), f64(params["scale"]), f64(params["bias"])
    x64 = f64(x)
    expected_x = numerical_grad(
        lambda v: np.sum(w * layer_norm_ref(v, scale, bias)), x64, step=1e-5
    )
    expected_scale = numerical_grad(
        lambda s: np.sum(w * layer_norm_ref(x64, s, bias)), scale
    )
    expected_bias = w.sum(axis=0)
    chex.assert_trees_all_close(f64(grads_x), expected_x, atol=2e-3, rtol=1e-3)
    chex.assert_trees_all_close(
        f64(grads_p["scale"]), expected_scale, atol=1e-3, rtol=1e-3
    )
    chex.assert_trees_all_close(f64(grads_p["bias"]), expected_bias, atol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("unit_offset", [False, True])
def test_rms_norm_gradients_match_finite_differences(transform, unit_offset):
    x = normal(13, (2, 8))
    weights = normal(14, (2, 8))
    params = random_params(15, (8,), ["scale"])
    module = RMSNorm(unit_offset=unit_offset)

    def loss(p, x):
        return jnp.sum(weights * module.apply({"params": p}, x))

    grads_p, grads_x = transform(jax.grad(loss, argnums=(0, 1)))(params, x)
    w, scale, x64 = f64(weights), f64(params["scale"]), f64(x)

    def ref(v, s):
        return np.sum(w * rms_norm_ref(v, s, unit_offset=unit_offset))

    expected_x = numerical_grad(lambda v: ref(v, scale), x64)
    expected_scale = numerical_grad(lambda s: ref(x64, s), scale)
    chex.assert_trees_all_close(f64(grads_x), expected_x, atol=1e-4, rtol=1e-4)
    chex.assert_trees_all_close(
        f64(grads_p["scale"]), expected_scale, atol=1e-4, rtol=1e-4
    )


# ---------------------------------------------------------------------- RMSNorm


def test_rms_norm_params_init_and_axis_names():
    variables = RMSNorm().init(jax.random.key(0), X)
    params = nn.meta.unbox(variables)["params"]
    assert set(params) == {"scale"}
    chex.assert_shape(params["scale"], (8,))
    np.testing.assert_array_equal(np.asarray(params["scale"]), np.ones(8))
    spec = nn.get_partition_spec(variables)
    assert spec == {"params": {"scale": PartitionSpec("embed")}}


def test_rms_norm_unit_offset_inits_zeros():
    variables = RMSNorm(unit_offset=True).init(jax.random.key(0), X)
    scale = nn.meta.unbox(variables)["params"]["scale"]
    chex.assert_shape(scale, (8,))
    np.testing.assert_array_equal(np.asarray(scale), np.zeros(8))
    # At init, unit_offset RMSNorm is the plain normalization.
    out = RMSNorm(unit_offset=True).apply(variables, X)
    chex.assert_trees_all_close(f64(out), rms_norm_ref(X), atol=1e-5)


def test_rms_norm_no_scale():
    module = RMSNorm(use_scale=False)
    variables = module.init(jax.random.key(0), X)
    assert jax.tree.leaves(variables) == []
    chex.assert_trees_all_close(
        f64(module.apply(variables, X)), rms_norm_ref(X), atol=1e-5
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("unit_offset", [False, True])
def test_rms_norm_matches_reference(transform, unit_offset):
    params = random_params(7, (8,), ["scale"])
    module = RMSNorm(unit_offset=unit_offset)
    out = transform(module.apply)({"params": params}, X)
    chex.assert_shape(out, SHAPE)
    chex.assert_type(out, jnp.float32)
    expected = rms_norm_ref(X, params["scale"], unit_offset=unit_offset)
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_rms_norm_multiple_axes_and_epsilon(transform):
    module = RMSNorm(axis=(-2, -1), param_axes=(None, "embed"), epsilon=0.25)
    params = random_params(8, (3, 8), ["scale"])
    out = transform(module.apply)({"params": params}, X)
    expected = rms_norm_ref(X, params["scale"], eps=0.25, axis=(-2, -1))
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


def test_rms_norm_unit_offset_without_scale_raises():
    with pytest.raises(ValueError, match="unit_offset"):
        RMSNorm(unit_offset=True, use_scale=False).init(jax.random.key(0), X)


# --------------------------------------------------------------------- Residual


def _residual_params(seed, features=8):
    return {
        "sublayer": {
            "kernel": normal(seed, (features, features)) * 0.5,
            "bias": normal(seed + 1, (features,)),
        },
        "norm": {
            "scale": 1.0 + 0.5 * normal(seed + 2, (features,)),
            "bias": normal(seed + 3, (features,)),
        },
    }


def test_residual_param_tree():
    block = Residual(nn.Dense(8), norm_position="pre")
    variables = block.init(jax.random.key(0), X)
    shapes = jax.tree.map(jnp.shape, nn.meta.unbox(variables))
    assert shapes == {
        "params": {
            "norm": {"bias": (8,), "scale": (8,)},
            "sublayer": {"bias": (8,), "kernel": (8, 8)},
        }
    }


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_residual_post_ln(transform):
    params = _residual_params(1)
    block = Residual(nn.Dense(8), norm_position="post")
    out = transform(block.apply)({"params": params}, X)
    chex.assert_shape(out, SHAPE)
    sub, norm = params["sublayer"], params["norm"]
    f_x = f64(X) @ f64(sub["kernel"]) + f64(sub["bias"])
    expected = layer_norm_ref(f64(X) + f_x, norm["scale"], norm["bias"])
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_residual_pre_ln(transform):
    params = _residual_params(2)
    block = Residual(nn.Dense(8), norm_position="pre")
    out = transform(block.apply)({"params": params}, X)
    chex.assert_shape(out, SHAPE)
    sub, norm = params["sublayer"], params["norm"]
    normed = layer_norm_ref(X, norm["scale"], norm["bias"])
    expected = f64(X) + normed @ f64(sub["kernel"]) + f64(sub["bias"])
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(
    "position, output_scale",
    [("reordered", None), ("pre", "layer_scale"), ("reordered", "layer_scalar")],
)
def test_residual_reordered_and_output_scales(transform, position, output_scale):
    """OLMo 2's y = x + norm(f(x)); LayerScale's x + gamma * branch; Gemma 4's
    layer_scalar * y."""
    params = _residual_params(2)
    if output_scale == "layer_scale":
        params["layer_scale"] = normal(7, (8,))
    elif output_scale == "layer_scalar":
        params["layer_scalar"] = jnp.array([0.75])
    block = Residual(nn.Dense(8), norm_position=position, output_scale=output_scale)
    out = transform(block.apply)({"params": params}, X)
    sub, norm = params["sublayer"], params["norm"]

    def f(x):
        return x @ f64(sub["kernel"]) + f64(sub["bias"])

    def n(x):
        return layer_norm_ref(x, norm["scale"], norm["bias"])

    x = f64(X)
    if position == "reordered":
        branch = n(f(x))
    else:
        branch = f(n(x))
    if output_scale == "layer_scale":
        branch = branch * f64(params["layer_scale"])
    expected = x + branch
    if output_scale == "layer_scalar":
        expected = 0.75 * expected
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)
    # The scales start at output_scale_init, with their shapes.
    if output_scale is not None:
        made = Residual(
            nn.Dense(8),
            norm_position=position,
            output_scale=output_scale,
            output_scale_init=1e-5,
        ).init(jax.random.key(0), X)["params"][output_scale]
        want = 1e-5 * np.ones(8 if output_scale == "layer_scale" else 1)
        np.testing.assert_allclose(nn.meta.unbox(made), want, rtol=1e-6)


def test_residual_default_is_post_ln():
    params = _residual_params(3)
    post = Residual(nn.Dense(8), norm_position="post").apply({"params": params}, X)
    default = Residual(nn.Dense(8)).apply({"params": params}, X)
    chex.assert_trees_all_close(default, post, atol=0.0)


def test_residual_custom_norm():
    block = Residual(nn.Dense(8), norm=RMSNorm(), norm_position="pre")
    variables = block.init(jax.random.key(0), X)
    params = nn.meta.unbox(variables)["params"]
    assert set(params["norm"]) == {"scale"}
    params = jax.tree.map(lambda p: p + 0.3, params)  # non-trivial values
    out = block.apply({"params": params}, X)
    sub = params["sublayer"]
    normed = rms_norm_ref(X, params["norm"]["scale"])
    expected = f64(X) + normed @ f64(sub["kernel"]) + f64(sub["bias"])
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


def test_residual_unknown_norm_position_raises():
    block = Residual(nn.Dense(8), norm_position="middle")
    with pytest.raises(ValueError, match="norm_position") as excinfo:
        block.init(jax.random.key(0), X)
    message = str(excinfo.value)
    for allowed in ("'post'", "'pre'", "'sandwich'", "'parallel'", "'middle'"):
        assert allowed in message


def _dense(params, x):
    return f64(x) @ f64(params["kernel"]) + f64(params["bias"])


def _bumped(block):
    variables = block.init(jax.random.key(0), X)
    params = nn.meta.unbox(variables)["params"]
    # non-trivial norm parameters, so that each norm's place matters
    return jax.tree.map(lambda p: p + 0.3, params)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_residual_sandwich(transform):
    block = Residual(
        nn.Dense(X.shape[-1]),
        norm=RMSNorm(),
        norm_position="sandwich",
        post_norm=RMSNorm(),
    )
    params = _bumped(block)
    assert sorted(params) == ["norm", "post_norm", "sublayer"]
    out = transform(block.apply)({"params": params}, X)
    inner = _dense(params["sublayer"], rms_norm_ref(X, params["norm"]["scale"]))
    expected = f64(X) + rms_norm_ref(inner, params["post_norm"]["scale"])
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("share_norm", [False, True], ids=["neox", "gptj"])
def test_residual_parallel(transform, share_norm):
    features = X.shape[-1]
    block = Residual(
        nn.Dense(features),
        norm_position="parallel",
        parallel=nn.Dense(features),
        share_norm=share_norm,
    )
    params = _bumped(block)
    expected_names = ["norm", "parallel", "sublayer"]
    if not share_norm:
        expected_names.insert(2, "parallel_norm")
    assert sorted(params) == expected_names
    out = transform(block.apply)({"params": params}, X)
    normed = layer_norm_ref(X, params["norm"]["scale"], params["norm"]["bias"])
    second = normed
    if not share_norm:
        p = params["parallel_norm"]
        second = layer_norm_ref(X, p["scale"], p["bias"])
    expected = (
        f64(X) + _dense(params["sublayer"], normed) + _dense(params["parallel"], second)
    )
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


def test_residual_parallel_needs_its_sublayer():
    with pytest.raises(ValueError, match="needs the second sublayer"):
        Residual(nn.Dense(8), norm_position="parallel").init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="needs norm_position='parallel'"):
        Residual(nn.Dense(8), parallel=nn.Dense(8)).init(jax.random.key(0), X)


class _WithExtras(nn.Module):
    """Returns ``(dense(x), x.sum(), deterministic)``: extra outputs."""

    @nn.compact
    def __call__(self, x, *, deterministic=None):
        return nn.Dense(x.shape[-1])(x), jnp.sum(x), deterministic


@pytest.mark.parametrize("norm_position", ["post", "pre", "sandwich"])
def test_residual_passes_deterministic_and_returns_extras(norm_position):
    block = Residual(_WithExtras(), norm_position=norm_position)
    variables = block.init(jax.random.key(0), X, deterministic=True)
    y, total, seen = block.apply(variables, X, deterministic=True)
    assert seen is True
    chex.assert_shape(y, X.shape)
    assert total.shape == ()
    # A sublayer without the keyword is called without it.
    plain = Residual(nn.Dense(X.shape[-1]), norm_position=norm_position)
    variables = plain.init(jax.random.key(0), X)
    chex.assert_shape(plain.apply(variables, X, deterministic=True), X.shape)


class _DenseWithExtras(nn.Module):
    """``Dense(x) + factor * other``: a sublayer that needs extra arguments."""

    @nn.compact
    def __call__(self, x, other, *, factor=1.0):
        return nn.Dense(x.shape[-1], name="dense")(x) + factor * other


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_residual_passes_extra_args_to_sublayer(transform, norm_position):
    block = Residual(_DenseWithExtras(), norm_position=norm_position)
    other = normal(9, SHAPE)
    variables = block.init(jax.random.key(0), X, other, factor=3.0)
    params = nn.meta.unbox(variables)["params"]
    params["norm"] = _residual_params(4)["norm"]

    def apply(v, x, o):
        return block.apply(v, x, o, factor=3.0)

    out = transform(apply)({"params": params}, X, other)
    dense = params["sublayer"]["dense"]
    norm = params["norm"]

    def f(h):
        return h @ f64(dense["kernel"]) + f64(dense["bias"]) + 3.0 * f64(other)

    if norm_position == "post":
        expected = layer_norm_ref(f64(X) + f(f64(X)), norm["scale"], norm["bias"])
    else:
        expected = f64(X) + f(layer_norm_ref(X, norm["scale"], norm["bias"]))
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_residual_dropout(transform):
    rate = 0.5
    params = _residual_params(5)
    block = Residual(nn.Dense(8), norm_position="pre", dropout_rate=rate)
    plain = Residual(nn.Dense(8), norm_position="pre")
    reference = plain.apply({"params": params}, X)
    update = f64(reference) - f64(X)  # f(norm(x)) without dropout

    def train(v, x, key):
        return block.apply(v, x, deterministic=False, rngs={"dropout": key})

    train = transform(train)
    out1 = train({"params": params}, X, jax.random.key(1))
    out2 = train({"params": params}, X, jax.random.key(2))
    assert not np.array_equal(np.asarray(out1), np.asarray(out2))
    for out in (out1, out2):
        dropped = np.asarray(out) == np.asarray(X)  # x + 0
        assert dropped.any()
        assert (~dropped).any()
        kept_update = f64(out)[~dropped] - f64(X)[~dropped]
        np.testing.assert_allclose(
            kept_update, update[~dropped] / (1.0 - rate), rtol=1e-4, atol=1e-5
        )

    def evaluate(v, x):
        return block.apply(v, x, deterministic=True)

    out = transform(evaluate)({"params": params}, X)
    chex.assert_trees_all_close(out, reference, atol=1e-6, rtol=1e-6)


def test_residual_dropout_needs_deterministic():
    block = Residual(nn.Dense(8), dropout_rate=0.5)
    with pytest.raises(ValueError, match="deterministic"):
        block.init(jax.random.key(0), X)


def test_residual_deterministic_field():
    params = _residual_params(6)
    block = Residual(nn.Dense(8), dropout_rate=0.5, deterministic=True)
    plain = Residual(nn.Dense(8))
    chex.assert_trees_all_close(
        block.apply({"params": params}, X),
        plain.apply({"params": params}, X),
        atol=0.0,
    )


def test_residual_deterministic_overridden_in_call():
    # The docstring: "deterministic: disable dropout; may be overridden in the
    # call." A call-time deterministic=False must then turn dropout on.
    params = _residual_params(7)
    block = Residual(
        nn.Dense(8), norm_position="pre", dropout_rate=0.5, deterministic=True
    )
    out = block.apply(
        {"params": params}, X, deterministic=False, rngs={"dropout": jax.random.key(1)}
    )
    assert (np.asarray(out) == np.asarray(X)).any()
