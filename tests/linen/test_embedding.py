"""Tests of the token and input embedding modules (flax_posenc.linen.embedding)."""

from __future__ import annotations

import math

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

from flax_posenc.linen import (
    InputEmbedding,
    LayerNorm,
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    TokenEmbedding,
    pretrained_init,
)
from tests.references import f64, normal
from tests.references import layer_norm as layer_norm_ref
from tests.references import paper_sinusoidal as sinusoid_ref

TRANSFORMS = [
    pytest.param(lambda f: f, id="eager"),
    pytest.param(jax.jit, id="jit"),
]

VOCAB = 10
FEATURES = 8
IDS = jnp.array([[1, 2, 3, 9], [0, 0, 7, 4]])


def token_table(variables) -> np.ndarray:
    return f64(nn.meta.unbox(variables)["params"]["embedding"])


def init_tokens(module: TokenEmbedding, ids=IDS):
    return module.init(jax.random.key(0), ids)


# --------------------------------------------------------------- TokenEmbedding


def test_token_embedding_param_shape_and_axis_names():
    variables = init_tokens(TokenEmbedding(VOCAB, FEATURES))
    params = nn.meta.unbox(variables)["params"]
    assert set(params) == {"embedding"}
    chex.assert_shape(params["embedding"], (VOCAB, FEATURES))
    chex.assert_type(params["embedding"], jnp.float32)
    boxed = variables["params"]["embedding"]
    assert isinstance(boxed, nn.LogicallyPartitioned)
    assert boxed.names == ("vocab", "embed")
    spec = nn.get_partition_spec(variables)
    assert spec == {"params": {"embedding": PartitionSpec("vocab", "embed")}}


def test_token_embedding_custom_axis_names():
    module = TokenEmbedding(VOCAB, FEATURES, embedding_axes=("tok", None))
    spec = nn.get_partition_spec(init_tokens(module))
    assert spec["params"]["embedding"] == PartitionSpec("tok", None)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_token_embedding_values_are_table_rows(transform):
    module = TokenEmbedding(VOCAB, FEATURES)
    variables = init_tokens(module)
    out = transform(module.apply)(variables, IDS)
    chex.assert_shape(out, (2, 4, FEATURES))
    chex.assert_type(out, jnp.float32)
    expected = token_table(variables)[np.asarray(IDS)]
    chex.assert_trees_all_close(f64(out), expected, atol=0.0, rtol=0.0)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_token_embedding_scale_by_sqrt_features(transform):
    module = TokenEmbedding(VOCAB, FEATURES, scale_by_sqrt_features=True)
    variables = init_tokens(module)
    out = transform(module.apply)(variables, IDS)
    expected = token_table(variables)[np.asarray(IDS)] * math.sqrt(FEATURES)
    chex.assert_trees_all_close(f64(out), expected, atol=1e-6, rtol=1e-6)
    # The scaling is real: unscaled rows differ from scaled ones.
    assert not np.allclose(expected, token_table(variables)[np.asarray(IDS)])


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_token_embedding_attend_is_query_times_table_transposed(transform):
    module = TokenEmbedding(VOCAB, FEATURES)
    variables = init_tokens(module)
    query = normal(1, (2, 3, FEATURES))

    def attend(v, q):
        return module.apply(v, q, method=TokenEmbedding.attend)

    logits = transform(attend)(variables, query)
    chex.assert_shape(logits, (2, 3, VOCAB))
    chex.assert_type(logits, jnp.float32)
    expected = f64(query) @ token_table(variables).T
    chex.assert_trees_all_close(f64(logits), expected, atol=1e-5, rtol=1e-5)


def test_pretrained_init_gives_exactly_the_array():
    array = np.asarray(normal(3, (VOCAB, FEATURES)))
    module = TokenEmbedding(VOCAB, FEATURES, embedding_init=pretrained_init(array))
    variables = init_tokens(module)
    table = nn.meta.unbox(variables)["params"]["embedding"]
    chex.assert_type(table, jnp.float32)
    np.testing.assert_array_equal(np.asarray(table), array)
    out = module.apply(variables, IDS)
    np.testing.assert_array_equal(np.asarray(out), array[np.asarray(IDS)])


