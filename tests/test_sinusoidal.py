"""sinusoidal_frequencies / sinusoidal_encoding / sinusoidal_table."""

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import flax_posenc as fp
from tests import references

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
LAYOUTS = ["interleaved", "halves"]


@pytest.mark.parametrize("dim", [2, 3, 8, 63, 512])
def test_paper_frequencies(dim):
    np.testing.assert_allclose(
        fp.sinusoidal_frequencies(dim), references.paper_frequencies(dim), rtol=1e-15
    )


@pytest.mark.parametrize("dim", [2, 4, 9, 512])
@pytest.mark.parametrize("timescales", [(1.0, 1e4), (2.0, 500.0)])
def test_tensor2tensor_frequencies(dim, timescales):
    low, high = timescales
    np.testing.assert_allclose(
        fp.sinusoidal_frequencies(
            dim, spacing="tensor2tensor", min_timescale=low, max_timescale=high
        ),
        references.tensor2tensor_frequencies(dim, low, high),
        rtol=1e-15,
    )


def test_tensor2tensor_max_timescale_defaults_to_base():
    np.testing.assert_allclose(
        fp.sinusoidal_frequencies(16, spacing="tensor2tensor", base=500.0),
        references.tensor2tensor_frequencies(16, 1.0, 500.0),
        rtol=1e-15,
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dim", [2, 7, 64])
@pytest.mark.parametrize("spacing", ["paper", "tensor2tensor"])
def test_encoding_matches_reference(transform, layout, dim, spacing):
    positions = np.array([[0, 1, 2, 3, 1000], [7, 7, 0, 50000, 123]])
    fn = transform(
        lambda p: fp.sinusoidal_encoding(p, dim, layout=layout, spacing=spacing)
    )
    ours = fn(jnp.asarray(positions))
    chex.assert_shape(ours, (2, 5, dim))
    chex.assert_type(ours, jnp.float32)
    omega = (
        references.paper_frequencies(dim)
        if spacing == "paper"
        else references.tensor2tensor_frequencies(dim)
    )
    expected = references.sinusoidal(positions, dim, omega, layout)
    np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=0)
    if dim % 2:
        assert np.all(np.asarray(ours)[..., -1] == 0.0)


def test_interleaved_is_halves_permuted():
    halves = np.asarray(fp.sinusoidal_table(20, 16, layout="halves"))
    interleaved = np.asarray(fp.sinusoidal_table(20, 16))
    permutation = np.stack([np.arange(8), np.arange(8) + 8], axis=1).reshape(-1)
    np.testing.assert_array_equal(interleaved, halves[:, permutation])


def test_table_equals_encoding_of_arange():
    np.testing.assert_array_equal(
        fp.sinusoidal_table(33, 10, layout="halves", base=100.0),
        fp.sinusoidal_encoding(jnp.arange(33), 10, layout="halves", base=100.0),
    )


