"""Each NNX twin against its linen twin: same parameters, outputs and gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests.references import normal

X = normal(0, (2, 5, 8))
IDS = jnp.array([[1, 2, 3, 9, 0], [4, 4, 7, 1, 2]])
POS = jnp.array([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]])
QK = normal(1, (2, 5, 2, 8))


def _bump(tree):
    """Non-trivial parameter values (ones and zeros hide mistakes)."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(
        treedef, [a + 0.1 * normal(7 + i, a.shape) for i, a in enumerate(leaves)]
    )


# name: (linen module, NNX module factory, call args, call kwargs)
CASES = {
    "layer_norm": (linen.LayerNorm(), lambda r: pnnx.LayerNorm(8, rngs=r), (X,), {}),
    "rms_norm": (linen.RMSNorm(), lambda r: pnnx.RMSNorm(8, rngs=r), (X,), {}),
    # A LayerNorm of each head with weights of its own (StableLM 2, Command R+).
    "layer_norm_each_head": (
        linen.LayerNorm(use_bias=False, feature_axes=(-2, -1), param_axes=(None, "kv")),
        lambda r: pnnx.LayerNorm(
            (2, 8),
            use_bias=False,
            feature_axes=(-2, -1),
            param_axes=(None, "kv"),
            rngs=r,
        ),
        (QK,),
        {},
    ),
    "rms_norm_gemma": (
        linen.RMSNorm(unit_offset=True, epsilon=1e-5),
        lambda r: pnnx.RMSNorm(8, unit_offset=True, epsilon=1e-5, rngs=r),
        (X,),
        {},
    ),
    "token_embedding": (
        linen.TokenEmbedding(10, 8, scale_by_sqrt_features=True),
        lambda r: pnnx.TokenEmbedding(10, 8, scale_by_sqrt_features=True, rngs=r),
        (IDS,),
        {},
    ),
    "learned_position": (
        linen.LearnedPositionEmbedding(16, 8),
        lambda r: pnnx.LearnedPositionEmbedding(16, 8, rngs=r),
        (X,),
        {"positions": POS},
    ),
    "sinusoidal_position": (
        linen.SinusoidalPositionEmbedding(8, layout="halves"),
        lambda r: pnnx.SinusoidalPositionEmbedding(8, layout="halves"),
        (X,),
        {"positions": POS},
    ),
    "rotary": (
        linen.RotaryEmbedding(scaling={"rope_type": "linear", "factor": 2.0}),
        lambda r: pnnx.RotaryEmbedding(scaling={"rope_type": "linear", "factor": 2.0}),
        (QK, QK * 2),
        {"positions": POS},
    ),
    "alibi": (linen.ALiBiBias(4), lambda r: pnnx.ALiBiBias(4), (POS,), {}),
    "relative": (
        linen.RelativePositionBias(4, bidirectional=False),
        lambda r: pnnx.RelativePositionBias(4, bidirectional=False, rngs=r),
        (POS,),
        {},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_twin_outputs_and_gradients_are_identical(name, jit):
    linen_module, make, args, kwargs = CASES[name]
    variables = linen_module.init(jax.random.key(0), *args, **kwargs)
    params = _bump(nn.meta.unbox(variables.get("params", {})))
    model = pnnx.from_linen(make(nnx.Rngs(1)), {"params": params})

    def linen_out(p):
        return linen_module.apply({"params": p}, *args, **kwargs)

    def nnx_out(m):
        return m(*args, **kwargs)

    if jit:
        linen_out, nnx_out = jax.jit(linen_out), nnx.jit(nnx_out)
    chex.assert_trees_all_close(nnx_out(model), linen_out(params), atol=0.0, rtol=0.0)
    if not params:
        return

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    def linen_loss(p):
        return jnp.sum(jnp.sin(first(linen_out(p))))

    def nnx_loss(m):
        return jnp.sum(jnp.sin(first(nnx_out(m))))

    linen_grads = jax.grad(linen_loss)(params)
    nnx_grads = pnnx.to_linen(nnx.grad(nnx_loss)(model))["params"]
    chex.assert_trees_all_close(nnx_grads, linen_grads, atol=0.0, rtol=0.0)


@pytest.mark.parametrize(
    "name", [n for n in CASES if n not in ("sinusoidal_position", "rotary", "alibi")]
)
def test_same_parameter_names_shapes_and_logical_axes(name):
    linen_module, make, args, kwargs = CASES[name]
    variables = linen_module.init(jax.random.key(0), *args, **kwargs)
    model = make(nnx.Rngs(0))
    linen_shapes = jax.tree.map(jnp.shape, nn.meta.unbox(variables["params"]))
    nnx_shapes = jax.tree.map(jnp.shape, pnnx.to_linen(model)["params"])
    assert nnx_shapes == linen_shapes
    linen_spec = nn.get_partition_spec(variables)["params"]
    nnx_spec = nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(model, nnx.Param)))
    assert jax.tree.map(tuple, nnx_spec) == jax.tree.map(tuple, linen_spec)


