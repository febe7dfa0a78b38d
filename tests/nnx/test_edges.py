"""Bad and extreme arguments of the NNX twins: the linen twins' errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests import references
from tests.references import f64

KEY = jax.random.key(0)
IDS = jnp.array([[1, 2]])
X = jnp.ones((1, 2, 4))


def rngs():
    return nnx.Rngs(0)


@pytest.mark.parametrize(
    ("make_linen", "make_nnx"),
    [
        (
            lambda: linen.TokenEmbedding(10, 4, dtype=jnp.int32).init(KEY, IDS),
            lambda: pnnx.TokenEmbedding(10, 4, dtype=jnp.int32, rngs=rngs()),
        ),
        (
            lambda: linen.LearnedPositionEmbedding(8, 4, dtype=jnp.int8).init(KEY, X),
            lambda: pnnx.LearnedPositionEmbedding(8, 4, dtype=jnp.int8, rngs=rngs()),
        ),
        (
            lambda: linen.RelativePositionBias(2, dtype=jnp.int32).init(
                KEY, jnp.arange(3)
            ),
            lambda: pnnx.RelativePositionBias(2, dtype=jnp.int32, rngs=rngs()),
        ),
        (
            lambda: linen.RelativePositionBias(-1).init(KEY, jnp.arange(3)),
            lambda: pnnx.RelativePositionBias(-1, rngs=rngs()),
        ),
        (
            lambda: linen.RelativePositionBias(2, num_buckets=0).init(
                KEY, jnp.arange(3)
            ),
            lambda: pnnx.RelativePositionBias(2, num_buckets=0, rngs=rngs()),
        ),
        (
            lambda: linen.RelativePositionBias(2, num_buckets=3).init(
                KEY, jnp.arange(3)
            ),
            lambda: pnnx.RelativePositionBias(2, num_buckets=3, rngs=rngs()),
        ),
        (
            lambda: linen.InputEmbedding(10, 4, dropout_rate=1.5).init(KEY, IDS),
            lambda: pnnx.InputEmbedding(10, 4, dropout_rate=1.5, rngs=rngs()),
        ),
        (
            lambda: linen.Residual(nn.Dense(4), dropout_rate=-0.5).init(KEY, X),
            lambda: pnnx.Residual(
                nnx.Linear(4, 4, rngs=rngs()),
                pnnx.LayerNorm(4, rngs=rngs()),
                dropout_rate=-0.5,
                rngs=rngs(),
            ),
        ),
        (
            lambda: linen.MultiHeadAttention(2, 2, dropout_rate=1.0).init(KEY, X),
            lambda: pnnx.MultiHeadAttention(
                2, 2, in_features=4, dropout_rate=1.0, rngs=rngs()
            ),
        ),
        (
            lambda: linen.InputEmbedding(10, 4, position="sinusoidal").init(KEY, IDS),
            lambda: pnnx.InputEmbedding(10, 4, position="sinusoidal", rngs=rngs()),
        ),
        (
            lambda: linen.MultiHeadAttention(2, 2, position_bias="alibi").init(KEY, X),
            lambda: pnnx.MultiHeadAttention(
                2, 2, in_features=4, position_bias="alibi", rngs=rngs()
            ),
        ),
        (
            lambda: linen.RMSNorm(epsilon="1e-5").init(KEY, X),
            lambda: pnnx.RMSNorm(4, epsilon="1e-5", rngs=rngs()),
        ),
    ],
    ids=[
        "token-int-dtype",
        "learned-int-dtype",
        "relative-int-dtype",
        "relative-heads",
        "relative-buckets-0",
        "relative-buckets-odd",
        "input-dropout",
        "residual-dropout",
        "attention-dropout",
        "input-position-name",
        "attention-bias-name",
        "epsilon-string",
    ],
)
def test_same_errors_as_linen(make_linen, make_nnx):
    with pytest.raises((TypeError, ValueError)) as linen_error:
        make_linen()
    with pytest.raises(type(linen_error.value)) as nnx_error:
        make_nnx()
    assert str(nnx_error.value) == str(linen_error.value)


@pytest.mark.filterwarnings("error::DeprecationWarning")  # jnp.shape(list)
def test_rotary_takes_lists():
    q = np.arange(8.0).reshape(1, 2, 1, 4) / 8
    got_q, got_k = pnnx.RotaryEmbedding()(q.tolist(), q.tolist())
    expected = references.rope(q, np.arange(2), references.paper_frequencies(4))
    np.testing.assert_allclose(f64(got_q), expected, atol=1e-6)
    np.testing.assert_allclose(f64(got_k), expected, atol=1e-6)


def test_norm_numpy_integer_axis():
    x = jnp.arange(6.0).reshape(2, 3)
    module = pnnx.LayerNorm(2, axis=np.int64(0), rngs=rngs())
    np.testing.assert_allclose(
        f64(module(x)), references.layer_norm(x, axis=0), atol=1e-5
    )


# ---------------------------------------------- module arguments (both twins)

ATTN_X = references.normal(40, (1, 3, 8))


def linen_attention(**kwargs):
    module = linen.MultiHeadAttention(**{"num_heads": 2, "head_dim": 4, **kwargs})
    return module.init(KEY, ATTN_X)


def nnx_attention(**kwargs):
    kwargs = {"num_heads": 2, "head_dim": 4, "in_features": 8, **kwargs}
    kwargs.setdefault("rngs", rngs())
    return pnnx.MultiHeadAttention(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_kv_heads": 0}, ValueError, "num_kv_heads must be >= 1, got 0"),
        ({"head_dim": 5}, ValueError, "head_dim 5 is odd"),
        ({"causal": "false"}, TypeError, "causal must be"),
        ({"qkv_bias": 1}, TypeError, "qkv_bias must be"),
    ],
    ids=["kv-heads-0", "odd-head-dim-rotary", "causal-string", "bias-int"],
)
def test_attention_arguments_raise_in_both_twins(kwargs, error, match):
    if "head_dim" in kwargs:
        kwargs = {**kwargs, "num_heads": 1}
    with pytest.raises(error, match=match):
        linen_attention(rotary=linen.RotaryEmbedding(), **kwargs)
    with pytest.raises(error, match=match):  # at construction
        nnx_attention(rotary=pnnx.RotaryEmbedding(), **kwargs)


def test_odd_head_dim_with_a_partial_rotary_is_fine():
    linen_attention(num_heads=1, head_dim=5, rotary=linen.RotaryEmbedding(rotary_dim=4))
    nnx_attention(num_heads=1, head_dim=5, rotary=pnnx.RotaryEmbedding(rotary_dim=4))


def test_qk_norm_must_keep_the_shape():
    with pytest.raises(ValueError, match=r"qk_norm must return its input's shape"):
        linen_attention(qk_norm=nn.Dense(3))
    twin = nnx_attention(qk_norm=lambda d, rngs: nnx.Linear(d, 3, rngs=rngs))
    with pytest.raises(ValueError, match=r"qk_norm must return its input's shape"):
        twin(ATTN_X)


def test_nnx_qk_norm_takes_a_factory_not_a_built_norm():
    with pytest.raises(TypeError, match=r"qk_norm must make a module.*RMSNorm"):
        nnx_attention(qk_norm=pnnx.RMSNorm(4, rngs=rngs()))


def test_nnx_attention_checks_in_features():
    with pytest.raises(ValueError, match=r"x has 6 features.*in_features=8"):
        nnx_attention()(jnp.ones((1, 3, 6)))


@pytest.mark.parametrize(
    "make",
    [
        lambda r: nnx_attention(dropout_rate=0.1, rngs=r),
        lambda r: pnnx.InputEmbedding(10, 4, dropout_rate=0.1, rngs=r),
        lambda r: pnnx.Residual(
            nnx.Linear(4, 4, rngs=rngs()),
            pnnx.LayerNorm(4, rngs=rngs()),
            dropout_rate=0.1,
            rngs=r,
        ),
    ],
    ids=["attention", "input-embedding", "residual"],
)
def test_dropout_without_a_dropout_stream(make):
    with pytest.raises(ValueError, match=r"'dropout' stream.*'params'"):
        make(nnx.Rngs(params=0))
    make(nnx.Rngs(0))  # a default stream serves
    make(nnx.Rngs(params=0, dropout=1))


@pytest.mark.parametrize(("field", "call"), [(True, False), (False, True)])
def test_the_calls_deterministic_wins_in_both_twins(field, call):
    kwargs = {"dropout_rate": 0.5, "deterministic": field}
    module = linen.MultiHeadAttention(num_heads=2, head_dim=4, **kwargs)
    variables = module.init(KEY, ATTN_X)
    plain = linen.MultiHeadAttention(num_heads=2, head_dim=4).apply(variables, ATTN_X)
    got = module.apply(
        variables, ATTN_X, deterministic=call, rngs={"dropout": jax.random.key(1)}
    )
    twin = pnnx.from_linen(nnx_attention(rngs=nnx.Rngs(0), **kwargs), variables)
    twin_got = twin(ATTN_X, deterministic=call)
    for out in (got, twin_got):
        # deterministic=True: exactly the plain output; False: dropped weights.
        assert np.array_equal(np.asarray(out), np.asarray(plain)) == call


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm_position": "pre", "post_norm": "norm"}, "does not use post_norm"),
        (
            {"norm_position": "sandwich", "post_norm": "norm", "parallel_norm": "norm"},
            "does not use parallel_norm",
        ),
        ({"norm_position": "pre", "share_norm": True}, "does not use share_norm"),
    ],
    ids=["post-norm-with-pre", "parallel-norm-with-sandwich", "share-norm-with-pre"],
)
def test_residual_refuses_what_its_form_does_not_use(kwargs, match):
    def built(norm):
        return {k: (norm if v == "norm" else v) for k, v in kwargs.items()}

    with pytest.raises(ValueError, match=match):
        linen.Residual(nn.Dense(4), **built(linen.LayerNorm())).init(KEY, X)
    with pytest.raises(ValueError, match=match):
        pnnx.Residual(
            nnx.Linear(4, 4, rngs=rngs()),
            pnnx.LayerNorm(4, rngs=rngs()),
            **built(pnnx.LayerNorm(4, rngs=rngs())),
        )


class _ListOut(nn.Module):
    @nn.compact
    def __call__(self, x):
        return [x]


@pytest.mark.parametrize(
    ("linen_sublayer", "nnx_sublayer", "error", "match"),
    [
        (
            lambda: nn.Dense(1),
            lambda: nnx.Linear(4, 1, rngs=rngs()),
            ValueError,
            r"input's shape \(1, 2, 4\).*got \(1, 2, 1\)",
        ),
        (
            lambda: nn.Dense(6),
            lambda: nnx.Linear(4, 6, rngs=rngs()),
            ValueError,
            r"got \(1, 2, 6\)",
        ),
        (lambda: _ListOut(), lambda: lambda x: [x], TypeError, "got list"),
    ],
    ids=["width-1", "wrong-width", "list"],
)
def test_residual_sublayer_output_is_checked(
    linen_sublayer, nnx_sublayer, error, match
):
    with pytest.raises(error, match=match):
        linen.Residual(linen_sublayer(), norm_position="pre").init(KEY, X)
    twin = pnnx.Residual(
        nnx_sublayer(), pnnx.LayerNorm(4, rngs=rngs()), norm_position="pre"
    )
    with pytest.raises(error, match=match):
        twin(X)


def test_a_module_class_where_an_instance_goes():
    with pytest.raises(TypeError, match=r"norm must be a module instance.*LayerNorm\("):
        linen.Residual(nn.Dense(4), norm=linen.LayerNorm).init(KEY, X)
    with pytest.raises(TypeError, match=r"norm must be a module instance"):
        pnnx.Residual(nnx.Linear(4, 4, rngs=rngs()), pnnx.LayerNorm)


@pytest.mark.parametrize("variables", [None, [1, 2], "params"])
def test_from_linen_needs_a_variables_dict(variables):
    with pytest.raises(TypeError, match="variables must be the linen variables"):
        pnnx.from_linen(pnnx.LayerNorm(4, rngs=rngs()), variables)


def test_from_linen_and_to_linen_need_an_nnx_module():
    variables = linen.LayerNorm().init(KEY, X)
    with pytest.raises(TypeError, match="module must be an NNX module"):
        pnnx.from_linen(linen.LayerNorm(), variables)
    with pytest.raises(TypeError, match="module must be an NNX module"):
        pnnx.to_linen(variables)