def test_pretrained_init_casts_to_param_dtype():
    array = np.arange(VOCAB * FEATURES, dtype=np.float32).reshape(VOCAB, FEATURES)
    module = TokenEmbedding(
        VOCAB,
        FEATURES,
        param_dtype=jnp.bfloat16,
        embedding_init=pretrained_init(array),
    )
    table = nn.meta.unbox(init_tokens(module))["params"]["embedding"]
    chex.assert_type(table, jnp.bfloat16)
    # Small integers are exact in bfloat16.
    np.testing.assert_array_equal(f64(table), array.astype(np.float64))


@pytest.mark.parametrize("shape", [(VOCAB + 1, FEATURES), (VOCAB, FEATURES - 1)])
def test_pretrained_init_shape_mismatch_raises(shape):
    array = np.zeros(shape, dtype=np.float32)
    module = TokenEmbedding(VOCAB, FEATURES, embedding_init=pretrained_init(array))
    with pytest.raises(ValueError, match="shape"):
        init_tokens(module)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_token_embedding_out_of_range_ids_give_nan_rows(transform):
    module = TokenEmbedding(VOCAB, FEATURES)
    variables = init_tokens(module)
    ids = jnp.array([[-1, 0, VOCAB - 1, VOCAB], [3, VOCAB + 5, -7, 2]])
    out = np.asarray(transform(module.apply)(variables, ids))
    bad = np.array([[True, False, False, True], [False, True, True, False]])
    assert np.isnan(out[bad]).all()
    # -1 must not silently read the last row, nor VOCAB the first/last.
    valid = out[~bad]
    assert np.isfinite(valid).all()
    table = token_table(variables)
    chex.assert_trees_all_close(
        f64(valid), table[np.asarray(ids)[~bad]], atol=0.0, rtol=0.0
    )


def _checked_tokens():
    module = TokenEmbedding(VOCAB, FEATURES, checked=True)
    variables = init_tokens(TokenEmbedding(VOCAB, FEATURES))
    return module, variables


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("bad_id", [-1, VOCAB])
def test_token_embedding_checked_reports_out_of_range(transform, bad_id):
    module, variables = _checked_tokens()
    checked_apply = transform(checkify.checkify(module.apply))
    err, out = checked_apply(variables, jnp.array([[0, bad_id, 2]]))
    chex.assert_shape(out, (1, 3, FEATURES))
    assert err.get() is not None
    assert str(VOCAB) in err.get()
    with pytest.raises(checkify.JaxRuntimeError):
        err.throw()


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_token_embedding_checked_valid_ids_no_error(transform):
    module, variables = _checked_tokens()
    checked_apply = transform(checkify.checkify(module.apply))
    err, out = checked_apply(variables, IDS)
    assert err.get() is None
    err.throw()  # no error: must not raise
    expected = token_table(variables)[np.asarray(IDS)]
    chex.assert_trees_all_close(f64(out), expected, atol=0.0, rtol=0.0)


@pytest.mark.parametrize(
    ("param_dtype", "dtype", "out_dtype"),
    [
        (jnp.float32, None, jnp.float32),
        (jnp.bfloat16, None, jnp.bfloat16),
        (jnp.float16, None, jnp.float16),
        (jnp.float32, jnp.bfloat16, jnp.bfloat16),
        (jnp.float32, jnp.float16, jnp.float16),
        (jnp.bfloat16, jnp.float32, jnp.float32),
    ],
)
def test_token_embedding_dtypes(param_dtype, dtype, out_dtype):
    module = TokenEmbedding(VOCAB, FEATURES, dtype=dtype, param_dtype=param_dtype)
    variables = init_tokens(module)
    table = nn.meta.unbox(variables)["params"]["embedding"]
    chex.assert_type(table, param_dtype)
    out = module.apply(variables, IDS)
    chex.assert_type(out, out_dtype)
    expected = f64(table)[np.asarray(IDS)]
    tol = 1e-2 if jnp.dtype(out_dtype).itemsize == 2 else 0.0
    chex.assert_trees_all_close(f64(out), expected, atol=tol, rtol=tol)
    logits = module.apply(variables, jnp.ones((2, FEATURES)), method="attend")
    chex.assert_type(logits, out_dtype)
    chex.assert_shape(logits, (2, VOCAB))