def test_round_trip_through_linen():
    model = pnnx.RelativePositionBias(4, rngs=nnx.Rngs(3))
    back = pnnx.from_linen(
        pnnx.RelativePositionBias(4, rngs=nnx.Rngs(4)), pnnx.to_linen(model)
    )
    chex.assert_trees_all_close(back(POS), model(POS), atol=0.0)


def test_from_linen_rejects_other_shapes():
    variables = linen.TokenEmbedding(10, 8).init(jax.random.key(0), IDS)
    with pytest.raises(ValueError, match="do not match"):
        pnnx.from_linen(pnnx.TokenEmbedding(11, 8, rngs=nnx.Rngs(0)), variables)


@pytest.mark.parametrize(
    ("make_linen", "make_nnx"),
    [
        (
            lambda: linen.TokenEmbedding(0, 8).init(jax.random.key(0), IDS),
            lambda: pnnx.TokenEmbedding(0, 8, rngs=nnx.Rngs(0)),
        ),
        (
            lambda: linen.LearnedPositionEmbedding(4, 8).init(jax.random.key(0), X),
            lambda: pnnx.LearnedPositionEmbedding(4, 8, rngs=nnx.Rngs(0))(X),
        ),
        (
            lambda: linen.RMSNorm(use_scale=False, unit_offset=True).init(
                jax.random.key(0), X
            ),
            lambda: pnnx.RMSNorm(
                8, use_scale=False, unit_offset=True, rngs=nnx.Rngs(0)
            ),
        ),
        (
            lambda: linen.RotaryEmbedding(head_dim=4).init(jax.random.key(0), QK, QK),
            lambda: pnnx.RotaryEmbedding(head_dim=4)(QK, QK),
        ),
    ],
    ids=["vocab-0", "too-long", "unit-offset", "head-dim"],
)
def test_same_errors_as_linen(make_linen, make_nnx):
    with pytest.raises(Exception) as linen_error:
        make_linen()
    with pytest.raises(type(linen_error.value)) as nnx_error:
        make_nnx()
    assert str(nnx_error.value) == str(linen_error.value)


def test_from_hf_config_twin():
    config = {
        "model_type": "gpt_neox",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "rotary_pct": 0.25,
        "rotary_emb_base": 10000,
    }
    twin = pnnx.RotaryEmbedding.from_hf_config(config)
    module = linen.RotaryEmbedding.from_hf_config(config)
    q = jnp.ones((1, 3, 2, 16))
    chex.assert_trees_all_close(twin(q, q), module.apply({}, q, q), atol=0.0)


