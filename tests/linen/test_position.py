"""Tests of the absolute position embedding modules (flax_posenc.linen.position)."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.sharding import PartitionSpec

from flax_posenc.linen import LearnedPositionEmbedding, SinusoidalPositionEmbedding
from tests.references import f64
from tests.references import paper_sinusoidal as sinusoid_ref

TRANSFORMS = [
    pytest.param(lambda f: f, id="eager"),
    pytest.param(jax.jit, id="jit"),
]


# -------------------------------------------------- SinusoidalPositionEmbedding


def test_sinusoidal_has_no_params():
    module = SinusoidalPositionEmbedding()
    variables = module.init(jax.random.key(0), jnp.zeros((2, 5, 8)))
    assert jax.tree.leaves(variables) == []
    assert "params" not in variables


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", ["interleaved", "halves"])
@pytest.mark.parametrize(("seq", "dim"), [(7, 16), (1, 8), (5, 2), (6, 7)])
def test_sinusoidal_default_positions_match_paper(transform, layout, seq, dim):
    module = SinusoidalPositionEmbedding(layout=layout)
    x = jnp.zeros((2, seq, dim))
    out = transform(module.apply)({}, x)
    chex.assert_shape(out, (2, seq, dim))
    chex.assert_type(out, jnp.float32)
    expected = sinusoid_ref(np.arange(seq), dim, layout=layout)
    chex.assert_trees_all_close(
        f64(out), np.broadcast_to(expected, out.shape), atol=1e-6
    )


def test_sinusoidal_known_values():
    # PE[1] for d=4: sin(1), cos(1), sin(1/100), cos(1/100).
    out = SinusoidalPositionEmbedding().apply({}, jnp.zeros((3, 4)))
    np.testing.assert_allclose(
        f64(out[1]),
        [np.sin(1.0), np.cos(1.0), np.sin(0.01), np.cos(0.01)],
        atol=1e-6,
    )
    np.testing.assert_allclose(f64(out[0]), [0.0, 1.0, 0.0, 1.0], atol=1e-7)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", ["interleaved", "halves"])
def test_sinusoidal_explicit_positions(transform, layout):
    module = SinusoidalPositionEmbedding(layout=layout)
    x = jnp.zeros((2, 3, 8))
    positions = jnp.array([[5, 6, 7], [0, 1, 2]])

    def apply(p):
        return module.apply({}, x, positions=p)

    out = transform(apply)(positions)
    chex.assert_shape(out, (2, 3, 8))
    expected = sinusoid_ref(positions, 8, layout=layout)
    chex.assert_trees_all_close(f64(out), expected, atol=1e-6)
    # Row 0 is really shifted: it differs from the default positions' output.
    assert not np.allclose(f64(out[0]), sinusoid_ref(np.arange(3), 8, layout=layout))


_HYP_MODULE = SinusoidalPositionEmbedding()
_HYP_X = jnp.zeros((2, 4, 12))
_HYP_APPLY = jax.jit(lambda p: _HYP_MODULE.apply({}, _HYP_X, positions=p))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 2**20 - 1), min_size=8, max_size=8))
def test_sinusoidal_accurate_at_long_context(positions):
    # DESIGN: every value within 1e-6 of float64 for positions below 2**20 under jit.
    positions = np.asarray(positions, dtype=np.int32).reshape(2, 4)
    out = _HYP_APPLY(jnp.asarray(positions))
    chex.assert_trees_all_close(f64(out), sinusoid_ref(positions, 12), atol=1e-6)


def test_sinusoidal_broadcasts_over_leading_axes():
    module = SinusoidalPositionEmbedding()
    x = jnp.zeros((2, 3, 4, 6))
    out = module.apply({}, x)
    chex.assert_shape(out, (2, 3, 4, 6))
    expected = np.broadcast_to(sinusoid_ref(np.arange(4), 6), (2, 3, 4, 6))
    chex.assert_trees_all_close(f64(out), expected, atol=1e-6)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_sinusoidal_features_field_overrides_x(transform):
    module = SinusoidalPositionEmbedding(features=10)
    x = jnp.zeros((2, 3, 4))
    out = transform(module.apply)({}, x)
    chex.assert_shape(out, (2, 3, 10))
    expected = np.broadcast_to(sinusoid_ref(np.arange(3), 10), (2, 3, 10))
    chex.assert_trees_all_close(f64(out), expected, atol=1e-6)


@pytest.mark.parametrize("positions_shape", [(2, 4), (5,), (2, 3, 1)])
def test_sinusoidal_positions_seq_mismatch_raises(positions_shape):
    x = jnp.zeros((2, 3, 8))
    positions = jnp.zeros(positions_shape, dtype=jnp.int32)
    with pytest.raises(ValueError, match="seq"):
        SinusoidalPositionEmbedding().apply({}, x, positions=positions)


def test_sinusoidal_rank_one_x_raises():
    with pytest.raises(ValueError, match="seq"):
        SinusoidalPositionEmbedding().apply({}, jnp.zeros((8,)))


def test_sinusoidal_unknown_layout_raises():
    with pytest.raises(ValueError, match="'interleaved', 'halves'"):
        SinusoidalPositionEmbedding(layout="pairs").apply({}, jnp.zeros((2, 3, 8)))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_sinusoidal_low_precision_dtype(dtype):
    module = SinusoidalPositionEmbedding(dtype=dtype)
    out = module.apply({}, jnp.zeros((2, 6, 8), dtype=jnp.bfloat16))
    chex.assert_type(out, dtype)
    chex.assert_shape(out, (2, 6, 8))
    expected = np.broadcast_to(sinusoid_ref(np.arange(6), 8), (2, 6, 8))
    chex.assert_trees_all_close(f64(out), expected, atol=8e-3)


# ----------------------------------------------------- LearnedPositionEmbedding

MAX_LENGTH = 6
FEATURES = 4


def _learned(**kwargs):
    module = LearnedPositionEmbedding(MAX_LENGTH, FEATURES, **kwargs)
    variables = module.init(jax.random.key(0), jnp.zeros((2, 3, FEATURES)))
    return module, variables


def _table(variables) -> np.ndarray:
    return f64(nn.meta.unbox(variables)["params"]["embedding"])


def test_learned_param_shape_and_axis_names():
    _, variables = _learned()
    params = nn.meta.unbox(variables)["params"]
    assert set(params) == {"embedding"}
    chex.assert_shape(params["embedding"], (MAX_LENGTH, FEATURES))
    chex.assert_type(params["embedding"], jnp.float32)
    assert variables["params"]["embedding"].names == ("position", "embed")
    spec = nn.get_partition_spec(variables)
    assert spec == {"params": {"embedding": PartitionSpec("position", "embed")}}
    # Not all zero: the default init is normal(0.02).
    assert np.abs(_table(variables)).max() > 0.0


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("seq", [1, 4, MAX_LENGTH])
def test_learned_default_positions_index_table(transform, seq):
    module, variables = _learned()
    x = jnp.zeros((2, seq, FEATURES))
    out = transform(module.apply)(variables, x)
    chex.assert_shape(out, (2, seq, FEATURES))
    expected = np.broadcast_to(_table(variables)[:seq], (2, seq, FEATURES))
    chex.assert_trees_all_close(f64(out), expected, atol=0.0, rtol=0.0)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_learned_explicit_positions_index_table(transform):
    module, variables = _learned()
    x = jnp.zeros((2, 3, FEATURES))
    positions = jnp.array([[5, 3, 0], [2, 2, 4]])

    def apply(v, p):
        return module.apply(v, x, positions=p)

    out = transform(apply)(variables, positions)
    expected = _table(variables)[np.asarray(positions)]
    chex.assert_trees_all_close(f64(out), expected, atol=0.0, rtol=0.0)


def test_learned_sequence_longer_than_max_length_raises():
    module, variables = _learned()
    with pytest.raises(ValueError, match="max_length") as excinfo:
        module.apply(variables, jnp.zeros((2, MAX_LENGTH + 3, FEATURES)))
    message = str(excinfo.value)
    assert str(MAX_LENGTH + 3) in message
    assert str(MAX_LENGTH) in message


def test_learned_positions_seq_mismatch_raises():
    module, variables = _learned()
    with pytest.raises(ValueError, match="seq"):
        module.apply(
            variables, jnp.zeros((2, 3, FEATURES)), positions=jnp.array([0, 1])
        )


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_learned_out_of_range_positions_give_nan(transform):
    module, variables = _learned()
    x = jnp.zeros((2, 3, FEATURES))
    positions = jnp.array([[0, MAX_LENGTH, 1], [-1, 2, MAX_LENGTH - 1]])

    def apply(v, p):
        return module.apply(v, x, positions=p)

    out = np.asarray(transform(apply)(variables, positions))
    bad = np.array([[False, True, False], [True, False, False]])
    assert np.isnan(out[bad]).all()
    table = _table(variables)
    chex.assert_trees_all_close(
        f64(out[~bad]), table[np.asarray(positions)[~bad]], atol=0.0, rtol=0.0
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_learned_checked_reports_out_of_range(transform):
    module = LearnedPositionEmbedding(MAX_LENGTH, FEATURES, checked=True)
    _, variables = _learned()
    x = jnp.zeros((1, 3, FEATURES))

    def apply(v, p):
        return module.apply(v, x, positions=p)

    checked = transform(checkify.checkify(apply))
    err, _ = checked(variables, jnp.array([[0, 1, MAX_LENGTH]]))
    assert err.get() is not None
    assert str(MAX_LENGTH) in err.get()
    with pytest.raises(checkify.JaxRuntimeError):
        err.throw()
    err, out = checked(variables, jnp.array([[0, 1, 2]]))
    assert err.get() is None
    chex.assert_trees_all_close(f64(out[0]), _table(variables)[:3], atol=0.0)


@pytest.mark.parametrize(
    ("param_dtype", "dtype", "out_dtype"),
    [
        (jnp.bfloat16, None, jnp.bfloat16),
        (jnp.float16, None, jnp.float16),
        (jnp.float32, jnp.bfloat16, jnp.bfloat16),
    ],
)
def test_learned_dtypes(param_dtype, dtype, out_dtype):
    module = LearnedPositionEmbedding(
        MAX_LENGTH, FEATURES, dtype=dtype, param_dtype=param_dtype
    )
    variables = module.init(jax.random.key(0), jnp.zeros((1, 3, FEATURES)))
    chex.assert_type(nn.meta.unbox(variables)["params"]["embedding"], param_dtype)
    out = module.apply(variables, jnp.zeros((1, 3, FEATURES)))
    chex.assert_type(out, out_dtype)
    chex.assert_trees_all_close(
        f64(out[0]), _table(variables)[:3], atol=1e-3, rtol=1e-2
    )


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"max_length": 0, "features": 8}, ValueError, "max_length"),
        ({"max_length": 16, "features": 0}, ValueError, "features"),
        ({"max_length": 16.0, "features": 8}, TypeError, "max_length"),
    ],
)
def test_learned_bad_sizes_raise(fields, error, match):
    with pytest.raises(error, match=match):
        LearnedPositionEmbedding(**fields).init(jax.random.key(0), jnp.ones((2, 4, 8)))