def test_token_embedding_rejects_bad_sizes():
    with pytest.raises(ValueError, match="vocab_size"):
        TokenEmbedding(0, FEATURES).init(jax.random.key(0), IDS)
    with pytest.raises(ValueError, match="features"):
        TokenEmbedding(VOCAB, 0).init(jax.random.key(0), IDS)


_HYP_MODULE = TokenEmbedding(VOCAB, FEATURES)
_HYP_VARIABLES = init_tokens(_HYP_MODULE)
_HYP_APPLY = jax.jit(_HYP_MODULE.apply)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-3, VOCAB + 2), min_size=6, max_size=6))
def test_token_embedding_rows_property(ids):
    ids = np.asarray(ids, dtype=np.int32).reshape(2, 3)
    out = np.asarray(_HYP_APPLY(_HYP_VARIABLES, jnp.asarray(ids)))
    table = token_table(_HYP_VARIABLES)
    for index in np.ndindex(ids.shape):
        if 0 <= ids[index] < VOCAB:
            np.testing.assert_array_equal(out[index], table[ids[index]])
        else:
            assert np.isnan(out[index]).all()


# --------------------------------------------------------------- InputEmbedding


def _params(variables):
    return nn.meta.unbox(variables)["params"]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_input_embedding_add_learned(transform):
    module = InputEmbedding(
        VOCAB, FEATURES, position=LearnedPositionEmbedding(16, FEATURES)
    )
    variables = module.init(jax.random.key(0), IDS)
    params = _params(variables)
    assert set(params) == {"token", "position"}
    out = transform(module.apply)(variables, IDS)
    chex.assert_shape(out, (2, 4, FEATURES))
    tok = f64(params["token"]["embedding"])[np.asarray(IDS)]
    pos = f64(params["position"]["embedding"])[np.arange(4)]
    chex.assert_trees_all_close(f64(out), tok + pos[None], atol=1e-6, rtol=0.0)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_input_embedding_add_sinusoidal_with_positions_and_scale(transform):
    module = InputEmbedding(
        VOCAB,
        FEATURES,
        position=SinusoidalPositionEmbedding(),
        scale_by_sqrt_features=True,
    )
    variables = module.init(jax.random.key(0), IDS)
    positions = jnp.array([[5, 6, 7, 8], [0, 1, 2, 3]])

    def apply(v, ids, p):
        return module.apply(v, ids, positions=p)

    out = transform(apply)(variables, IDS, positions)
    tok = f64(_params(variables)["token"]["embedding"])[np.asarray(IDS)]
    # Only the tokens are scaled, not the positions.
    expected = tok * math.sqrt(FEATURES) + sinusoid_ref(positions, FEATURES)
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=0.0)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_input_embedding_concat(transform):
    pos_features = 3
    module = InputEmbedding(
        VOCAB,
        FEATURES,
        position=LearnedPositionEmbedding(16, pos_features),
        combine="concat",
    )
    variables = module.init(jax.random.key(0), IDS)
    params = _params(variables)
    out = transform(module.apply)(variables, IDS)
    chex.assert_shape(out, (2, 4, FEATURES + pos_features))
    tok = f64(params["token"]["embedding"])[np.asarray(IDS)]
    pos = f64(params["position"]["embedding"])[np.arange(4)]
    chex.assert_trees_all_close(f64(out[..., :FEATURES]), tok, atol=0.0, rtol=0.0)
    chex.assert_trees_all_close(
        f64(out[..., FEATURES:]), np.broadcast_to(pos, (2, 4, 3)), atol=0.0, rtol=0.0
    )


def test_input_embedding_concat_broadcasts_unbatched_positions():
    module = InputEmbedding(
        VOCAB,
        FEATURES,
        position=SinusoidalPositionEmbedding(features=4),
        combine="concat",
    )
    variables = module.init(jax.random.key(0), IDS)
    positions = jnp.array([3, 4, 5, 6])  # [seq], shared by both rows
    out = module.apply(variables, IDS, positions=positions)
    chex.assert_shape(out, (2, 4, FEATURES + 4))
    expected = np.broadcast_to(sinusoid_ref(positions, 4), (2, 4, 4))
    chex.assert_trees_all_close(f64(out[..., FEATURES:]), expected, atol=1e-6)