def test_transforms_split_merge_vmap_scan_remat():
    norm = pnnx.RMSNorm(8, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(norm)
    merged = nnx.merge(graphdef, state)
    chex.assert_trees_all_close(merged(X), norm(X), atol=0.0)
    # vmap over a batch axis, remat of the call
    out = nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(norm, X)
    chex.assert_trees_all_close(out, norm(X), atol=1e-6)
    chex.assert_trees_all_close(
        nnx.remat(lambda m, x: m(x))(norm, X), norm(X), atol=0.0
    )

    # scan over three stacked layers, each with its own parameters
    @nnx.vmap(in_axes=0, out_axes=0)
    def make(key):
        return pnnx.RMSNorm(8, rngs=nnx.Rngs(key))

    stacked = make(jax.random.split(jax.random.key(1), 3))

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def run(layer, x):
        return layer(x) * 2.0

    y = run(stacked, X)
    expected = X
    for i in range(3):
        layer = pnnx.RMSNorm(8, rngs=nnx.Rngs(0))
        layer.scale[...] = stacked.scale[...][i]
        expected = layer(expected) * 2.0
    chex.assert_trees_all_close(y, expected, atol=1e-6)


# ---------------------------------------------------------- MultiHeadAttention

ATTN_X = normal(5, (2, 7, 16))
ATTN_POS = jnp.array([[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 0, 1, 2, 3]])
ATTN_SEG = jnp.array([[1] * 7, [1, 1, 1, 2, 2, 2, 0]])

ATTENTION = {
    # Window and chunks, on the blockwise path (blocks of 4 of 7 tokens).
    "gqa-rope-window": (
        {
            "num_kv_heads": 2,
            "causal": True,
            "sliding_window": 3,
            "chunk_size": 4,
            "block_size": 4,
        },
        lambda: linen.RotaryEmbedding(),
        lambda: pnnx.RotaryEmbedding(),
        None,
    ),
    "mqa-relative-qknorm": (
        {"num_kv_heads": 1, "qkv_bias": True, "out_bias": True, "softcap": 3.0},
        None,
        None,
        "relative",
    ),
}


def _attention_pair(name):
    options, linen_rotary, nnx_rotary, bias = ATTENTION[name]
    linen_module = linen.MultiHeadAttention(
        num_heads=4,
        head_dim=8,
        rotary=linen_rotary() if linen_rotary else None,
        position_bias=linen.RelativePositionBias(4) if bias else None,
        qk_norm=linen.RMSNorm() if bias else None,
        **options,
    )
    twin = pnnx.MultiHeadAttention(
        4,
        8,
        16,
        rotary=nnx_rotary() if nnx_rotary else None,
        position_bias=pnnx.RelativePositionBias(4, rngs=nnx.Rngs(2)) if bias else None,
        qk_norm=pnnx.RMSNorm if bias else None,
        rngs=nnx.Rngs(1),
        **options,
    )
    return linen_module, twin


@pytest.mark.parametrize("name", list(ATTENTION))
def test_attention_twin_outputs_and_gradients(name):
    linen_module, twin = _attention_pair(name)
    kwargs = {"positions": ATTN_POS, "segments": ATTN_SEG}
    variables = linen_module.init(jax.random.key(0), ATTN_X, **kwargs)
    params = _bump(nn.meta.unbox(variables["params"]))
    pnnx.from_linen(twin, {"params": params})

    def linen_loss(p):
        return jnp.sum(jnp.sin(linen_module.apply({"params": p}, ATTN_X, **kwargs)))

    def nnx_loss(m):
        return jnp.sum(jnp.sin(m(ATTN_X, **kwargs)))

    chex.assert_trees_all_close(
        nnx.jit(lambda m: m(ATTN_X, **kwargs))(twin),
        jax.jit(lambda p: linen_module.apply({"params": p}, ATTN_X, **kwargs))(params),
        atol=0.0,
        rtol=0.0,
    )
    # Jitted, as the outputs above: one program each instead of op by op.
    linen_grads = jax.jit(jax.grad(linen_loss))(params)
    nnx_grads = pnnx.to_linen(nnx.jit(nnx.grad(nnx_loss))(twin))["params"]
    chex.assert_trees_all_close(nnx_grads, linen_grads, atol=0.0, rtol=0.0)


def test_attention_twin_decodes_as_linen_and_as_its_own_full_pass():
    linen_module, twin = _attention_pair("gqa-rope-window")
    params = linen_module.init(jax.random.key(0), ATTN_X)["params"]
    pnnx.from_linen(twin, {"params": params})
    full = twin(ATTN_X)
    cache = linen_module.init(jax.random.key(0), ATTN_X, decode=True)["cache"]
    twin.init_cache(ATTN_X.shape)
    outs = []

    @jax.jit  # both jitted: eager and jitted XLA programs may round apart
    def linen_step(cache, chunk):
        return linen_module.apply(
            {"params": params, "cache": cache}, chunk, decode=True, mutable=["cache"]
        )

    for chunk in (ATTN_X[:, :3], ATTN_X[:, 3:4], ATTN_X[:, 4:5], ATTN_X[:, 5:]):
        out, state = linen_step(cache, chunk)
        cache = state["cache"]
        twin_out = nnx.jit(lambda m, c: m(c, decode=True))(twin, chunk)
        chex.assert_trees_all_close(twin_out, out, atol=0.0, rtol=0.0)
        outs.append(twin_out)
    chex.assert_trees_all_close(jnp.concatenate(outs, axis=1), full, atol=2e-5)
    for name in ("cached_key", "cached_positions", "cache_index"):
        chex.assert_trees_all_close(getattr(twin, name)[...], cache[name], atol=0.0)


def test_attention_twin_errors_match_linen():
    with pytest.raises(ValueError) as linen_error:
        linen.MultiHeadAttention(num_heads=4, num_kv_heads=3, head_dim=2).init(
            jax.random.key(0), ATTN_X
        )
    with pytest.raises(ValueError) as nnx_error:
        pnnx.MultiHeadAttention(4, 2, 16, num_kv_heads=3, rngs=nnx.Rngs(0))
    assert str(nnx_error.value) == str(linen_error.value)
    twin = pnnx.MultiHeadAttention(4, 2, 16, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="init_cache"):
        twin(ATTN_X, decode=True)


# ------------------------------------------------ InputEmbedding and Residual


def test_input_embedding_twin():
    linen_module = linen.InputEmbedding(
        10,
        8,
        position=linen.LearnedPositionEmbedding(16, 8),
        num_token_types=2,
        norm=linen.LayerNorm(),
        scale_by_sqrt_features=True,
    )
    rngs = nnx.Rngs(0)
    twin = pnnx.InputEmbedding(
        10,
        8,
        position=pnnx.LearnedPositionEmbedding(16, 8, rngs=rngs),
        num_token_types=2,
        norm=pnnx.LayerNorm(8, rngs=rngs),
        scale_by_sqrt_features=True,
        rngs=rngs,
    )
    types = jnp.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 0]])
    variables = linen_module.init(jax.random.key(0), IDS)
    params = _bump(nn.meta.unbox(variables["params"]))
    pnnx.from_linen(twin, {"params": params})
    out = twin(IDS, positions=POS, token_types=types)
    want = linen_module.apply({"params": params}, IDS, positions=POS, token_types=types)
    chex.assert_trees_all_close(out, want, atol=0.0, rtol=0.0)

    def linen_loss(p):
        y = linen_module.apply({"params": p}, IDS, positions=POS, token_types=types)
        return jnp.sum(jnp.sin(y))

    def nnx_loss(m):
        return jnp.sum(jnp.sin(m(IDS, positions=POS, token_types=types)))

    chex.assert_trees_all_close(
        pnnx.to_linen(nnx.grad(nnx_loss)(twin))["params"],
        jax.grad(linen_loss)(params),
        atol=0.0,
        rtol=0.0,
    )
    query = jnp.ones((1, 2, 8))
    chex.assert_trees_all_close(
        twin.attend(query),
        linen_module.apply({"params": params}, query, method="attend"),
        atol=0.0,
    )


