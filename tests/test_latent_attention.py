"""MultiHeadLatentAttention (DeepSeek-V2/V3's MLA) against float64.

The reference is DeepSeek-V2's formula written out with the module's own
weights: low-rank queries, the compressed latent and the shared rotated key
from one down-projection, RMSNorm on both latents (epsilon 1e-6), RoPE on
the rotated parts only, per-head keys [k_nope, k_rot] and values from the
latent, and YaRN's mscale folded into the softmax scale.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen
from flax_posenc import nnx as pnnx
from tests import published_rope_configs as pub
from tests import references
from tests.references import f64

T = 10
CONFIG = {  # DeepSeek-V3's keys at toy sizes
    "model_type": "deepseek_v3",
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "num_hidden_layers": 2,
    "q_lora_rank": 12,
    "kv_lora_rank": 16,
    "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 4,
    "v_head_dim": 6,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,  # not the latents' norms' (transformers: 1e-6)
    "rope_theta": 100.0,
    "rope_scaling": {
        "type": "yarn",
        "factor": 4.0,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 16,
    },
}
MSCALE = 0.1 * math.log(4.0) + 1.0
SCALE = 12**-0.5 * MSCALE**2


def _reference(w, x, q_lora=True):
    x = f64(x)
    pos = np.arange(x.shape[-2])
    if q_lora:
        q = references.rms_norm(x @ f64(w["q_a"]), w["q_a_norm"])
        q = np.einsum("bsr,rhd->bshd", q, f64(w["q_b"]))
    else:
        q = np.einsum("bsi,ihd->bshd", x, f64(w["q"]))
    compressed = x @ f64(w["kv_a"])
    latent = references.rms_norm(compressed[..., :16], w["kv_a_norm"])
    k_rot = compressed[..., None, 16:]  # one head, shared
    inv_freq, factor = references.yarn_frequencies(
        4, 100.0, 4.0, 16, mscale=1.0, mscale_all_dim=1.0
    )
    assert factor == 1.0  # mscale / mscale_all_dim
    rotate = lambda a: references.rope(a, pos[None], inv_freq, "interleaved")  # noqa: E731
    q = np.concatenate([q[..., :8], rotate(q[..., 8:])], axis=-1)
    kv = np.einsum("bsr,rhd->bshd", latent, f64(w["kv_b"]))
    k = np.concatenate(
        [kv[..., :8], np.broadcast_to(rotate(k_rot), (*kv.shape[:-1], 4))], -1
    )
    v = kv[..., 8:]
    mask = references.attention_mask(pos, pos, causal=True)
    out = references.attention(q, k, v, mask=mask, scale=SCALE)
    return np.einsum("bshd,hdo->bso", out, f64(w["out"]))


def _x(seed):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((2, T, 32)).astype(np.float32))


def _nnx_weights(m):
    w = {
        "kv_a": m.kv_a_proj.kernel[...],
        "kv_a_norm": m.kv_a_norm.scale[...],
        "kv_b": m.kv_b_proj.kernel[...],
        "out": m.out.kernel[...],
    }
    if m.q_proj is None:
        w |= {
            "q_a": m.q_a_proj.kernel[...],
            "q_a_norm": m.q_a_norm.scale[...],
            "q_b": m.q_b_proj.kernel[...],
        }
    else:
        w["q"] = m.q_proj.kernel[...]
    return w


def _bump_norms(module_norms, seed):
    rng = np.random.default_rng(seed)
    for norm in module_norms:
        if norm is not None:
            shape = norm.scale[...].shape
            norm.scale[...] = jnp.asarray(1 + 0.3 * rng.standard_normal(shape))


def test_from_hf_config_gives_latent_attention_equal_to_the_formula():
    m = pnnx.MultiHeadAttention.from_hf_config(CONFIG, layer=1, rngs=nnx.Rngs(0))
    assert isinstance(m, pnnx.MultiHeadLatentAttention)
    assert math.isclose(m.scale, SCALE, rel_tol=1e-14)
    _bump_norms([m.q_a_norm, m.kv_a_norm], 0)
    x = _x(0)
    np.testing.assert_allclose(f64(m(x)), _reference(_nnx_weights(m), x), atol=2e-5)

    module = linen.MultiHeadAttention.from_hf_config(CONFIG, layer=0)
    assert isinstance(module, linen.MultiHeadLatentAttention)
    params = nn.meta.unbox(module.init(jax.random.key(1), x)["params"])
    rng = np.random.default_rng(1)
    for name in ("q_a_norm", "kv_a_norm"):
        shape = params[name]["scale"].shape
        params[name]["scale"] = jnp.asarray(1 + 0.3 * rng.standard_normal(shape))
    w = {
        "q_a": params["q_a_proj"]["kernel"],
        "q_a_norm": params["q_a_norm"]["scale"],
        "q_b": params["q_b_proj"]["kernel"],
        "kv_a": params["kv_a_proj"]["kernel"],
        "kv_a_norm": params["kv_a_norm"]["scale"],
        "kv_b": params["kv_b_proj"]["kernel"],
        "out": params["out"]["kernel"],
    }
    got = module.apply({"params": params}, x)
    np.testing.assert_allclose(f64(got), _reference(w, x), atol=2e-5)


def test_without_q_lora_rank_a_full_query_projection():
    config = {**CONFIG, "q_lora_rank": None}
    m = pnnx.MultiHeadLatentAttention.from_hf_config(config, layer=0, rngs=nnx.Rngs(2))
    assert m.q_a_proj is None and m.q_proj.kernel[...].shape == (32, 4, 12)
    _bump_norms([m.kv_a_norm], 2)
    x = _x(2)
    want = _reference(_nnx_weights(m), x, q_lora=False)
    np.testing.assert_allclose(f64(m(x)), want, atol=2e-5)


def test_the_cache_keeps_the_latent_and_decodes_as_the_whole_sequence():
    m = pnnx.MultiHeadLatentAttention.from_hf_config(CONFIG, layer=0, rngs=nnx.Rngs(3))
    _bump_norms([m.q_a_norm, m.kv_a_norm], 3)
    x = _x(3)
    whole = m(x)
    m.init_cache(x.shape)
    assert m.cached_latent[...].shape == (2, T, 1, 16)
    assert m.cached_rope_key[...].shape == (2, T, 1, 4)
    step = nnx.jit(lambda m, x: m(x, decode=True))
    parts = [step(m, x[:, :4])] + [step(m, x[:, t : t + 1]) for t in range(4, T)]
    np.testing.assert_allclose(f64(jnp.concatenate(parts, 1)), f64(whole), atol=2e-5)

    module = linen.MultiHeadLatentAttention.from_hf_config(CONFIG, layer=0)
    variables = module.init(jax.random.key(4), x, decode=True)
    whole = module.apply({"params": variables["params"]}, x)
    cache = variables["cache"]
    outs = []
    for lo, hi in [(0, 6), (6, 7), (7, T)]:
        out, state = module.apply(
            {"params": variables["params"], "cache": cache},
            x[:, lo:hi],
            decode=True,
            mutable=["cache"],
        )
        cache = state["cache"]
        outs.append(out)
    np.testing.assert_allclose(f64(jnp.concatenate(outs, 1)), f64(whole), atol=2e-5)


def test_published_deepseek_v3_schedule():
    layers = fp.attention_schedule(pub.DEEPSEEK_V3)
    assert len(layers) == 61
    mscale = 0.1 * math.log(40) + 1.0
    for layer in layers:
        assert layer.latent == fp.LatentDims(1536, 512, 128, 64, 128)
        assert (layer.head_dim, layer.num_heads, layer.causal) == (192, 128, True)
        assert math.isclose(layer.scale, 192**-0.5 * mscale**2, rel_tol=1e-14)
        assert layer.rope.layout == "interleaved" and layer.rope.head_dim == 64
        inv_freq, factor = fp.rope_frequencies(
            64,
            base=layer.rope.base,
            scaling=layer.rope.scaling,
            max_position_embeddings=layer.rope.max_position_embeddings,
        )
        want, want_factor = references.yarn_frequencies(
            64, 10000.0, 40.0, 4096, mscale=1.0, mscale_all_dim=1.0
        )
        np.testing.assert_allclose(inv_freq, want, rtol=1e-13)
        assert factor == want_factor == 1.0
    m = nnx.eval_shape(
        lambda: pnnx.MultiHeadAttention.from_hf_config(
            pub.DEEPSEEK_V3, layer=0, rngs=nnx.Rngs(0)
        )
    )
    assert m.kv_a_proj.kernel.shape == (7168, 512 + 64)
    assert m.kv_b_proj.kernel.shape == (512, 128, 128 + 128)
    assert m.q_b_proj.kernel.shape == (1536, 128, 192)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sinks_init": nn.initializers.ones}, TypeError, "no \\['sinks_init'\\]"),
        ({"sliding_window": 4}, TypeError, "cannot be set"),
    ],
)
def test_latent_overrides_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        linen.MultiHeadAttention.from_hf_config(CONFIG, layer=0, **kwargs)
