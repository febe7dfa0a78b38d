"""embedding_lookup and embedding_attend: values and the out-of-range policy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import flax_posenc as fp

TABLE = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_lookup_rows(transform):
    ids = np.array([[0, 6, 3], [3, 3, 1]])
    ours = transform(fp.embedding_lookup)(TABLE, ids)
    chex.assert_shape(ours, (2, 3, 5))
    np.testing.assert_array_equal(ours, TABLE[ids])


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_out_of_range_ids_give_nan_rows(transform):
    ids = np.array([-1, 2, 7, 100, 0])
    ours = np.asarray(transform(fp.embedding_lookup)(TABLE, ids))
    assert np.isnan(ours[[0, 2, 3]]).all()
    np.testing.assert_array_equal(ours[[1, 4]], TABLE[[2, 0]])


def test_checked_mode_reports_out_of_range():
    f = checkify.checkify(jax.jit(lambda t, i: fp.embedding_lookup(t, i, checked=True)))
    err, _ = f(TABLE, jnp.array([0, 7]))
    assert err.get() is not None and "[0, 7)" in err.get()
    with pytest.raises(checkify.JaxRuntimeError, match="max 7"):
        err.throw()
    err, out = f(TABLE, jnp.array([0, 6]))
    assert err.get() is None
    np.testing.assert_array_equal(out, TABLE[[0, 6]])


def test_lookup_gradient_scatters_into_rows():
    ids = jnp.array([1, 1, 4])
    grad = jax.grad(lambda t: fp.embedding_lookup(t, ids).sum())(jnp.asarray(TABLE))
    expected = np.zeros_like(TABLE)
    expected[1] = 2.0
    expected[4] = 1.0
    np.testing.assert_array_equal(grad, expected)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_lookup_keeps_table_dtype(dtype):
    ours = fp.embedding_lookup(jnp.asarray(TABLE, dtype), jnp.array([1, 9]))
    chex.assert_type(ours, dtype)
    assert np.isnan(np.asarray(ours[1], np.float32)).all()


def test_attend():
    query = np.random.default_rng(1).normal(size=(2, 3, 5))
    ours = fp.embedding_attend(query.astype(np.float32), TABLE)
    expected = query @ TABLE.astype(np.float64).T
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: fp.embedding_lookup(TABLE, jnp.array([0.0])), TypeError, "ids must"),
        (lambda: fp.embedding_lookup(TABLE[0], jnp.array([0])), ValueError, "table"),
        (
            lambda: fp.embedding_lookup(jnp.arange(4).reshape(2, 2), jnp.array([0])),
            TypeError,
            "table must have a floating",
        ),
        (lambda: fp.embedding_attend(np.ones(4), TABLE), ValueError, "share"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