@pytest.mark.parametrize(
    "form",
    ["post", "pre", "sandwich", "parallel", "gptj", "reordered", "layer_scale"],
)
def test_residual_twin(form):
    position = {"gptj": "parallel", "layer_scale": "pre"}.get(form, form)
    # The output scales ride on two forms: LayerScale on pre, Gemma 4's
    # layer_scalar on sandwich.
    scale = {"layer_scale": "layer_scale", "sandwich": "layer_scalar"}.get(form)
    linen_module = linen.Residual(
        linen.MultiHeadAttention(num_heads=2, head_dim=4, causal=True),
        norm=linen.RMSNorm(),
        norm_position=position,
        post_norm=linen.RMSNorm() if form == "sandwich" else None,
        parallel=nn.Dense(16) if position == "parallel" else None,
        share_norm=form == "gptj",
        output_scale=scale,
        output_scale_init=0.5,
    )
    rngs = nnx.Rngs(0)
    twin = pnnx.Residual(
        pnnx.MultiHeadAttention(2, 4, 16, causal=True, rngs=rngs),
        pnnx.RMSNorm(16, rngs=rngs),
        norm_position=position,
        post_norm=pnnx.RMSNorm(16, rngs=rngs) if form == "sandwich" else None,
        parallel=nnx.Linear(16, 16, rngs=rngs) if position == "parallel" else None,
        parallel_norm=pnnx.RMSNorm(16, rngs=rngs) if form == "parallel" else None,
        share_norm=form == "gptj",
        output_scale=scale,
        output_scale_init=0.5,
        num_features=16,
    )
    linen_module_with_norm = (
        linen_module.clone(parallel_norm=linen.RMSNorm())
        if form == "parallel"
        else linen_module
    )
    variables = linen_module_with_norm.init(jax.random.key(0), ATTN_X)
    params = _bump(nn.meta.unbox(variables["params"]))
    pnnx.from_linen(twin, {"params": params})
    out = nnx.jit(lambda m, x: m(x))(twin, ATTN_X)
    want = jax.jit(lambda p, x: linen_module_with_norm.apply({"params": p}, x))(
        params, ATTN_X
    )
    chex.assert_trees_all_close(out, want, atol=0.0, rtol=0.0)
    linen_grads = jax.jit(
        jax.grad(
            lambda p: jnp.sum(
                jnp.sin(linen_module_with_norm.apply({"params": p}, ATTN_X))
            )
        )
    )(params)
    nnx_grads = nnx.jit(nnx.grad(lambda m: jnp.sum(jnp.sin(m(ATTN_X)))))(twin)
    chex.assert_trees_all_close(
        pnnx.to_linen(nnx_grads)["params"], linen_grads, atol=0.0, rtol=0.0
    )


