"""N-axis RoPE (AxialRope, its presets, video_grid_positions) against float64.

Each reference is the model's rotation written from diffusers 0.42's
formula, feature by feature, in float64: FluxPosEmbed / Flux2PosEmbed
(axis blocks of interleaved pairs), WanRotaryPosEmbed (its head split),
HunyuanVideoRotaryPosEmbed (theta 256), CosmosRotaryPosEmbed (NTK factors,
halves, frame rate) and LTXVideoRotaryPosEmbed (log-linear frequencies over
the whole width, axes interleaved per frequency, 2g - 1, identity padding).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax_posenc as fp
from tests import references
from tests.references import f64


def _interleaved(x, angle):
    """Pairs (2j, 2j + 1) rotated by ``angle [..., seq, pairs]``, as
    diffusers' apply_rotary_emb; features after them pass."""
    return references.rope_from_angles(x, angle, "interleaved")


def _blocks(positions, dims, theta, ntk=(1.0, 1.0, 1.0, 1.0)):
    """Axis blocks one after another: axis a's pairs k < d_a / 2 at
    p_a * (theta ntk_a) ** (-2k / d_a)."""
    positions = np.asarray(positions, np.float64)
    parts = []
    for a, d in enumerate(dims):
        k = np.arange(d // 2)
        parts.append(positions[..., a, None] * (theta * ntk[a]) ** (-2.0 * k / d))
    return np.concatenate(parts, axis=-1)


def _x(seq, heads, dim, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((2, seq, heads, dim)).astype(np.float32))


def test_flux_text_then_image_ids():
    # Text ids all zero (no rotation), then the image's (0, row, column).
    image = np.asarray(fp.video_grid_positions(1, 3, 4))
    ids = np.concatenate([np.zeros((5, 3), np.int32), image])
    x = _x(len(ids), 2, 128)
    got = fp.apply_axial_rope(x, ids, rope=fp.AxialRope.flux())
    want = _interleaved(x, _blocks(ids, (16, 56, 56), 10000.0))
    np.testing.assert_allclose(f64(got), want, atol=2e-6)
    np.testing.assert_array_equal(got[:, :5], x[:, :5])


def test_flux2_text_tokens_are_plain_rope_on_their_axis():
    # Text (0, 0, 0, l): axis 3's block is 1-D RoPE of 32 features, base
    # 2000, interleaved; the other three blocks do not move.
    text = np.stack([np.zeros(6), np.zeros(6), np.zeros(6), np.arange(6)], -1)
    text = text.astype(np.int32)
    x = _x(6, 3, 128, seed=1)
    got = fp.apply_axial_rope(x, text, rope=fp.AxialRope.flux2())
    np.testing.assert_array_equal(got[..., :96], x[..., :96])
    plain = fp.apply_rope(x[..., 96:], jnp.arange(6), base=2000.0, layout="interleaved")
    np.testing.assert_allclose(got[..., 96:], plain, atol=1e-6)
    ids = np.asarray(fp.video_grid_positions(1, 2, 3))
    ids = np.concatenate([ids, np.zeros((6, 1), np.int32)], -1)  # (0, h, w, 0)
    got = fp.apply_axial_rope(x, ids, rope=fp.AxialRope.flux2())
    want = _interleaved(x, _blocks(ids, (32, 32, 32, 32), 2000.0))
    np.testing.assert_allclose(f64(got), want, atol=2e-6)


@pytest.mark.parametrize("head_dim, split", [(128, (44, 42, 42)), (64, (24, 20, 20))])
def test_wan_splits_the_head_and_rotates_frame_row_column(head_dim, split):
    rope = fp.AxialRope.wan(head_dim)
    assert rope.axes_dim == split
    ids = fp.video_grid_positions(3, 2, 2)
    x = _x(12, 2, head_dim, seed=2)
    got = jax.jit(lambda x, p: fp.apply_axial_rope(x, p, rope=rope))(x, ids)
    want = _interleaved(x, _blocks(ids, split, 10000.0))
    np.testing.assert_allclose(f64(got), want, atol=2e-6)


def test_hunyuan_video_theta_256_and_exact_angles_far_out():
    ids = np.asarray(fp.video_grid_positions(2, 2, 2)) + np.array([0, 10**5, 3])
    x = _x(8, 2, 128, seed=3)
    got = fp.apply_axial_rope(x, ids, rope=fp.AxialRope.hunyuan_video())
    want = _interleaved(x, _blocks(ids, (16, 56, 56), 256.0))
    # Rows at 1e5: exact angles, not float32 products (off by ~1e-2 there).
    np.testing.assert_allclose(f64(got), want, atol=5e-6)


@pytest.mark.parametrize("fps", [None, 30.0])
def test_cosmos_ntk_factors_halves_and_frame_rate(fps):
    scale = (2.0, 3.0, 1.0)
    rope = fp.AxialRope.cosmos(128, rope_scale=scale)
    dims = (44, 42, 42)
    assert rope.axes_dim == dims
    ntk = (2.0 ** (44 / 42), 3.0 ** (42 / 40), 1.0)
    ids = fp.video_grid_positions(
        2, 3, 2, scale=None if fps is None else (24.0 / fps, 1.0, 1.0)
    )
    x = _x(12, 2, 128, seed=4)
    got = fp.apply_axial_rope(x, ids, rope=rope)
    index = np.asarray(fp.video_grid_positions(2, 3, 2), np.float64)
    if fps is not None:
        index[:, 0] = index[:, 0] / fps * 24  # diffusers: seq / fps * base_fps
    want = references.rope_from_angles(x, _blocks(index, dims, 10000.0, ntk), "halves")
    np.testing.assert_allclose(f64(got), want, atol=2e-6)


def test_ltx_video_over_the_whole_width():
    dim = 2048
    rope = fp.AxialRope.ltx_video(dim)
    scale = (8 / 25 / 20, 32 / 2048, 32 / 2048)  # its pipeline's fractions
    ids = fp.video_grid_positions(2, 3, 4, scale=scale)
    x = _x(24, 1, dim, seed=5)  # [batch, seq, 1, heads * head_dim]
    got = fp.apply_axial_rope(x, ids, rope=rope)
    # The formula: n = dim // 6 frequencies theta ** (k / (n - 1)) * pi / 2,
    # angle[k, a] = w[k] * (2 g_a - 1), pair index q = 3 k + a after the
    # dim % 6 identity features.
    n, pad = dim // 6, dim % 6
    w = 10000.0 ** (np.arange(n) / (n - 1)) * math.pi / 2
    g = f64(ids)  # the float32 coordinates given
    angle = w[None, :, None] * (2 * g[:, None, :] - 1)  # [seq, n, 3]
    rotated = _interleaved(f64(x)[..., pad:], angle.reshape(len(g), 3 * n))
    want = np.concatenate([f64(x)[..., :pad], rotated], axis=-1)
    # Angles reach 1.6e4 rad: float32 products would be off by ~1e-3 there.
    np.testing.assert_allclose(f64(got), want, atol=2e-5)


def test_video_grid_positions():
    grid = np.asarray(fp.video_grid_positions(2, 2, 3))
    assert grid.dtype == np.int32 and grid.shape == (12, 3)
    assert grid[7].tolist() == [1, 0, 1]  # frame-major, then row-major
    real = fp.video_grid_positions(1, 1, 2, scale=(1, 1, 0.5), offset=(0, 0, 1))
    assert real.dtype == jnp.float32 and real.tolist() == [[0, 0, 1], [0, 0, 1.5]]
    with pytest.raises(ValueError, match="3 entries"):
        fp.video_grid_positions(1, 1, 1, scale=(1, 2))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: fp.AxialRope((16, 15)), ValueError, "even"),
        (lambda: fp.AxialRope((16, 16), theta=(1.0,)), ValueError, "1 entries"),
        (
            lambda: fp.AxialRope((16, 8), interleave_axes=True),
            ValueError,
            "the same features",
        ),
        (lambda: fp.AxialRope((16,), layout="pairs"), ValueError, "layout"),
        (lambda: fp.AxialRope((16,), leading_identity=3), ValueError, "even"),
    ],
)
def test_axial_rope_spec_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_apply_axial_rope_with_a_spec_refuses_what_it_gives():
    x = jnp.ones((1, 4, 1, 128))
    ids = fp.video_grid_positions(1, 2, 2)
    with pytest.raises(ValueError, match=r"\['layout'\] come from the AxialRope"):
        fp.apply_axial_rope(x, ids, rope=fp.AxialRope.flux(), layout="halves")
    with pytest.raises(ValueError, match="rotates 128 features, but x has head_dim 64"):
        fp.apply_axial_rope(x[..., :64], ids, rope=fp.AxialRope.flux())
    with pytest.raises(ValueError, match="must broadcast"):
        fp.apply_axial_rope(x, ids, rope=fp.AxialRope.flux2())  # 3 axes for 4
    with pytest.raises(TypeError, match="AxialRope"):
        fp.apply_axial_rope(x, ids, rope=(16, 56, 56))
