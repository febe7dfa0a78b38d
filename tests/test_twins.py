"""The linen modules and their NNX twins give the same outputs, cases that could drift.

Each NNX twin is loaded with its linen twin's parameters (`flax_posenc.nnx.from_linen`)
and called on the same inputs. The dropout tests check both twins against one
rule, written here: the call's ``deterministic`` wins over the module's field.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests.references import normal

KEY = jax.random.key(0)
X = normal(3, (2, 4, 8))
IDS = jnp.array([[1, 2, 3, 0], [4, 4, 7, 1]])
SEGMENTS = jnp.array([[1, 1, 1, 1], [1, 1, 2, 2]])
POSITIONS = jnp.array([[0, 1, 2, 3], [0, 1, 0, 1]])


def _bump(tree):
    """Non-trivial parameter values (ones and zeros hide mistakes)."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(
        treedef, [a + 0.1 * normal(11 + i, a.shape) for i, a in enumerate(leaves)]
    )


def _params(linen_module, *args, **kwargs):
    variables = linen_module.init(KEY, *args, **kwargs)
    return _bump(nn.meta.unbox(variables["params"]))


def _same(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------- dropout

# name: (linen module, NNX twin factory, input); dropout_rate and deterministic
# are given to both.
DROPOUT_MODULES = {
    "attention": (
        lambda **kw: linen.MultiHeadAttention(num_heads=2, head_dim=4, **kw),
        lambda rngs, **kw: pnnx.MultiHeadAttention(2, 4, 8, rngs=rngs, **kw),
        X,
    ),
    "residual": (
        lambda **kw: linen.Residual(nn.Dense(8), norm_position="pre", **kw),
        lambda rngs, **kw: pnnx.Residual(
            nnx.Linear(8, 8, rngs=nnx.Rngs(5)),
            pnnx.LayerNorm(8, rngs=nnx.Rngs(6)),
            norm_position="pre",
            rngs=rngs,
            **kw,
        ),
        X,
    ),
    "input_embedding": (
        lambda **kw: linen.InputEmbedding(10, 8, **kw),
        lambda rngs, **kw: pnnx.InputEmbedding(10, 8, rngs=rngs, **kw),
        IDS,
    ),
}


@functools.cache
def _dropout_case(name):
    """The linen parameters and the output without dropout (the reference)."""
    make_linen, _, inputs = DROPOUT_MODULES[name]
    params = _params(make_linen(), inputs)
    return params, make_linen().apply({"params": params}, inputs)


def _call_kwargs(call):
    return {} if call is None else {"deterministic": call}


@pytest.mark.parametrize("name", list(DROPOUT_MODULES))
@pytest.mark.parametrize("twin", ["linen", "nnx"])
@pytest.mark.parametrize(
    ("field", "call"),
    [(True, False), (False, True), (True, None), (False, None), (None, True)],
    ids=["call-false-wins", "call-true-wins", "field-true", "field-false", "call"],
)
def test_the_call_wins_over_the_field_and_the_field_is_the_default(
    name, twin, field, call
):
    make_linen, make_nnx, inputs = DROPOUT_MODULES[name]
    params, plain = _dropout_case(name)
    options = {"dropout_rate": 0.5, "deterministic": field}
    if twin == "linen":
        out = make_linen(**options).apply(
            {"params": params},
            inputs,
            rngs={"dropout": jax.random.key(1)},
            **_call_kwargs(call),
        )
    else:
        model = pnnx.from_linen(make_nnx(nnx.Rngs(0), **options), params)
        out = model(inputs, **_call_kwargs(call))
    deterministic = call if call is not None else field
    # Deterministic: exactly the output without dropout; else dropped values.
    assert _same(out, plain) == deterministic


@pytest.mark.parametrize("name", list(DROPOUT_MODULES))
def test_dropout_needs_deterministic_in_both_twins(name):
    make_linen, make_nnx, inputs = DROPOUT_MODULES[name]
    params, plain = _dropout_case(name)
    module = make_linen(dropout_rate=0.5)
    model = pnnx.from_linen(make_nnx(nnx.Rngs(0), dropout_rate=0.5), params)
    with pytest.raises(ValueError) as linen_error:
        module.apply({"params": params}, inputs, rngs={"dropout": KEY})
    with pytest.raises(ValueError) as nnx_error:
        model(inputs)
    assert str(nnx_error.value) == str(linen_error.value)
    assert "needs `deterministic`" in str(nnx_error.value)
    # Without dropout, deterministic is not needed.
    assert _same(pnnx.from_linen(make_nnx(nnx.Rngs(0)), params)(inputs), plain)


# ---------------------------------------------------------- MultiHeadAttention


def _attention_pair(**options):
    module = linen.MultiHeadAttention(
        num_heads=2,
        head_dim=4,
        num_kv_heads=1,
        qk_norm=linen.RMSNorm(),
        position_bias=linen.RelativePositionBias(2, num_buckets=8),
        **options,
    )
    twin = pnnx.MultiHeadAttention(
        2,
        4,
        8,
        num_kv_heads=1,
        qk_norm=pnnx.RMSNorm,
        position_bias=pnnx.RelativePositionBias(2, num_buckets=8, rngs=nnx.Rngs(2)),
        rngs=nnx.Rngs(1),
        **options,
    )
    return module, twin


@pytest.mark.parametrize(
    "options",
    [
        {"causal": True},
        {"sliding_window": 2, "softcap": 2.0},
        {"dropout_rate": 0.5, "deterministic": False},  # the call's True wins
    ],
    ids=["causal", "window-softcap", "dropout-off-by-call"],
)
def test_attention_twins_with_segments_qk_norm_and_bias(options):
    module, twin = _attention_pair(**options)
    kwargs = {"positions": POSITIONS, "segments": SEGMENTS}
    if "dropout_rate" in options:
        kwargs["deterministic"] = True
    params = _params(module, X, **kwargs)
    pnnx.from_linen(twin, params)
    want = module.apply({"params": params}, X, **kwargs)
    assert _same(twin(X, **kwargs), want)


def test_attention_twins_decode_step_by_step_with_segments():
    module, twin = _attention_pair(causal=True)
    params = _params(module, X)
    pnnx.from_linen(twin, params)
    cache = module.init(KEY, X, decode=True)["cache"]
    twin.init_cache(X.shape)
    for start, stop in ((0, 2), (2, 3), (3, 4)):  # a prefill, then single steps
        kwargs = {"segments": SEGMENTS[:, start:stop]}
        out, state = module.apply(
            {"params": params, "cache": cache},
            X[:, start:stop],
            decode=True,
            mutable=["cache"],
            **kwargs,
        )
        cache = state["cache"]
        assert _same(twin(X[:, start:stop], decode=True, **kwargs), out)
    for name, value in cache.items():
        assert _same(getattr(twin, name)[...], value), name


# -------------------------------------------------------------------- Residual


@pytest.mark.parametrize("form", ["post", "pre", "sandwich", "parallel", "gptj"])
def test_residual_twins_in_each_form_pass_deterministic_on(form):
    """Residual and attention dropout, both turned off by the call alone."""
    position = "parallel" if form == "gptj" else form
    sublayer = {"num_heads": 2, "head_dim": 4, "dropout_rate": 0.5}
    module = linen.Residual(
        linen.MultiHeadAttention(**sublayer),
        norm=linen.RMSNorm(),
        norm_position=position,
        post_norm=linen.LayerNorm() if form == "sandwich" else None,
        parallel=nn.Dense(8) if position == "parallel" else None,
        parallel_norm=linen.LayerNorm() if form == "parallel" else None,
        share_norm=form == "gptj",
        dropout_rate=0.5,
    )
    rngs = nnx.Rngs(0)
    twin = pnnx.Residual(
        pnnx.MultiHeadAttention(2, 4, 8, dropout_rate=0.5, rngs=rngs),
        pnnx.RMSNorm(8, rngs=rngs),
        norm_position=position,
        post_norm=pnnx.LayerNorm(8, rngs=rngs) if form == "sandwich" else None,
        parallel=nnx.Linear(8, 8, rngs=rngs) if position == "parallel" else None,
        parallel_norm=pnnx.LayerNorm(8, rngs=rngs) if form == "parallel" else None,
        share_norm=form == "gptj",
        dropout_rate=0.5,
        rngs=rngs,
    )
    params = _params(module, X, deterministic=True)
    pnnx.from_linen(twin, params)
    want = module.apply({"params": params}, X, deterministic=True)
    plain = module.clone(dropout_rate=0.0).apply(
        {"params": params}, X, deterministic=True
    )
    assert _same(want, plain)
    assert _same(twin(X, deterministic=True), want)


# ------------------------------------------------ embeddings and bias modules


def test_input_embedding_twins_concat_sinusoidal():
    module = linen.InputEmbedding(
        10, 8, position=linen.SinusoidalPositionEmbedding(4), combine="concat"
    )
    twin = pnnx.InputEmbedding(
        10,
        8,
        position=pnnx.SinusoidalPositionEmbedding(4),
        combine="concat",
        rngs=nnx.Rngs(0),
    )
    params = _params(module, IDS)
    pnnx.from_linen(twin, params)
    want = module.apply({"params": params}, IDS, positions=POSITIONS)
    assert want.shape == (2, 4, 12)
    assert _same(twin(IDS, positions=POSITIONS), want)


@pytest.mark.parametrize("name", ["alibi", "relative"])
def test_bias_twins_with_other_key_positions(name):
    q, k = jnp.array([[3, 4]]), jnp.array([[0, 1, 2, 3, 4]])
    if name == "alibi":
        module, twin, params = linen.ALiBiBias(2), pnnx.ALiBiBias(2), {}
    else:
        module = linen.RelativePositionBias(2, num_buckets=4, max_distance=8)
        twin = pnnx.RelativePositionBias(
            2, num_buckets=4, max_distance=8, rngs=nnx.Rngs(0)
        )
        params = _params(module, q, k)
        pnnx.from_linen(twin, params)
    want = module.apply({"params": params}, q, k)
    assert want.shape == (1, 2, 2, 5)
    assert _same(twin(q, k), want)
