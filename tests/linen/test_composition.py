"""The linen modules composed into tiny models, under jit(grad) and vmap."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_posenc.linen import (
    ALiBiBias,
    InputEmbedding,
    LayerNorm,
    LearnedPositionEmbedding,
    RelativePositionBias,
    Residual,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositionEmbedding,
    TokenEmbedding,
)

VOCAB = 11
FEATURES = 8
BATCH, SEQ = 3, 5


class DenseHeadLM(nn.Module):
    """InputEmbedding(sinusoidal) -> pre-LN Residual(Dense) -> LayerNorm -> Dense."""

    @nn.compact
    def __call__(self, ids):
        x = InputEmbedding(
            VOCAB,
            FEATURES,
            position=SinusoidalPositionEmbedding(),
            scale_by_sqrt_features=True,
            name="embed",
        )(ids)
        x = Residual(nn.Dense(FEATURES, name="ffn"), norm_position="pre", name="block")(
            x
        )
        x = LayerNorm(name="final_norm")(x)
        return nn.Dense(VOCAB, name="head")(x)


class TiedLM(nn.Module):
    """Token + learned positions -> pre-RMSNorm Residual(Dense) -> RMSNorm -> attend."""

    @nn.compact
    def __call__(self, ids):
        token = TokenEmbedding(VOCAB, FEATURES, name="token")
        x = token(ids)
        x = x + LearnedPositionEmbedding(16, FEATURES, name="position")(x)
        x = Residual(
            nn.Dense(FEATURES, name="ffn"),
            norm=RMSNorm(name="block_norm"),
            norm_position="pre",
            name="block",
        )(x)
        x = RMSNorm(name="final_norm")(x)
        return token.attend(x)


HEADS = 2


class RelativeAttentionLM(nn.Module):
    """Token embedding -> causal self-attention with RoPE on q and k plus ALiBi and
    T5 relative biases on the logits -> LayerNorm -> Dense."""

    @nn.compact
    def __call__(self, ids):
        x = TokenEmbedding(VOCAB, FEATURES, name="token")(ids)
        positions = jnp.arange(ids.shape[-1])
        q, k, v = (
            nn.DenseGeneral((HEADS, FEATURES // HEADS), name=name)(x)
            for name in ("query", "key", "value")
        )
        q, k = RotaryEmbedding(name="rotary")(q, k)
        bias = ALiBiBias(HEADS, name="alibi")(positions)
        bias = bias + RelativePositionBias(HEADS, bidirectional=False, name="relative")(
            positions
        )
        logits = jnp.einsum("...qhd,...khd->...hqk", q, k) + bias
        causal = positions[:, None] >= positions[None, :]
        weights = jax.nn.softmax(jnp.where(causal, logits, -1e9), axis=-1)
        out = jnp.einsum("...hqk,...khd->...qhd", weights, v)
        x = x + nn.DenseGeneral(FEATURES, axis=(-2, -1), name="out")(out)
        return nn.Dense(VOCAB, name="head")(LayerNorm(name="final_norm")(x))


MODELS = [
    pytest.param(DenseHeadLM(), id="dense_head"),
    pytest.param(TiedLM(), id="tied"),
    pytest.param(RelativeAttentionLM(), id="rope_alibi_relative"),
]

_RNG = np.random.default_rng(0)  # NumPy draws: no program to compile
IDS = jnp.asarray(_RNG.integers(0, VOCAB, (BATCH, SEQ)), jnp.int32)
TARGETS = jnp.asarray(_RNG.integers(0, VOCAB, (BATCH, SEQ)), jnp.int32)


def _init(model):
    return nn.meta.unbox(model.init(jax.random.key(2), IDS))["params"]


@pytest.mark.parametrize("model", MODELS)
def test_jit_grad_finite_and_nonzero_for_every_param(model):
    params = _init(model)

    def loss(p, ids, targets):
        logits = model.apply({"params": p}, ids)
        chex.assert_shape(logits, (BATCH, SEQ, VOCAB))
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))

    value = jax.jit(loss)(params, IDS, TARGETS)
    assert np.isfinite(float(value))
    grads = jax.jit(jax.grad(loss))(params, IDS, TARGETS)
    chex.assert_trees_all_equal_shapes(grads, params)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert len(flat) == len(jax.tree.leaves(params)) >= 6
    for path, grad in flat:
        name = jax.tree_util.keystr(path)
        assert np.isfinite(np.asarray(grad)).all(), name
        assert np.abs(np.asarray(grad)).max() > 0.0, name


@pytest.mark.parametrize("model", MODELS)
def test_vmap_of_apply_equals_batched_apply(model):
    params = _init(model)

    def apply(ids):
        return model.apply({"params": params}, ids)

    batched = jax.jit(apply)(IDS)
    mapped = jax.jit(jax.vmap(apply))(IDS)
    chex.assert_shape([batched, mapped], (BATCH, SEQ, VOCAB))
    chex.assert_trees_all_close(mapped, batched, atol=1e-5, rtol=1e-5)
    # And row by row, unjitted: each row alone gives the same logits.
    for row in range(BATCH):
        chex.assert_trees_all_close(apply(IDS[row]), batched[row], atol=1e-5)


@pytest.mark.parametrize("model", MODELS[:2])
def test_positions_matter(model):
    # The same token at every position must not give the same logits everywhere.
    params = _init(model)
    logits = model.apply({"params": params}, jnp.full((1, SEQ), 4))
    assert not np.allclose(np.asarray(logits[0, 0]), np.asarray(logits[0, 1]))


def test_order_matters_to_relative_attention():
    # Attention without positions is blind to the order of what it attends to:
    # the last token's logits would not change when the first two are swapped.
    # Here RoPE, ALiBi and T5 biases each make them change.
    model = RelativeAttentionLM()
    params = _init(model)
    ids = jnp.array([[1, 2, 3, 4, 5]])
    swapped = jnp.array([[2, 1, 3, 4, 5]])
    last = [model.apply({"params": params}, x)[0, -1] for x in (ids, swapped)]
    assert np.abs(np.asarray(last[0] - last[1])).max() > 1e-4
