"""The window cache: a sliding-window layer decodes from a ring buffer of its window.

A layer with ``sliding_window=w`` keeps ``min(w, max_length)`` cache slots,
and a chunked layer (``chunk_size=c``) ``min(c, max_length)``: one chunk. Each
accepts any number of steps (past ``max_length`` too), and its outputs equal
the full forward pass: checked for three windows' (chunks') worth of tokens,
in both twins, with left padding and per-row offsets.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_posenc import linen
from flax_posenc import nnx as pnnx
from flax_posenc._src.attention import cache as kv_cache
from tests.references import normal

WINDOW, FEATURES, LENGTH = 3, 8, 9  # three windows of tokens
X = normal(7, (2, LENGTH, FEATURES))
# Row 1 is left-padded by 2 (segment 0): its tokens have positions 0..6.
POSITIONS = jnp.array([list(range(9)), [0, 0, *range(7)]])
SEGMENTS = jnp.array([[1] * 9, [0, 0] + [1] * 7])


RING_LAYERS = pytest.mark.parametrize("ring", ["sliding_window", "chunk_size"])


def _linen(ring="sliding_window"):
    return linen.MultiHeadAttention(
        num_heads=2,
        num_kv_heads=1,
        head_dim=4,
        causal=True,
        rotary=linen.RotaryEmbedding(),
        **{ring: WINDOW},
    )


def _decode(call, prefill=2):
    """A prefill of ``prefill`` tokens, then one token per step, to LENGTH."""
    outs = [call(slice(0, prefill))]
    outs += [call(slice(t, t + 1)) for t in range(prefill, LENGTH)]
    return jnp.concatenate(outs, axis=1)


def _expected(full):
    """Each row alone, without its padding, in one forward pass."""
    return full(X[:1]), full(X[1:, 2:])


def test_ring_slots_hold_the_latest_positions():
    cache = {
        "cached_key": jnp.zeros((1, 3, 1, 2)),
        "cached_value": jnp.zeros((1, 3, 1, 2)),
        "cached_positions": jnp.zeros((1, 3), jnp.int32),
        "cached_segments": jnp.zeros((1, 3), jnp.int32),
        "cache_index": jnp.array(0, jnp.int32),
    }
    ring, occupied = [0] * 3, [0] * 3  # a plain ring: token n in slot n % 3
    n = 0
    for count in (2, 1, 4, 1):
        positions = jnp.arange(n, n + count)[None] + 10
        k = jnp.broadcast_to(positions[..., None, None], (1, count, 1, 2)) * 1.0
        cache, _, _, key_positions, *_ = kv_cache.write_window_cache(
            cache, k, k, positions, None
        )
        # Attended over: the ring as it was, then the new tokens.
        assert key_positions.shape == (1, 3 + count)
        np.testing.assert_array_equal(key_positions[0, 3:], np.asarray(positions[0]))
        for p in np.asarray(positions[0]):
            ring[n % 3], occupied[n % 3] = int(p), 1
            n += 1
        assert np.asarray(cache["cached_positions"][0]).tolist() == ring
        assert np.asarray(cache["cached_key"][0, :, 0, 0]).tolist() == ring
        assert np.asarray(cache["cached_segments"][0]).tolist() == occupied
        assert int(cache["cache_index"]) == n


@RING_LAYERS
def test_linen_window_decode_equals_the_full_forward(ring):
    module = _linen(ring)
    params = module.init(jax.random.key(0), X)["params"]
    # max_length 4 < LENGTH: a ring accepts steps past it.
    cache = module.init(jax.random.key(0), X[:, :4], decode=True)["cache"]
    assert cache["cached_key"].shape == (2, WINDOW, 1, 4)

    @jax.jit
    def step(cache, x, positions, segments):
        return module.apply(
            {"params": params, "cache": cache},
            x,
            positions=positions,
            segments=segments,
            decode=True,
            mutable=["cache"],
        )

    state = {"cache": cache}

    def call(part):
        out, new = step(
            state["cache"], X[:, part], POSITIONS[:, part], SEGMENTS[:, part]
        )
        state["cache"] = new["cache"]
        return out

    got = _decode(call)
    row0, row1 = _expected(lambda x: module.apply({"params": params}, x))
    chex.assert_trees_all_close(got[:1], row0, atol=2e-5)
    chex.assert_trees_all_close(got[1:, 2:], row1, atol=2e-5)
    assert int(state["cache"]["cache_index"]) == LENGTH


@RING_LAYERS
def test_nnx_window_decode_equals_the_full_forward(ring):
    module = _linen(ring)
    params = module.init(jax.random.key(0), X)["params"]
    twin = pnnx.MultiHeadAttention(
        2,
        4,
        FEATURES,
        num_kv_heads=1,
        causal=True,
        rotary=pnnx.RotaryEmbedding(),
        rngs=nnx.Rngs(0),
        **{ring: WINDOW},
    )
    pnnx.from_linen(twin, {"params": params})
    twin.init_cache((2, 4, FEATURES))
    assert twin.cached_key[...].shape == (2, WINDOW, 1, 4)

    def call(part):
        return twin(
            X[:, part],
            positions=POSITIONS[:, part],
            segments=SEGMENTS[:, part],
            decode=True,
        )

    got = _decode(call, prefill=4)
    row0, row1 = _expected(lambda x: module.apply({"params": params}, x))
    chex.assert_trees_all_close(got[:1], row0, atol=2e-5)
    chex.assert_trees_all_close(got[1:, 2:], row1, atol=2e-5)


def _step(module, variables, t):
    _, state = module.apply(variables, X[:, t : t + 1], decode=True, mutable=["cache"])
    return {"params": variables["params"], "cache": state["cache"]}


def test_a_full_cache_still_overflows_and_a_window_one_does_not():
    full = linen.MultiHeadAttention(num_heads=2, head_dim=4, causal=True)
    ring = linen.MultiHeadAttention(
        num_heads=2, head_dim=4, causal=True, sliding_window=2
    )
    for module in (full, ring):
        variables = module.init(jax.random.key(0), X[:, :3], decode=True)
        for t in range(3):
            variables = _step(module, variables, t)
        if module is full:
            with pytest.raises(ValueError, match=r"the decode cache is full"):
                _step(module, variables, 3)
        else:
            variables = _step(module, variables, 3)
            assert int(variables["cache"]["cache_index"]) == 4


def test_a_long_prefill_takes_the_blockwise_path(monkeypatch):
    # A prompt written into the cache attends as positions and segments: by
    # size it takes the blockwise path (here "large" from 1 logit), no [q, k].
    from flax_posenc._src.attention import api

    module = linen.MultiHeadAttention(
        num_heads=2, head_dim=4, causal=True, rotary=linen.RotaryEmbedding()
    )
    variables = module.init(jax.random.key(0), X, decode=True)

    def prefill():
        out, _ = module.apply(variables, X[:, :5], decode=True, mutable=["cache"])
        return out

    dense = prefill()
    calls = []
    real = api.blockwise.blockwise_attention

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "BLOCKWISE_FROM", 1)
    monkeypatch.setattr(api.blockwise, "blockwise_attention", counted)
    chex.assert_trees_all_close(prefill(), dense, atol=1e-5)
    assert calls == [(2, 5, 2, 4)]