def test_input_embedding_add_mismatched_features_raises():
    module = InputEmbedding(
        VOCAB, FEATURES, position=SinusoidalPositionEmbedding(features=FEATURES - 2)
    )
    with pytest.raises(ValueError, match="concat") as excinfo:
        module.init(jax.random.key(0), IDS)
    assert str(FEATURES) in str(excinfo.value)
    assert str(FEATURES - 2) in str(excinfo.value)


@pytest.mark.parametrize("position", [None, SinusoidalPositionEmbedding()])
def test_input_embedding_unknown_combine_raises(position):
    module = InputEmbedding(VOCAB, FEATURES, position=position, combine="sum")
    with pytest.raises(ValueError, match="combine") as excinfo:
        module.init(jax.random.key(0), IDS)
    message = str(excinfo.value)
    assert "'add'" in message
    assert "'concat'" in message
    assert "'sum'" in message


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_input_embedding_without_position_is_token_embedding(transform):
    module = InputEmbedding(VOCAB, FEATURES)
    variables = module.init(jax.random.key(0), IDS)
    assert set(_params(variables)) == {"token"}
    out = transform(module.apply)(variables, IDS)
    tok = f64(_params(variables)["token"]["embedding"])[np.asarray(IDS)]
    chex.assert_trees_all_close(f64(out), tok, atol=0.0, rtol=0.0)


def _dropout_setup(rate: float = 0.5):
    position = LearnedPositionEmbedding(16, FEATURES)
    module = InputEmbedding(VOCAB, FEATURES, position=position, dropout_rate=rate)
    plain = InputEmbedding(VOCAB, FEATURES, position=position)
    variables = plain.init(jax.random.key(0), IDS)
    return module, plain, variables


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_input_embedding_dropout(transform):
    rate = 0.5
    module, plain, variables = _dropout_setup(rate)
    reference = np.asarray(plain.apply(variables, IDS))

    def train(v, ids, key):
        return module.apply(v, ids, deterministic=False, rngs={"dropout": key})

    train = transform(train)
    out1 = np.asarray(train(variables, IDS, jax.random.key(1)))
    out2 = np.asarray(train(variables, IDS, jax.random.key(2)))
    assert not np.array_equal(out1, out2)
    for out in (out1, out2):
        dropped = out == 0.0
        assert dropped.any()
        assert (~dropped).any()
        # Inverted dropout: kept entries are scaled by 1 / (1 - rate).
        np.testing.assert_allclose(
            out[~dropped], reference[~dropped] / (1.0 - rate), rtol=1e-6, atol=1e-7
        )

    def evaluate(v, ids):
        return module.apply(v, ids, deterministic=True)

    out = transform(evaluate)(variables, IDS)
    chex.assert_trees_all_close(np.asarray(out), reference, atol=1e-6, rtol=1e-6)


def test_input_embedding_dropout_needs_deterministic():
    module, _, variables = _dropout_setup()
    with pytest.raises(ValueError, match="deterministic"):
        module.apply(variables, IDS)


def test_input_embedding_deterministic_field():
    _, plain, variables = _dropout_setup()
    module = InputEmbedding(
        VOCAB,
        FEATURES,
        position=LearnedPositionEmbedding(16, FEATURES),
        dropout_rate=0.5,
        deterministic=True,
    )
    out = module.apply(variables, IDS)
    chex.assert_trees_all_close(out, plain.apply(variables, IDS), atol=0.0)


def test_input_embedding_deterministic_overridden_in_call():
    # The docstring: "deterministic: disable dropout; may be overridden in the
    # call." A call-time deterministic=False must then turn dropout on.
    _, plain, variables = _dropout_setup()
    module = InputEmbedding(
        VOCAB,
        FEATURES,
        position=LearnedPositionEmbedding(16, FEATURES),
        dropout_rate=0.5,
        deterministic=True,
    )
    out = module.apply(
        variables, IDS, deterministic=False, rngs={"dropout": jax.random.key(1)}
    )
    assert (np.asarray(out) == 0.0).any()
    assert not np.array_equal(np.asarray(out), np.asarray(plain.apply(variables, IDS)))