def test_length_one():
    table = fp.sinusoidal_table(1, 6)
    np.testing.assert_array_equal(table, [[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_low_precision_dtypes(dtype):
    ours = jax.jit(lambda p: fp.sinusoidal_encoding(p, 32, dtype=dtype))(
        jnp.arange(4096)
    )
    chex.assert_type(ours, dtype)
    expected = references.sinusoidal(
        np.arange(4096), 32, references.paper_frequencies(32), "interleaved"
    )
    # Values are computed in float32, then rounded once: half an ulp of the
    # dtype at magnitude 1 (bf16: 2**-8, f16: 2**-11).
    atol = {jnp.bfloat16: 2**-8, jnp.float16: 2**-11, jnp.float32: 1e-6}[dtype]
    np.testing.assert_allclose(np.asarray(ours, np.float64), expected, atol=atol)


def test_deterministic_and_jit_equal():
    positions = jnp.arange(3000).reshape(3, 1000)
    eager = fp.sinusoidal_encoding(positions, 48)
    np.testing.assert_array_equal(eager, fp.sinusoidal_encoding(positions, 48))
    np.testing.assert_allclose(
        eager,
        jax.jit(fp.sinusoidal_encoding, static_argnums=1)(positions, 48),
        atol=1e-7,
    )


def test_vmap_over_rows():
    positions = jnp.arange(40).reshape(4, 10) * 3
    batched = jax.vmap(lambda p: fp.sinusoidal_encoding(p, 12))(positions)
    np.testing.assert_array_equal(batched, fp.sinusoidal_encoding(positions, 12))


# Properties -------------------------------------------------------------------

_TABLE = np.asarray(fp.sinusoidal_table(4096, 64), np.float64)
_OMEGA = references.paper_frequencies(64)


def _pair_indices(dim: int, layout: str) -> list[tuple[int, int]]:
    """Feature indices of (sin, cos) of frequency i, per the documented layouts."""
    n = dim // 2
    if layout == "interleaved":
        return [(2 * i, 2 * i + 1) for i in range(n)]
    return [(i, n + i) for i in range(n)]


def _rotation(k: int, omega=_OMEGA, layout="interleaved") -> np.ndarray:
    """M(k): block rotation taking (sin a, cos a) to (sin(a+b), cos(a+b))."""
    dim = 2 * len(omega)
    m = np.zeros((dim, dim))
    for (s, c), w in zip(_pair_indices(dim, layout), omega, strict=True):
        cos, sin = np.cos(k * w), np.sin(k * w)
        m[s, s], m[s, c] = cos, sin
        m[c, s], m[c, c] = -sin, cos
    return m


@settings(max_examples=60, deadline=None)
@given(p=st.integers(0, 2047), k=st.integers(-2047, 2047))
def test_relative_shift_is_a_rotation_independent_of_position(p, k):
    if p + k < 0:
        k = -k
    np.testing.assert_allclose(_rotation(k) @ _TABLE[p], _TABLE[p + k], atol=5e-6)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 4095))
def test_dot_product_depends_on_offset_only(k):
    # <PE(p), PE(p + k)> = sum_i cos(k w_i): the same for every p.
    dots = np.einsum("pd,pd->p", _TABLE[: 4096 - k], _TABLE[k:])
    np.testing.assert_allclose(dots, np.cos(k * _OMEGA).sum(), atol=2e-5)


def test_rows_are_unique_and_bounded():
    rows = _TABLE[:512]
    distances = np.linalg.norm(rows[:, None] - rows[None], axis=-1)
    distances = distances + np.eye(512) * 1e9
    assert distances.min() > 1e-2
    assert np.abs(_TABLE).max() <= 1.0


# The property tests below draw many shapes: compiled whole, a new shape costs
# one compilation instead of one per operation (about 5x less time).
_jit_table = jax.jit(
    fp.sinusoidal_table,
    static_argnums=(0, 1),
    static_argnames=("layout", "spacing"),
)


@settings(max_examples=20, deadline=None)
@given(short=st.integers(1, 64), extra=st.integers(1, 64))
def test_independent_of_sequence_length(short, extra):
    long_table = _jit_table(short + extra, 16)
    np.testing.assert_array_equal(long_table[:short], _jit_table(short, 16))


# Errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dim": 1}, ValueError, "dim must be >= 2, got 1"),
        ({"dim": 8.0}, TypeError, "dim must be an int"),
        ({"dim": True}, TypeError, "dim must be an int"),
        ({"layout": "pairs"}, ValueError, "'interleaved', 'halves'; got 'pairs'"),
        ({"spacing": "t2t"}, ValueError, "'paper', 'tensor2tensor'; got 't2t'"),
        ({"base": -1.0}, ValueError, "base must be a finite number > 0"),
        ({"min_timescale": 2.0}, ValueError, "tensor2tensor"),
        (
            {"spacing": "tensor2tensor", "max_timescale": 0.0},
            ValueError,
            "max_timescale must be a finite number > 0",
        ),
        ({"dtype": jnp.int32}, TypeError, "dtype must be a floating dtype"),
    ],
)
def test_errors(kwargs, error, match):
    kwargs = {"dim": 8, **kwargs}
    with pytest.raises(error, match=match):
        fp.sinusoidal_encoding(jnp.arange(4), **kwargs)


def test_float_positions_rejected():
    with pytest.raises(TypeError, match="positions must have an integer dtype"):
        fp.sinusoidal_encoding(jnp.arange(4.0), 8)


def test_table_length_error():
    with pytest.raises(ValueError, match="length must be >= 1, got 0"):
        fp.sinusoidal_table(0, 8)


_FREQUENCIES = {
    "paper": references.paper_frequencies,
    "tensor2tensor": references.tensor2tensor_frequencies,
}


@settings(max_examples=60, deadline=None)
@given(
    dim=st.integers(1, 96).map(lambda h: 2 * h),
    layout=st.sampled_from(LAYOUTS),
    spacing=st.sampled_from(sorted(_FREQUENCIES)),
    p=st.integers(0, 100_000),
    k=st.integers(-100_000, 100_000),
)
def test_shift_is_a_block_rotation_in_every_layout_and_spacing(
    dim, layout, spacing, p, k
):
    # PE(p + k) = M(k) PE(p), with M(k) built from the reference frequencies
    # and the documented pair positions, never from the code under test.
    rotation = _rotation(k, _FREQUENCIES[spacing](dim), layout)
    pe = fp.sinusoidal_encoding(
        jnp.array([p, p + k]), dim, layout=layout, spacing=spacing
    )
    pe = np.asarray(pe, np.float64)
    np.testing.assert_allclose(rotation @ pe[0], pe[1], atol=5e-6)


@settings(max_examples=25, deadline=None)
@given(
    dim=st.integers(2, 128),
    length=st.integers(2, 1024),
    layout=st.sampled_from(LAYOUTS),
    spacing=st.sampled_from(sorted(_FREQUENCIES)),
)
def test_rows_unique_bounded_and_deterministic(dim, length, layout, spacing):
    kwargs = {"layout": layout, "spacing": spacing}
    table = np.asarray(_jit_table(length, dim, **kwargs), np.float64)
    assert np.abs(table).max() <= 1.0
    # Every row differs from every other. With one frequency (dim 2 or 3) rows
    # p and p + 710 are only 6e-5 apart (710 / 2 pi is within 1e-5 of 113), so
    # the bound is 1e-5: twenty times the float32 error of the table, and far
    # from the 0 that a wrapped or clamped position would give.
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, in float64: its rounding (about 1e-14
    # for |a|^2 <= 64) is far below the bound's square, 1e-10.
    squared = (table**2).sum(-1)
    distances2 = squared[:, None] + squared[None] - 2 * table @ table.T
    assert (distances2 + np.eye(length) * 1e9).min() > 1e-10
    again = np.asarray(_jit_table(length, dim, **kwargs), np.float64)
    np.testing.assert_array_equal(table, again)
