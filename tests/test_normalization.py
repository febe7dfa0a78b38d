"""layer_norm and rms_norm: values, gradients, stability, dtypes, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from tests import references

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 5, 16)).astype(np.float32) * 3 + 1
SCALE = RNG.normal(size=16).astype(np.float32)
BIAS = RNG.normal(size=16).astype(np.float32)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_layer_norm_values(transform):
    ours = transform(lambda x, s, b: fp.layer_norm(x, s, b))(X, SCALE, BIAS)
    chex.assert_type(ours, jnp.float32)
    np.testing.assert_allclose(
        ours, references.layer_norm(X, SCALE, BIAS), atol=2e-6, rtol=1e-6
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("unit_offset", [False, True])
def test_rms_norm_values(transform, unit_offset):
    ours = transform(lambda x, s: fp.rms_norm(x, s, unit_offset=unit_offset))(X, SCALE)
    expected = references.rms_norm(X, SCALE, unit_offset=unit_offset)
    np.testing.assert_allclose(ours, expected, atol=2e-6, rtol=1e-6)


def test_no_scale_no_bias_and_eps():
    np.testing.assert_allclose(
        fp.layer_norm(X, eps=0.5), references.layer_norm(X, eps=0.5), atol=2e-6
    )
    np.testing.assert_allclose(
        fp.rms_norm(X, eps=0.5), references.rms_norm(X, eps=0.5), atol=2e-6
    )


@pytest.mark.parametrize("axis", [0, 1, (1, 2), (-1, 0)])
def test_other_axes(axis):
    axes = tuple(sorted(a % 3 for a in ((axis,) if isinstance(axis, int) else axis)))
    shape = tuple(X.shape[a] for a in axes)
    scale = RNG.normal(size=shape).astype(np.float32)
    bshape = [X.shape[a] if a in axes else 1 for a in range(3)]
    expected = references.layer_norm(X, scale.reshape(bshape), axis=axes)
    np.testing.assert_allclose(
        fp.layer_norm(X, scale, axis=axis), expected, atol=3e-6, rtol=1e-6
    )
    expected = references.rms_norm(X, scale.reshape(bshape), axis=axes)
    np.testing.assert_allclose(
        fp.rms_norm(X, scale, axis=axis), expected, atol=3e-6, rtol=1e-6
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_layer_norm_stable_far_from_zero_mean(transform):
    # DESIGN.md: on 1e4 + N(0, 1) in float32, within 1e-3 of float64 (the
    # one-pass E[x^2] - E[x]^2 formula is off by ~3.8e3 here).
    x = (1e4 + np.random.default_rng(1).normal(size=(8, 1024))).astype(np.float32)
    ours = transform(fp.layer_norm)(x)
    assert np.abs(np.asarray(ours, np.float64) - references.layer_norm(x)).max() < 1e-3


def test_fast_variance_formula_fails_there():
    # Shows the test above can fail: the one-pass formula in float32.
    x = jnp.asarray(1e4 + np.random.default_rng(1).normal(size=(8, 1024)), jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.maximum((x * x).mean(-1, keepdims=True) - mean**2, 0.0)
    fast = (x - mean) * jax.lax.rsqrt(var + 1e-6)
    assert np.abs(np.asarray(fast, np.float64) - references.layer_norm(x)).max() > 1.0


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs(dtype, transform):
    x = jnp.asarray(X, dtype)
    layer_norm, rms_norm = transform(fp.layer_norm), transform(fp.rms_norm)
    for ours, expected in [
        (layer_norm(x, SCALE, BIAS), references.layer_norm(x, SCALE, BIAS)),
        (rms_norm(x, SCALE), references.rms_norm(x, SCALE)),
    ]:
        chex.assert_type(ours, dtype)
        # One rounding to the output dtype: relative 2**-8 (bf16), 2**-11 (f16).
        rtol = 2**-8 if dtype == jnp.bfloat16 else 2**-11
        np.testing.assert_allclose(
            np.asarray(ours, np.float64), expected, rtol=rtol, atol=rtol
        )


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(("dtype", "big"), [(jnp.bfloat16, 1e15), (jnp.float16, 4e4)])
def test_large_low_precision_inputs(dtype, big, transform):
    # Squares of these overflow bf16/f16 arithmetic but not float32 statistics.
    x = jnp.asarray(np.linspace(-big, big, 64).reshape(2, 32) + big / 4, dtype)
    for y, expected in [
        (transform(fp.layer_norm)(x), references.layer_norm(x)),
        (transform(fp.rms_norm)(x), references.rms_norm(x)),
    ]:
        chex.assert_type(y, dtype)
        assert np.isfinite(np.asarray(y, np.float32)).all()
        np.testing.assert_allclose(
            np.asarray(y, np.float64), expected, rtol=2**-7, atol=2**-7
        )


def test_output_dtype_argument():
    chex.assert_type(fp.layer_norm(X, dtype=jnp.bfloat16), jnp.bfloat16)
    chex.assert_type(
        fp.rms_norm(jnp.asarray(X, jnp.bfloat16), dtype=jnp.float32), jnp.float32
    )


def test_constant_input_gives_zero_not_nan():
    y = fp.layer_norm(jnp.full((2, 8), 3.0))
    np.testing.assert_array_equal(y, np.zeros((2, 8)))
    np.testing.assert_array_equal(fp.rms_norm(jnp.zeros((2, 8))), np.zeros((2, 8)))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_layer_norm_gradients(transform):
    upstream = RNG.normal(size=X.shape).astype(np.float32)

    def loss(x, s, b):
        return jnp.sum(upstream * fp.layer_norm(x, s, b))

    dx, ds, db = transform(jax.grad(loss, argnums=(0, 1, 2)))(X, SCALE, BIAS)
    np.testing.assert_allclose(
        dx, references.layer_norm_input_grad(X, SCALE, upstream), atol=1e-5, rtol=1e-4
    )
    xhat = references.layer_norm(X)
    np.testing.assert_allclose(ds, (upstream * xhat).sum((0, 1)), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(db, upstream.sum((0, 1)), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_rms_norm_gradients(transform):
    upstream = RNG.normal(size=X.shape).astype(np.float32)

    def loss(x, s):
        return jnp.sum(upstream * fp.rms_norm(x, s))

    dx, ds = transform(jax.grad(loss, argnums=(0, 1)))(X, SCALE)
    np.testing.assert_allclose(
        dx, references.rms_norm_input_grad(X, SCALE, upstream), atol=1e-5, rtol=1e-4
    )
    np.testing.assert_allclose(
        ds, (upstream * references.rms_norm(X)).sum((0, 1)), atol=1e-4, rtol=1e-5
    )


def test_stable_gradient_far_from_zero_mean():
    x = (1e4 + np.random.default_rng(2).normal(size=(4, 256))).astype(np.float32)
    upstream = np.random.default_rng(3).normal(size=x.shape)
    ones = np.ones(256, np.float32)
    dx = jax.grad(lambda x: jnp.sum(upstream * fp.layer_norm(x)))(x)
    expected = references.layer_norm_input_grad(x, ones, upstream)
    np.testing.assert_allclose(dx, expected, atol=1e-3)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_feature_axes_give_each_slice_its_own_parameters(transform):
    """axis=-1 with feature_axes=(-2, -1): each of X's 5 rows normalized over
    its 16 features, with a scale and bias of its own (StableLM 2's and
    Command R+'s LayerNorm of each head)."""
    scale, bias = RNG.normal(size=(2, 5, 16)).astype(np.float32)
    ours = transform(
        lambda x, s, b: fp.layer_norm(x, s, b, feature_axes=(-2, -1), eps=1e-5)
    )(X, scale, bias)
    want = references.layer_norm(X, scale, bias, eps=1e-5)
    np.testing.assert_allclose(ours, want, atol=3e-6, rtol=1e-6)
    ours = transform(lambda x, s: fp.rms_norm(x, s, feature_axes=(1, 2)))(X, scale)
    np.testing.assert_allclose(
        ours, references.rms_norm(X, scale), atol=3e-6, rtol=1e-6
    )
    # Feature axes need not include the normalized one: a scale per row.
    row = scale[:, :1]  # [5, 1] -> [5]
    ours = fp.layer_norm(X, row[:, 0], feature_axes=1)
    want = references.layer_norm(X, row)
    np.testing.assert_allclose(ours, want, atol=3e-6, rtol=1e-6)


def test_vmap_equals_batch():
    batched = jax.vmap(lambda x: fp.layer_norm(x, SCALE, BIAS))(X)
    np.testing.assert_allclose(batched, fp.layer_norm(X, SCALE, BIAS), atol=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: fp.layer_norm(jnp.arange(4)), TypeError, "x must have a floating"),
        (lambda: fp.layer_norm(X, axis=3), ValueError, "axis 3 is out of range"),
        (lambda: fp.layer_norm(X, axis=(1, -2)), ValueError, "repeated"),
        (lambda: fp.layer_norm(X, axis=()), ValueError, "at least one axis"),
        (lambda: fp.layer_norm(X, eps=-1.0), ValueError, "eps must be >= 0"),
        (
            lambda: fp.layer_norm(X, np.ones(5)),
            ValueError,
            r"scale must have .*\(16,\)",
        ),
        (lambda: fp.layer_norm(X, bias=np.ones(3)), ValueError, "bias must have"),
        (
            lambda: fp.layer_norm(X, np.ones(16), feature_axes=(1, 2)),
            ValueError,
            r"scale must have the shape of the feature axes \(1, 2\) .*\(5, 16\)",
        ),
        (
            lambda: fp.rms_norm(X, np.ones(16), feature_axes=3),
            ValueError,
            "feature_axes 3 is out of range",
        ),
        (lambda: fp.rms_norm(X, unit_offset=True), ValueError, "pass a scale"),
        (lambda: fp.rms_norm(X, dtype=jnp.int8), TypeError, "dtype must be a floating"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_forward_mode_matches_finite_differences():
    # Forward mode (jvp) and second derivatives work, and the tangent equals a
    # float64 central difference of the reference.
    x = X[0].astype(np.float64)
    v = np.random.default_rng(4).normal(size=x.shape)
    h = 1e-6
    expected = (
        references.layer_norm(x + h * v, SCALE)
        - references.layer_norm(x - h * v, SCALE)
    ) / (2 * h)
    _, tangent = jax.jvp(
        lambda x: fp.layer_norm(x, SCALE), (X[0],), (v.astype(np.float32),)
    )
    np.testing.assert_allclose(tangent, expected, atol=1e-4, rtol=1e-4)
    hessian_diag = jax.jacfwd(jax.grad(lambda x: fp.layer_norm(x)[0, 0] ** 2))(X[0])
    assert np.isfinite(np.asarray(hessian_diag)).all()
