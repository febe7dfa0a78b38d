"""Layers that reuse an earlier layer's keys and values (Gemma 4's
num_kv_shared_layers): MultiHeadAttention(reuses_kv=True) with shared_kv=,
both twins, against float64 attention written from the formula; decoding
over the other layer's cache; the schedule's sources as transformers'
kv_sharing_modes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests import references
from tests.references import f64

HEADS, KV_HEADS, DIM, FEATURES, WINDOW = 4, 2, 8, 16, 3
RNG = np.random.default_rng(3)
X1 = jnp.asarray(RNG.standard_normal((2, 6, FEATURES)).astype(np.float32))
X2 = jnp.asarray(RNG.standard_normal((2, 6, FEATURES)).astype(np.float32))
FIELDS = dict(causal=True, sliding_window=WINDOW)


def _rope(x, positions):
    return references.rope(x, positions, references.paper_frequencies(DIM))


def _reference(store, reuse, positions):
    """Queries from X2 with the reusing layer's weights and norm; keys and
    values from X1 with the storing layer's; the window's causal mask."""
    q = references.rms_norm(
        np.einsum("bsi,ihd->bshd", f64(X2), f64(reuse["query"]["kernel"])),
        reuse["query_norm"]["scale"],
    )
    k = references.rms_norm(
        np.einsum("bsi,ihd->bshd", f64(X1), f64(store["key"]["kernel"])),
        store["key_norm"]["scale"],
    )
    v = np.einsum("bsi,ihd->bshd", f64(X1), f64(store["value"]["kernel"]))
    mask = references.attention_mask(positions, positions, causal=True, window=WINDOW)
    out = references.attention(
        _rope(q, positions), _rope(k, positions), v, mask=mask[:, None]
    )
    return np.einsum("bshd,hdo->bso", out, f64(reuse["out"]["kernel"]))


def _norm(features, rngs=None):
    return pnnx.RMSNorm(features, rngs=rngs)


def test_a_reusing_layer_attends_over_the_other_layers_keys_both_twins():
    positions = np.broadcast_to(np.arange(6), (2, 6))
    kw = dict(num_kv_heads=KV_HEADS, **FIELDS)
    store = linen.MultiHeadAttention(
        HEADS, DIM, qk_norm=linen.RMSNorm(), rotary=linen.RotaryEmbedding(), **kw
    )
    reuse = linen.MultiHeadAttention(
        HEADS,
        DIM,
        qk_norm=linen.RMSNorm(),
        rotary=linen.RotaryEmbedding(),
        reuses_kv=True,
        **kw,
    )
    store_vars = store.init(jax.random.key(0), X1, return_kv=True)
    shared = store.apply(store_vars, X1, return_kv=True)[1]
    reuse_vars = reuse.init(jax.random.key(1), X2, shared_kv=shared)
    params = [nn.meta.unbox(v["params"]) for v in (store_vars, reuse_vars)]
    assert sorted(params[1]) == ["out", "query", "query_norm"]  # no key, value
    want = _reference(*params, positions)
    got = reuse.apply(reuse_vars, X2, shared_kv=shared)
    np.testing.assert_allclose(f64(got), want, atol=3e-6)

    twins = [
        pnnx.MultiHeadAttention(
            HEADS,
            DIM,
            FEATURES,
            qk_norm=_norm,
            rotary=pnnx.RotaryEmbedding(),
            reuses_kv=flag,
            rngs=nnx.Rngs(0),
            **kw,
        )
        for flag in (False, True)
    ]
    for twin, p in zip(twins, params, strict=True):
        pnnx.from_linen(twin, {"params": p})
    assert twins[1].key is None and twins[1].value is None
    _, shared = twins[0](X1, return_kv=True)
    np.testing.assert_allclose(f64(twins[1](X2, shared_kv=shared)), want, atol=3e-6)


def test_decoding_reads_the_other_layers_cache():
    """Prefill then one token at a time: the reusing layer over the storing
    layer's ring cache (window 3) equals the whole sequence at once."""
    store, reuse = (
        pnnx.MultiHeadAttention(
            HEADS,
            DIM,
            FEATURES,
            num_kv_heads=KV_HEADS,
            rotary=pnnx.RotaryEmbedding(),
            reuses_kv=flag,
            rngs=nnx.Rngs(i),
            **FIELDS,
        )
        for i, flag in enumerate((False, True))
    )
    _, shared = store(X1, return_kv=True)
    whole = reuse(X2, shared_kv=shared)
    store.init_cache((2, 8, FEATURES))
    reuse.init_cache((2, 8, FEATURES))  # nothing: it keeps no cache
    assert reuse.cache_index is None
    steps = []
    for start, stop in ((0, 3), (3, 4), (4, 5), (5, 6)):
        positions = jnp.broadcast_to(jnp.arange(start, stop), (2, stop - start))
        _, shared = store(
            X1[:, start:stop], positions=positions, decode=True, return_kv=True
        )
        steps.append(
            reuse(X2[:, start:stop], positions=positions, decode=True, shared_kv=shared)
        )
    np.testing.assert_allclose(
        f64(jnp.concatenate(steps, axis=1)), f64(whole), atol=2e-6
    )


def test_refusals():
    plain = pnnx.MultiHeadAttention(HEADS, DIM, FEATURES, rngs=nnx.Rngs(0))
    reuse = pnnx.MultiHeadAttention(
        HEADS, DIM, FEATURES, reuses_kv=True, rngs=nnx.Rngs(0)
    )
    _, shared = plain(X1, return_kv=True)
    with pytest.raises(ValueError, match="pass shared_kv="):
        reuse(X2)
    with pytest.raises(ValueError, match="built with reuses_kv=True"):
        plain(X2, shared_kv=shared)
    with pytest.raises(TypeError, match="must be a SharedKV"):
        reuse(X2, shared_kv=tuple(shared))
    with pytest.raises(ValueError, match="needs positions="):
        reuse(X2, shared_kv=shared, decode=True)


def test_the_schedule_reuses_the_last_earlier_layer_of_each_type():
    """transformers' kv_sharing_modes: the last num_kv_shared_layers layers
    reuse the last layer of their type before them (gemma-4-E2B: 20 of 35)."""
    sliding, full = "sliding_attention", "full_attention"
    types = [sliding, full, sliding, sliding, full, sliding, full]
    config = {
        "model_type": "gemma4_text",
        "hidden_size": 32,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "num_hidden_layers": 7,
        "layer_types": types,
        "num_kv_shared_layers": 3,
    }
    layers = fp.attention_schedule(config)
    assert [a.kv_shared_from for a in layers] == [None] * 4 + [1, 3, 1]
    module = pnnx.MultiHeadAttention.from_hf_config(config, layer=5, rngs=nnx.Rngs(0))
    assert module.reuses_kv and module.key is None
    with pytest.raises(ValueError, match="leaves no layer"):
        fp.attention_schedule({**config, "num_kv_shared_layers": 7})
    with pytest.raises(ValueError, match=r"type \['full_attention'\]"):
        fp.attention_schedule({**config, "num_kv_shared_layers": 6})
