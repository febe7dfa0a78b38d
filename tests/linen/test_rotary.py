"""RotaryEmbedding: apply_rope on q and k with Flax conventions."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from flax_posenc.linen import RotaryEmbedding
from tests import references
from tests.references import f64

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
SHAPE = (2, 5, 3, 8)  # [batch, seq, heads, head_dim]


def _qk(seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(SHAPE).astype(np.float32)
    k = rng.standard_normal(SHAPE).astype(np.float32)
    return jnp.asarray(q), jnp.asarray(k)


def test_no_params():
    q, k = _qk()
    variables = RotaryEmbedding().init(jax.random.key(0), q, k)
    assert jax.tree.leaves(variables) == []


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_default_positions_are_arange(transform, layout):
    q, k = _qk()
    module = RotaryEmbedding(layout=layout)
    q_rot, k_rot = transform(module.apply)({}, q, k)
    chex.assert_shape((q_rot, k_rot), SHAPE)
    chex.assert_type((q_rot, k_rot), jnp.float32)
    inv_freq = references.paper_frequencies(8)
    for x, out in ((q, q_rot), (k, k_rot)):
        expected = references.rope(x, np.arange(5), inv_freq, layout)
        chex.assert_trees_all_close(f64(out), expected, atol=2e-6)
        chex.assert_trees_all_close(
            out, fp.apply_rope(x, jnp.arange(5), layout=layout), atol=1e-6
        )


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_explicit_positions(transform):
    q, k = _qk(1)
    positions = jnp.array([[3, 4, 5, 6, 7], [0, 1, 0, 1, 2]])
    module = RotaryEmbedding(base=500.0, rotary_dim=4)
    q_rot, k_rot = transform(lambda q, k, p: module.apply({}, q, k, positions=p))(
        q, k, positions
    )
    for x, out in ((q, q_rot), (k, k_rot)):
        expected = fp.apply_rope(x, positions, base=500.0, rotary_dim=4)
        chex.assert_trees_all_close(out, expected, atol=1e-6)
        reference = references.rope(
            x, positions, references.paper_frequencies(4, 500.0), rotary_dim=4
        )
        chex.assert_trees_all_close(f64(out), reference, atol=2e-6)
    default_q, _ = module.apply({}, q, k)
    assert not np.allclose(default_q, q_rot, atol=1e-3)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_hf_dict_scaling_attribute(transform):
    q, k = _qk(2)
    scaling = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    module = RotaryEmbedding(scaling=scaling)
    positions = jnp.array([0, 10, 100, 1000, 5000])
    q_rot, k_rot = transform(lambda q, k: module.apply({}, q, k, positions=positions))(
        q, k
    )
    inv_freq, attention = references.yarn_frequencies(8, 10_000.0, 4.0, 64)
    for x, out in ((q, q_rot), (k, k_rot)):
        chex.assert_trees_all_close(
            out, fp.apply_rope(x, positions, scaling=scaling), atol=1e-6
        )
        expected = references.rope(x, positions, inv_freq, attention_factor=attention)
        chex.assert_trees_all_close(f64(out), expected, atol=3e-6)


def test_typed_scaling_and_seq_len():
    q, k = _qk(3)
    scaling = fp.DynamicNTKScaling(factor=2.0, original_max_position_embeddings=4)
    module = RotaryEmbedding(scaling=scaling)
    q_rot, k_rot = module.apply({}, q, k, seq_len=16)
    grown = references.rope_dynamic_base(8, 10_000.0, 2.0, 4, 16)
    inv_freq = references.paper_frequencies(8, grown)
    for x, out in ((q, q_rot), (k, k_rot)):
        expected = references.rope(x, np.arange(5), inv_freq)
        chex.assert_trees_all_close(f64(out), expected, atol=2e-6)


def test_decoding_with_cache_offsets():
    """positions = offset[:, None] + arange(new) for one new token per row."""
    q, k = _qk(4)
    module = RotaryEmbedding()
    whole_q, whole_k = module.apply({}, q, k)
    offsets = jnp.array([3, 3])
    step_q, step_k = module.apply(
        {}, q[:, 3:4], k[:, 3:4], positions=offsets[:, None] + jnp.arange(1)
    )
    chex.assert_trees_all_close(
        (step_q, step_k), (whole_q[:, 3:4], whole_k[:, 3:4]), atol=1e-6
    )


def test_bf16():
    q, k = _qk(5)
    q_rot, k_rot = RotaryEmbedding().apply(
        {}, q.astype(jnp.bfloat16), k.astype(jnp.bfloat16)
    )
    chex.assert_type((q_rot, k_rot), jnp.bfloat16)
    expected = references.rope(
        q.astype(jnp.bfloat16), np.arange(5), references.paper_frequencies(8)
    )
    chex.assert_trees_all_close(f64(q_rot), expected, atol=2e-2)


def test_errors_propagate():
    q, k = _qk()
    with pytest.raises(ValueError, match="layout"):
        RotaryEmbedding(layout="neox").apply({}, q, k)
    with pytest.raises(TypeError, match="positions"):
        RotaryEmbedding().apply({}, q, k, positions=jnp.arange(5.0))


@pytest.mark.parametrize("shape", [(8,), (5, 8)])
def test_inputs_without_a_heads_axis_raise(shape):
    x = jnp.ones(shape)
    with pytest.raises(ValueError, match=r"\[\.\.\., seq, heads, head_dim\]"):
        RotaryEmbedding().apply({}, x, x)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_rope_parameters_dict_attribute(transform):
    """A transformers-5 dict's rope_theta and partial_rotary_factor are read."""
    q, k = _qk(3)
    params = {"rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.5}
    q_rot, k_rot = transform(RotaryEmbedding(scaling=params).apply)({}, q, k)
    positions = np.broadcast_to(np.arange(SHAPE[1]), SHAPE[:2])
    for x, out in ((q, q_rot), (k, k_rot)):
        expected = references.rope(
            x, positions, references.paper_frequencies(4, 1e6), "halves", 4
        )
        chex.assert_trees_all_close(f64(out), expected, atol=2e-6)


@pytest.mark.parametrize("interleaved", [False, True])
def test_mrope_default_positions_are_text_positions(interleaved):
    q, k = _qk(4)
    module = RotaryEmbedding(mrope_section=(2, 1, 1), mrope_interleaved=interleaved)
    q_rot, k_rot = module.apply({}, q, k)
    plain_q, plain_k = RotaryEmbedding().apply({}, q, k)
    chex.assert_trees_all_close((q_rot, k_rot), (plain_q, plain_k), atol=0.0)
    grid = jnp.stack([jnp.zeros(5, jnp.int32), jnp.arange(5), 4 - jnp.arange(5)], -1)
    q_img, _ = module.apply({}, q, k, positions=grid[None])
    theta = references.mrope_angles(
        np.asarray(grid)[None], references.paper_frequencies(8), (2, 1, 1), interleaved
    )
    expected = references.rope_from_angles(q, np.broadcast_to(theta, (2, 5, 4)))
    chex.assert_trees_all_close(f64(q_img), expected, atol=2e-6)
