"""Bad and extreme arguments of the linen modules: clear errors, or accepted."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_posenc import linen
from tests import references
from tests.references import f64

KEY = jax.random.key(0)
IDS = jnp.array([[1, 2]])
X = jnp.ones((1, 2, 4))


def init_apply(module, *args, **kwargs):
    variables = module.init(KEY, *args, **kwargs)
    return module.apply(variables, *args, **kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda dtype: linen.TokenEmbedding(10, 4, dtype=dtype).init(KEY, IDS),
        lambda dtype: linen.TokenEmbedding(10, 4, param_dtype=dtype).init(KEY, IDS),
        lambda dtype: linen.LearnedPositionEmbedding(8, 4, dtype=dtype).init(KEY, X),
        lambda dtype: linen.RelativePositionBias(2, dtype=dtype).init(
            KEY, jnp.arange(3)
        ),
        lambda dtype: linen.InputEmbedding(10, 4, dtype=dtype).init(KEY, IDS),
    ],
    ids=["token", "token-param", "learned", "relative", "input"],
)
def test_integer_dtype_rejected(make):
    # An int32 table or output truncates the learned values, most to 0.
    with pytest.raises(TypeError, match=r"dtype must be a floating dtype, got int32"):
        make(jnp.int32)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 0}, "num_heads must be >= 1, got 0"),
        ({"num_heads": -1}, "num_heads must be >= 1, got -1"),
        ({"num_heads": 2, "num_buckets": 0}, "num_buckets must be >= 2, got 0"),
        ({"num_heads": 2, "num_buckets": 6, "max_distance": 1}, "max_distance"),
    ],
    ids=["heads-0", "heads-negative", "buckets-0", "max-distance"],
)
def test_relative_position_bias_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        linen.RelativePositionBias(**kwargs).init(KEY, jnp.arange(3))


@pytest.mark.parametrize("rate", [-0.5, 1.0, 1.5])
@pytest.mark.parametrize(
    "make",
    [
        lambda r: linen.InputEmbedding(10, 4, dropout_rate=r, deterministic=True),
        lambda r: linen.Residual(nn.Dense(4), dropout_rate=r, deterministic=True),
        lambda r: linen.MultiHeadAttention(2, 2, dropout_rate=r, deterministic=True),
    ],
    ids=["input", "residual", "attention"],
)
def test_dropout_rate_outside_unit_interval(make, rate):
    module = make(rate)
    inputs = IDS if isinstance(module, linen.InputEmbedding) else X
    with pytest.raises(
        ValueError, match=rf"dropout_rate must be in \[0, 1\), got {rate}"
    ):
        module.init(KEY, inputs)


def test_attention_complex_scale_rejected():
    with pytest.raises(TypeError, match="scale must be a real number"):
        linen.MultiHeadAttention(2, 2, scale=np.complex64(1 + 1j)).init(KEY, X)


@pytest.mark.parametrize(
    "make",
    [
        lambda: linen.InputEmbedding(10, 4, position="sinusoidal"),
        lambda: linen.InputEmbedding(10, 4, norm="layernorm"),
        lambda: linen.Residual("dense"),
        lambda: linen.Residual(nn.Dense(4), norm="rms"),
        lambda: linen.MultiHeadAttention(2, 2, rotary="rope"),
    ],
    ids=["position", "norm", "sublayer", "residual-norm", "rotary"],
)
def test_scheme_name_instead_of_module(make):
    module = make()
    inputs = IDS if isinstance(module, linen.InputEmbedding) else X
    with pytest.raises(TypeError, match=r"must be a module.*got str"):
        module.init(KEY, inputs)


@pytest.mark.parametrize("module", [linen.LayerNorm(), linen.RMSNorm()])
def test_norms_take_lists(module):
    x = [[1.0, 2.0, 4.0]]
    reference = (
        references.layer_norm
        if isinstance(module, linen.LayerNorm)
        else references.rms_norm
    )
    np.testing.assert_allclose(f64(init_apply(module, x)), reference(x), atol=1e-6)


def test_norm_numpy_integer_axis_and_bad_forms():
    x = jnp.arange(6.0).reshape(2, 3)
    got = init_apply(
        linen.LayerNorm(axis=np.int64(0), use_scale=False, use_bias=False), x
    )
    np.testing.assert_allclose(f64(got), references.layer_norm(x, axis=0), atol=1e-5)
    with pytest.raises(TypeError, match="axis must be an int"):
        linen.LayerNorm(axis=1.0).init(KEY, x)
    with pytest.raises(TypeError, match="epsilon must be a real number"):
        linen.RMSNorm(epsilon="1e-5").init(KEY, x)


@pytest.mark.filterwarnings("error::DeprecationWarning")  # jnp.shape(list)
def test_rotary_takes_lists():
    q = np.arange(8.0).reshape(1, 2, 1, 4) / 8
    got_q, got_k = linen.RotaryEmbedding().apply({}, q.tolist(), q.tolist())
    expected = references.rope(q, np.arange(2), references.paper_frequencies(4))
    np.testing.assert_allclose(f64(got_q), expected, atol=1e-6)
    np.testing.assert_allclose(f64(got_k), expected, atol=1e-6)


def test_sinusoidal_module_takes_lists():
    x = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
    got = linen.SinusoidalPositionEmbedding().apply({}, x)
    expected = references.paper_sinusoidal(np.arange(2), 4)
    np.testing.assert_allclose(f64(got), expected, atol=1e-6)


def test_learned_module_takes_lists():
    x = [[1.0, 2.0], [3.0, 4.0]]
    module = linen.LearnedPositionEmbedding(4, 2)
    variables = module.init(KEY, jnp.asarray(x))
    table = f64(nn.meta.unbox(variables)["params"]["embedding"])
    np.testing.assert_array_equal(f64(module.apply(variables, x)), table[:2])
