"""implementation="jax": masks from default positions as jax.nn's structured
arguments (``is_causal``, ``local_window_size``), against jax.nn run with those
arguments by hand and a float64 reference; every other mask as an array."""

import chex
import jax
import numpy as np
import pytest

import flax_posenc as fp
from flax_posenc._src.attention import api
from tests import references
from tests.references import f64

# jax.nn keeps key j for query i when -right <= i - j <= left; our window w
# keeps 0 <= i - j < w (causal) or |i - j| < w: left = w - 1, and right = 0
# or w - 1. Written out here, not taken from the code under test.
CASES = [
    pytest.param(True, None, dict(is_causal=True), id="causal"),
    pytest.param(False, 3, dict(local_window_size=(2, 2)), id="window"),
    pytest.param(
        True, 3, dict(is_causal=True, local_window_size=(2, 0)), id="causal-window"
    ),
]


def _qkv(length=7, heads=4, kv_heads=2, seed=0):
    # Grouped-query: 4 query heads read 2 key/value heads.
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((2, length, heads, 8)).astype(np.float32)
    k = rng.standard_normal((2, length, kv_heads, 8)).astype(np.float32)
    v = rng.standard_normal((2, length, kv_heads, 8)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize(("causal", "window", "structured"), CASES)
def test_structured_mask_matches_jax_nn_by_hand_and_the_reference(
    causal, window, structured
):
    q, k, v = _qkv()
    pos = np.arange(q.shape[1])
    expected = references.attention(
        q, k, v, references.attention_mask(pos, pos, causal, window)[None, None]
    )
    by_hand = jax.nn.dot_product_attention(q, k, v, implementation="xla", **structured)
    ours = fp.dot_product_attention(
        q, k, v, causal=causal, sliding_window=window, implementation="jax"
    )
    chex.assert_trees_all_close(f64(by_hand), expected, atol=1e-5)
    chex.assert_trees_all_close(f64(ours), expected, atol=1e-5)


def test_structured_mask_and_an_array_mask_and_bias_with_empty_rows():
    # The array mask leaves query 3 nothing inside its causal window: zeros,
    # with finite gradients, as the dense path with the whole mask gives.
    q, k, v = _qkv(seed=1)
    pos = np.arange(q.shape[1])
    user = np.random.default_rng(2).random((2, 1, 7, 7)) > 0.3
    user[:, :, 3, 1:4] = False
    bias = np.random.default_rng(3).standard_normal((1, 4, 7, 7)).astype(np.float32)
    whole = user & references.attention_mask(pos, pos, True, 3)[None, None]
    expected = references.attention(q, k, v, whole, bias)
    assert not whole[:, :, 3].any()

    def loss(q, implementation, **kwargs):
        out = fp.dot_product_attention(
            q, k, v, bias=bias, implementation=implementation, **kwargs
        )
        return (out**2).sum(), out

    grad = jax.grad(loss, has_aux=True)
    dq, out = grad(q, "jax", causal=True, sliding_window=3, mask=user)
    dense_dq, _ = grad(q, "xla", mask=whole)
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5)
    np.testing.assert_array_equal(f64(out)[:, 3], 0.0)
    chex.assert_trees_all_close(dq, dense_dq, atol=1e-5)


@pytest.fixture
def spy(monkeypatch):
    """The keyword arguments of each call to jax.nn.dot_product_attention."""
    calls = []
    real = jax.nn.dot_product_attention

    def spied(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", spied)
    api._attend.clear_cache()  # a cached trace would not call it
    yield calls
    api._attend.clear_cache()


@pytest.mark.parametrize(("causal", "window", "structured"), CASES)
def test_expressible_masks_reach_jax_nn_as_structured_arguments(
    spy, causal, window, structured
):
    q, k, v = _qkv()
    fp.dot_product_attention(
        q, k, v, causal=causal, sliding_window=window, implementation="jax"
    )
    (call,) = spy
    assert call["mask"] is None
    assert call["is_causal"] == structured.get("is_causal", False)
    assert call["local_window_size"] == structured.get("local_window_size")


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(
            dict(q_positions=np.arange(7), k_positions=np.arange(7)), id="pos"
        ),
        pytest.param(dict(q_segments=np.array([1, 1, 1, 2, 2, 2, 0])), id="segments"),
        pytest.param(dict(chunk_size=4), id="chunks"),
        pytest.param(dict(k_positions=np.arange(9), length=9), id="unequal-lengths"),
    ],
)
def test_other_masks_reach_jax_nn_as_an_array(spy, kwargs):
    kwargs = dict(kwargs)
    k_len = kwargs.pop("length", 7)
    q, _, _ = _qkv()
    _, k, v = _qkv(length=k_len)
    if k_len != 7:
        kwargs["q_positions"] = np.arange(2, 9)
    out = fp.dot_product_attention(
        q, k, v, causal=True, sliding_window=3, implementation="jax", **kwargs
    )
    (call,) = spy
    assert call["mask"] is not None
    assert not call["is_causal"]
    assert call["local_window_size"] is None
    q_pos = kwargs.get("q_positions", np.arange(7))
    k_pos = kwargs.get("k_positions", np.arange(k_len))
    mask = references.attention_mask(q_pos, k_pos, True, 3, kwargs.get("q_segments"))
    if "chunk_size" in kwargs:
        mask &= (q_pos[:, None] // 4) == (k_pos[None, :] // 4)
    expected = references.attention(q, k, v, mask[None, None])
    chex.assert_trees_all_close(f64(out), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("dtypes", "v_dim", "match"),
    [
        (("float32", "float32", "bfloat16"), 8, "mixed dtypes"),
        (("float32",) * 3, 4, "v_dim 4 unequal to the q/k head_dim 8"),
        (("float16",) * 3, 8, "float16 on CPU"),
    ],
)
def test_what_jax_nn_cannot_do_is_named(dtypes, v_dim, match):
    if "float16" in dtypes and jax.default_backend() != "cpu":
        pytest.skip("jax.nn compiles float16 off CPU")
    q, k, v = _qkv()
    q, k = q.astype(dtypes[0]), k.astype(dtypes[1])
    v = v[..., :v_dim].astype(dtypes[2])
    with pytest.raises(ValueError, match=f"implementation='jax'.*{match}"):
        fp.dot_product_attention(q, k, v, causal=True, implementation="jax")