def test_residual_twin_errors():
    rngs = nnx.Rngs(0)
    norm = pnnx.RMSNorm(8, rngs=rngs)
    with pytest.raises(ValueError, match="needs the second sublayer"):
        pnnx.Residual(nnx.Linear(8, 8, rngs=rngs), norm, norm_position="parallel")
    with pytest.raises(ValueError, match="needs post_norm"):
        pnnx.Residual(nnx.Linear(8, 8, rngs=rngs), norm, norm_position="sandwich")
    with pytest.raises(ValueError, match="'layer_scale' needs num_features"):
        pnnx.Residual(nnx.Linear(8, 8, rngs=rngs), norm, output_scale="layer_scale")
    with pytest.raises(ValueError, match="output_scale"):
        pnnx.Residual(nnx.Linear(8, 8, rngs=rngs), norm, output_scale="layerscale")


def test_scan_over_stacked_attention_layers():
    """nnx.vmap builds 3 pre-LN attention layers, nnx.scan runs them in turn."""

    @nnx.vmap(in_axes=0, out_axes=0)
    def make(key):
        rngs = nnx.Rngs(key)
        return pnnx.Residual(
            pnnx.MultiHeadAttention(
                4, 4, 16, causal=True, rotary=pnnx.RotaryEmbedding(), rngs=rngs
            ),
            pnnx.RMSNorm(16, rngs=rngs),
            norm_position="pre",
        )

    keys = jax.random.split(jax.random.key(0), 3)
    stacked = make(keys)

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def run(layer, x):
        return layer(x)

    y = nnx.jit(run)(stacked, ATTN_X)
    expected = ATTN_X
    for i in range(3):
        layer = make(keys[i : i + 1])  # a stack of one, same key
        graphdef, state = nnx.split(layer)
        one = nnx.merge(graphdef, jax.tree.map(lambda a: a[0], state))
        expected = one(expected)
    chex.assert_trees_all_close(y, expected, atol=1e-5)
