"""MultiHeadAttention: projections, positions, masks and the decode cache."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import nnx as pnnx
from flax_posenc.linen import ALiBiBias, MultiHeadAttention, RMSNorm, RotaryEmbedding
from tests import references
from tests.references import f64

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
FEATURES = 16


def _x(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _reference(
    params,
    x,
    positions,
    *,
    heads,
    kv_heads,
    causal=False,
    window=None,
    chunk=None,
    segments=None,
    rotary=False,
    alibi=False,
    qk_norm=False,
    softcap=None,
    rotary_base=10_000.0,
):
    """The block in float64 from its parameters, written from the formulas."""
    p = jax.tree.map(f64, nn.meta.unbox(params))
    x = f64(x)
    q = np.einsum("...sf,fhd->...shd", x, p["query"]["kernel"])
    k = np.einsum("...sf,fhd->...shd", x, p["key"]["kernel"])
    v = np.einsum("...sf,fhd->...shd", x, p["value"]["kernel"])
    if qk_norm:
        q = references.rms_norm(q, p["query_norm"]["scale"])
        k = references.rms_norm(k, p["key_norm"]["scale"])
    positions = np.broadcast_to(np.asarray(positions), x.shape[:-1])
    if rotary:
        inv_freq = references.paper_frequencies(q.shape[-1], rotary_base)
        q = references.rope(q, positions, inv_freq)
        k = references.rope(k, positions, inv_freq)
    mask = references.attention_mask(positions, positions, causal, window, segments)
    if chunk is not None:  # Llama 4: a query sees keys of its own chunk only
        ids = positions // chunk
        mask = mask & (ids[..., :, None] == ids[..., None, :])
    bias = None
    if alibi:
        bias = references.alibi_bias(
            positions, positions, references.alibi_get_slopes(heads)
        )
    out = references.attention(q, k, v, mask[..., None, :, :], bias, softcap=softcap)
    return np.einsum("...shd,hdf->...sf", out, p["out"]["kernel"])


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(
    "options",
    [
        {"kv_heads": 4, "causal": True, "rotary": True},
        {"kv_heads": 2, "causal": True, "rotary": True, "window": 3},
        {"kv_heads": 1, "alibi": True},
        {"kv_heads": 2, "rotary": True, "qk_norm": True, "softcap": 2.0},
        {"kv_heads": 4, "causal": True, "rotary": True, "segments": True},
        {"kv_heads": 2, "causal": True, "rotary": True, "chunk": 3, "block": 3},
    ],
    ids=[
        "mha-rope",
        "gqa-window",
        "mqa-alibi",
        "qk-norm-softcap",
        "packed",
        "chunks-blockwise",
    ],
)
def test_forward_matches_reference(transform, options):
    heads, kv_heads = 4, options["kv_heads"]
    module = MultiHeadAttention(
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=8,
        causal=options.get("causal", False),
        sliding_window=options.get("window"),
        chunk_size=options.get("chunk"),
        rotary=RotaryEmbedding() if options.get("rotary") else None,
        position_bias=ALiBiBias(heads) if options.get("alibi") else None,
        qk_norm=RMSNorm() if options.get("qk_norm") else None,
        softcap=options.get("softcap"),
        block_size=options.get("block"),  # the blockwise path, blocks of 3
    )
    x = _x((2, 7, FEATURES))
    positions = jnp.array([[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 0, 1, 2, 3]])
    segments = (
        jnp.array([[1] * 7, [1, 1, 1, 2, 2, 2, 0]]) if options.get("segments") else None
    )
    variables = module.init(jax.random.key(0), x)
    if options.get("qk_norm"):  # non-trivial norm scales
        params = nn.meta.unbox(variables)["params"]
        params["query_norm"]["scale"] = jnp.linspace(0.5, 1.5, 8)
        params["key_norm"]["scale"] = jnp.linspace(1.5, 0.5, 8)
        variables = {"params": params}
    out = transform(
        lambda v, x: module.apply(v, x, positions=positions, segments=segments)
    )(variables, x)
    chex.assert_shape(out, x.shape)
    expected = _reference(
        variables["params"],
        x,
        positions,
        heads=heads,
        kv_heads=kv_heads,
        causal=options.get("causal", False),
        window=options.get("window"),
        chunk=options.get("chunk"),
        segments=None if segments is None else np.asarray(segments),
        rotary=options.get("rotary", False),
        alibi=options.get("alibi", False),
        qk_norm=options.get("qk_norm", False),
        softcap=options.get("softcap"),
    )
    chex.assert_trees_all_close(f64(out), expected, atol=3e-5)


DYNAMIC = {"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 4}


@pytest.mark.parametrize("twin", ["linen", "nnx"])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_dynamic_ntk_rotary_grows_its_base_with_the_sequence(transform, twin):
    module = MultiHeadAttention(
        num_heads=2, head_dim=8, causal=True, rotary=RotaryEmbedding(scaling=DYNAMIC)
    )
    x = _x((2, 7, FEATURES), seed=5)
    variables = module.init(jax.random.key(0), x)
    if twin == "linen":
        out = transform(lambda v, x: module.apply(v, x))(variables, x)
    else:
        nnx_module = pnnx.MultiHeadAttention(
            2,
            8,
            FEATURES,
            causal=True,
            rotary=pnnx.RotaryEmbedding(scaling=DYNAMIC),
            rngs=nnx.Rngs(0),
        )
        pnnx.from_linen(nnx_module, variables)
        out = (nnx.jit if transform is jax.jit else lambda f: f)(lambda m, x: m(x))(
            nnx_module, x
        )
    # transformers' rule: the base grows with max(positions) + 1 = 7 > 4.
    grown = references.rope_dynamic_base(8, 10_000.0, 2.0, 4, 7)
    expected = _reference(
        variables["params"],
        x,
        np.arange(7),
        heads=2,
        kv_heads=2,
        causal=True,
        rotary=True,
        rotary_base=grown,
    )
    chex.assert_trees_all_close(f64(out), expected, atol=3e-5)


def test_dynamic_ntk_rotary_with_traced_positions_needs_seq_len():
    module = MultiHeadAttention(
        num_heads=2, head_dim=8, causal=True, rotary=RotaryEmbedding(scaling=DYNAMIC)
    )
    x = _x((1, 7, FEATURES), seed=5)
    variables = module.init(jax.random.key(0), x)
    positions = jnp.arange(7)[None] + 3  # largest 9: seq_len 10
    call = jax.jit(
        lambda v, x, p, seq_len=None: module.apply(v, x, positions=p, seq_len=seq_len),
        static_argnames="seq_len",
    )
    with pytest.raises(ValueError, match="pass seq_len="):
        call(variables, x, positions)
    grown = references.rope_dynamic_base(8, 10_000.0, 2.0, 4, 10)
    expected = _reference(
        variables["params"],
        x,
        np.asarray(positions),
        heads=2,
        kv_heads=2,
        causal=True,
        rotary=True,
        rotary_base=grown,
    )
    out = call(variables, x, positions, seq_len=10)
    chex.assert_trees_all_close(f64(out), expected, atol=3e-5)
    eager = module.apply(variables, x, positions=positions)  # concrete: max + 1
    chex.assert_trees_all_close(f64(eager), expected, atol=3e-5)


def test_parameters_and_logical_axes():
    module = MultiHeadAttention(
        num_heads=4, num_kv_heads=2, head_dim=8, qkv_bias=True, out_features=12
    )
    variables = module.init(jax.random.key(0), _x((1, 3, FEATURES)))
    shapes = jax.tree.map(jnp.shape, nn.meta.unbox(variables["params"]))
    assert shapes == {
        "query": {"kernel": (16, 4, 8), "bias": (4, 8)},
        "key": {"kernel": (16, 2, 8), "bias": (2, 8)},
        "value": {"kernel": (16, 2, 8), "bias": (2, 8)},
        "out": {"kernel": (4, 8, 12)},
    }
    names = nn.get_partition_spec(variables)["params"]
    assert tuple(names["query"]["kernel"]) == ("embed", "heads", "kv")
    assert tuple(names["key"]["kernel"]) == ("embed", "kv_heads", "kv")
    assert tuple(names["out"]["kernel"]) == ("heads", "kv", "embed")


def _decode_module(**kwargs):
    return MultiHeadAttention(
        num_heads=4, num_kv_heads=2, head_dim=8, causal=True, **kwargs
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rotary": RotaryEmbedding()},
        {"rotary": RotaryEmbedding(), "sliding_window": 3},
        {"position_bias": ALiBiBias(4)},
        # Learned sinks (gpt-oss) and a query temperature of position
        # (Ministral 3's, blocks of 3 so that the steps cross blocks).
        {
            "rotary": RotaryEmbedding(),
            "sinks": True,
            "sinks_init": jax.nn.initializers.normal(1.0),
        },
        {
            "rotary": RotaryEmbedding(),
            "query_scale": functools.partial(
                fp.llama_4_scaling, beta=0.5, original_max_position_embeddings=3
            ),
        },
    ],
    ids=["rope", "rope-window", "alibi", "sinks", "query-scale"],
)
def test_prefill_then_steps_equal_the_full_forward(kwargs):
    module = _decode_module(**kwargs)
    x = _x((2, 8, FEATURES), seed=1)
    params = module.init(jax.random.key(0), x)["params"]
    full = module.apply({"params": params}, x)
    cache = module.init(jax.random.key(0), x, decode=True)["cache"]
    step = jax.jit(
        lambda cache, chunk: module.apply(
            {"params": params, "cache": cache}, chunk, decode=True, mutable=["cache"]
        )
    )
    outs = []
    out, state = step(cache, x[:, :3])  # prefill 3 tokens
    outs.append(out)
    cache = state["cache"]
    for t in range(3, 8):  # then one token at a time, past the window
        out, state = step(cache, x[:, t : t + 1])
        outs.append(out)
        cache = state["cache"]
    chex.assert_trees_all_close(jnp.concatenate(outs, axis=1), full, atol=2e-5)
    assert int(cache["cache_index"]) == 8


def test_left_padded_batch_with_per_row_offsets():
    """Row 1 is left-padded by 2: its tokens sit at slots 2.. with positions 0.."""
    module = _decode_module(rotary=RotaryEmbedding())
    x = _x((2, 6, FEATURES), seed=2)
    params = module.init(jax.random.key(0), x)["params"]
    cache = module.init(jax.random.key(0), jnp.zeros((2, 8, FEATURES)), decode=True)[
        "cache"
    ]
    positions = jnp.array([[0, 1, 2, 3], [0, 0, 0, 1]])
    segments = jnp.array([[1, 1, 1, 1], [0, 0, 1, 1]])
    prefill, state = module.apply(
        {"params": params, "cache": cache},
        x[:, :4],
        positions=positions,
        segments=segments,
        decode=True,
        mutable=["cache"],
    )
    steps = [prefill]
    cache = state["cache"]
    for t, offsets in ((4, [4, 2]), (5, [5, 3])):
        out, state = module.apply(
            {"params": params, "cache": cache},
            x[:, t : t + 1],
            positions=jnp.array(offsets)[:, None],
            decode=True,
            mutable=["cache"],
        )
        steps.append(out)
        cache = state["cache"]
    got = jnp.concatenate(steps, axis=1)
    # Each row alone, without padding, in one forward pass.
    row0 = module.apply({"params": params}, x[:1])
    row1 = module.apply({"params": params}, x[1:, 2:])
    chex.assert_trees_all_close(got[:1], row0, atol=2e-5)
    chex.assert_trees_all_close(got[1:, 2:], row1, atol=2e-5)


def test_dropout_needs_a_key_and_deterministic():
    module = MultiHeadAttention(num_heads=2, head_dim=4, dropout_rate=0.5)
    x = _x((1, 5, 8))
    variables = module.init(jax.random.key(0), x, deterministic=True)
    a = module.apply(variables, x, deterministic=True)
    b = module.apply(
        variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)}
    )
    assert np.abs(np.asarray(a - b)).max() > 1e-3
    with pytest.raises(Exception, match="deterministic"):
        module.apply(variables, x)


def test_errors():
    x = _x((1, 3, 8))
    with pytest.raises(ValueError, match="must divide num_heads 4"):
        MultiHeadAttention(num_heads=4, num_kv_heads=3, head_dim=2).init(
            jax.random.key(0), x
        )
    with pytest.raises(TypeError, match="positions"):
        MultiHeadAttention(num_heads=2, head_dim=2).init(
            jax.random.key(0), x, positions=jnp.arange(3.0)
        )
    for fields, error, match in [
        ({"implementation": "flash"}, ValueError, r"implementation"),
        ({"block_size": 0}, ValueError, r"block_size"),
        ({"chunk_size": 0}, ValueError, r"chunk_size"),
        ({"context_axis": 3}, TypeError, r"context_axis must be a mesh axis"),
        ({"context_axis": "c", "block_size": 8}, ValueError, r"leave implementation"),
        ({"context_axis": "c", "dropout_rate": 0.1}, ValueError, r"no dropout"),
        ({"context_axis": "c"}, ValueError, r"pass positions="),
    ]:
        with pytest.raises(error, match=match):
            MultiHeadAttention(num_heads=2, head_dim=2, **fields).init(
                jax.random.key(0), x
            )
    with pytest.raises(ValueError, match=r"decode=True has no ring"):
        MultiHeadAttention(num_heads=2, head_dim=2, context_axis="c").init(
            jax.random.key(0), x, positions=jnp.arange(3), decode=True
        )


def test_cache_holds_rotated_keys_and_their_positions():
    module = _decode_module(rotary=RotaryEmbedding())
    x = _x((1, 5, FEATURES), seed=3)
    params = module.init(jax.random.key(0), x)["params"]
    cache = module.init(jax.random.key(0), jnp.zeros((1, 6, FEATURES)), decode=True)[
        "cache"
    ]
    positions = jnp.array([[10, 11, 12, 13, 14]])
    _, state = module.apply(
        {"params": params, "cache": cache},
        x,
        positions=positions,
        decode=True,
        mutable=["cache"],
    )
    cache = state["cache"]
    kernel = f64(nn.meta.unbox(params)["key"]["kernel"])
    keys = np.einsum("...sf,fhd->...shd", f64(x), kernel)
    rotated = references.rope(
        keys, np.asarray(positions), references.paper_frequencies(8)
    )
    chex.assert_trees_all_close(f64(cache["cached_key"])[:, :5], rotated, atol=1e-5)
    np.testing.assert_array_equal(cache["cached_key"][:, 5], 0.0)
    np.testing.assert_array_equal(cache["cached_positions"][0, :5], positions[0])
    np.testing.assert_array_equal(cache["cached_segments"][0], [1, 1, 1, 1, 1, 0])
    assert int(cache["cache_index"]) == 5


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_module(dtype):
    module = MultiHeadAttention(
        num_heads=4, num_kv_heads=2, head_dim=8, rotary=RotaryEmbedding(), causal=True
    )
    low = module.clone(dtype=dtype)
    x = _x((2, 7, FEATURES), seed=4)
    variables = module.init(jax.random.key(0), x)
    out = jax.jit(low.apply)(variables, x.astype(dtype))
    chex.assert_type(out, dtype)
    expected = _reference(
        variables["params"],
        x,
        np.arange(7),
        heads=4,
        kv_heads=2,
        causal=True,
        rotary=True,
    )
    chex.assert_trees_all_close(f64(out), expected, atol=5e-2)


@pytest.mark.parametrize("seq", [3, 4])
def test_mrope_rotary_in_attention_is_text_rope(seq):
    x = _x((2, seq, FEATURES), seed=6)
    mrope = MultiHeadAttention(
        num_heads=4,
        head_dim=8,
        causal=True,
        rotary=RotaryEmbedding(mrope_section=(2, 1, 1)),
    )
    plain = MultiHeadAttention(
        num_heads=4, head_dim=8, causal=True, rotary=RotaryEmbedding()
    )
    params = plain.init(jax.random.key(0), x)["params"]
    chex.assert_trees_all_close(
        mrope.apply({"params": params}, x), plain.apply({"params": params}, x), atol=0.0
    )