def test_input_embedding_checked_reports_out_of_range():
    module = InputEmbedding(
        VOCAB,
        FEATURES,
        position=LearnedPositionEmbedding(16, FEATURES),
        checked=True,
    )
    variables = InputEmbedding(
        VOCAB, FEATURES, position=LearnedPositionEmbedding(16, FEATURES)
    ).init(jax.random.key(0), IDS)
    err, _ = checkify.checkify(module.apply)(variables, jnp.array([[0, VOCAB]]))
    assert err.get() is not None
    err, _ = checkify.checkify(module.apply)(variables, IDS)
    assert err.get() is None


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_input_embedding_low_precision_dtype(dtype):
    module = InputEmbedding(
        VOCAB,
        FEATURES,
        position=SinusoidalPositionEmbedding(),
        dtype=dtype,
    )
    variables = module.init(jax.random.key(0), IDS)
    chex.assert_type(_params(variables)["token"]["embedding"], jnp.float32)
    out = module.apply(variables, IDS)
    chex.assert_type(out, dtype)
    tok = f64(_params(variables)["token"]["embedding"])[np.asarray(IDS)]
    expected = tok + sinusoid_ref(np.arange(4), FEATURES)
    chex.assert_trees_all_close(f64(out), expected, atol=2e-2, rtol=1e-2)


def test_input_embedding_token_axis_names():
    default = nn.get_partition_spec(
        InputEmbedding(VOCAB, FEATURES).init(jax.random.key(0), IDS)
    )
    assert default["params"]["token"]["embedding"] == PartitionSpec("vocab", "embed")
    custom = InputEmbedding(VOCAB, FEATURES, embedding_axes=("tok", None))
    spec = nn.get_partition_spec(custom.init(jax.random.key(0), IDS))
    assert spec["params"]["token"]["embedding"] == PartitionSpec("tok", None)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_input_embedding_bert_token_types_and_norm(transform):
    """BERT: LayerNorm(token + position + token_type[types])."""
    module = InputEmbedding(
        VOCAB,
        FEATURES,
        position=LearnedPositionEmbedding(16, FEATURES),
        num_token_types=2,
        norm=LayerNorm(),
    )
    types = jnp.array([[0, 0, 1, 1], [0, 1, 1, 1]])
    variables = module.init(jax.random.key(0), IDS)
    params = _params(variables)
    assert set(params) == {"token", "position", "token_type", "norm"}
    assert params["token_type"]["embedding"].shape == (2, FEATURES)
    names = nn.get_partition_spec(variables)["params"]
    assert tuple(names["token_type"]["embedding"]) == (None, "embed")
    params = jax.tree.map(lambda p: p + 0.25, params)  # non-trivial norm
    out = transform(lambda p, i, t: module.apply({"params": p}, i, token_types=t))(
        params, IDS, types
    )
    summed = (
        f64(params["token"]["embedding"])[np.asarray(IDS)]
        + f64(params["position"]["embedding"])[np.arange(4)][None]
        + f64(params["token_type"]["embedding"])[np.asarray(types)]
    )
    expected = layer_norm_ref(summed, params["norm"]["scale"], params["norm"]["bias"])
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5, rtol=0.0)
    # Default token types are 0.
    default = module.apply({"params": params}, IDS)
    zeros = module.apply({"params": params}, IDS, token_types=jnp.zeros_like(IDS))
    chex.assert_trees_all_close(default, zeros, atol=0.0)


def test_input_embedding_attend_is_tied_to_the_token_table():
    module = InputEmbedding(VOCAB, FEATURES, norm=LayerNorm())
    variables = module.init(jax.random.key(0), IDS)
    query = jnp.ones((2, 3, FEATURES))
    logits = module.apply(variables, query, method="attend")
    table = f64(_params(variables)["token"]["embedding"])
    chex.assert_trees_all_close(f64(logits), f64(query) @ table.T, atol=1e-5)


def test_input_embedding_token_type_errors():
    plain = InputEmbedding(VOCAB, FEATURES)
    variables = plain.init(jax.random.key(0), IDS)
    with pytest.raises(ValueError, match="num_token_types"):
        plain.apply(variables, IDS, token_types=jnp.zeros_like(IDS))
    concat = InputEmbedding(
        VOCAB,
        FEATURES,
        position=LearnedPositionEmbedding(16, 4),
        combine="concat",
        num_token_types=2,
    )
    with pytest.raises(ValueError, match="combine='add'"):
        concat.init(jax.random.key(0), IDS)
