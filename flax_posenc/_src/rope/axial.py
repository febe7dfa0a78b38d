"""N-axis RoPE for images, video and diffusion transformers: `AxialRope`.

Each position axis (frame, row, column, ...) rotates its own pairs of
features with its own frequencies. `AxialRope` says which pairs read which
axis and at which frequency; its presets are the published models'
(diffusers 0.42's FluxPosEmbed, Flux2PosEmbed, WanRotaryPosEmbed,
HunyuanVideoRotaryPosEmbed, CosmosRotaryPosEmbed, LTXVideoRotaryPosEmbed).
`apply_axial_rope(x, positions, rope=...)` rotates by it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flax_posenc._src import angles, validation

SPACINGS = ("inverse", "log_linear")


@dataclasses.dataclass(frozen=True)
class AxialRope:
    r"""An N-axis rotary embedding: each position axis, its features, its frequencies.

    Axis ``a`` owns ``axes_dim[a]`` features (``axes_dim[a] / 2`` pairs). Its
    frequencies are, with ``spacing="inverse"`` (Flux, Wan, HunyuanVideo,
    Cosmos), 1-D RoPE's over its own share:
    $\omega_{a,k} = (\theta_a \nu_a)^{-2k / d_a}$, ``k < d_a / 2``
    (``theta`` and the NTK factor ``ntk_factor``, per axis or one for all);
    with ``spacing="log_linear"`` (LTX-Video), rising from $\pi/2$ to
    $\theta \pi / 2$: $\omega_{a,k} = \theta_a^{k / (n - 1)} \pi / 2$,
    ``n = d_a / 2``. Pair ``j`` rotates by $p_a \omega_{a,k}$ at the token's
    coordinate $p_a$ on its axis; ``centered`` reads $2 p_a - 1$ instead
    (LTX: coordinates in $[0, 1]$ mapped to $[-1, 1]$).

    Where the pairs lie: ``layout`` pairs features as `apply_rope` does
    (``"interleaved"``: ``(2j, 2j + 1)``; ``"halves"``: ``(j, j + r/2)``);
    the pairs of the axes come one axis after another (``interleave_axes``
    false: Flux's ``[t | h | w]`` blocks), or cycle through the axes one
    frequency at a time (true: LTX's ``(t, k0), (h, k0), (w, k0), (t, k1),
    ...``); ``leading_identity`` features before them are not rotated (LTX:
    ``dim % 6``). The rotated part is the first ``rotary_dim =
    leading_identity + sum(axes_dim)`` features; any after it pass through.

    Attributes:
      axes_dim: the features of each axis (each even, >= 2).
      theta: the base, one for all axes or one per axis.
      ntk_factor: the base's NTK factor (``theta * ntk_factor``), one or per
        axis (Cosmos: ``rope_scale[a] ** (d_a / (d_a - 2))``).
      layout: ``"interleaved"`` or ``"halves"``.
      spacing: ``"inverse"`` or ``"log_linear"``.
      interleave_axes: the axes' pairs cycle frequency by frequency.
      leading_identity: unrotated features in front of the pairs (even).
      centered: coordinates ``p`` act as ``2 p - 1``.

    Examples:
      >>> import flax_posenc as fp
      >>> flux = fp.AxialRope.flux()
      >>> flux.axes_dim, flux.rotary_dim
      ((16, 56, 56), 128)
      >>> inv_freq, axis = flux.frequencies()
      >>> axis[:9].tolist(), round(float(inv_freq[8]), 6)
      ([0, 0, 0, 0, 0, 0, 0, 0, 1], 1.0)
    """

    axes_dim: tuple[int, ...]
    theta: float | tuple[float, ...] = 10_000.0
    ntk_factor: float | tuple[float, ...] = 1.0
    layout: str = "interleaved"
    spacing: str = "inverse"
    interleave_axes: bool = False
    leading_identity: int = 0
    centered: bool = False

    def __post_init__(self):
        dims = tuple(self.axes_dim)
        if not dims:
            raise ValueError("axes_dim needs at least one axis.")
        for d in dims:
            validation.check_int("axes_dim entries", d, minimum=2)
            if d % 2:
                raise ValueError(f"axes_dim entries must be even, got {list(dims)}.")
        object.__setattr__(self, "axes_dim", dims)
        for name in ("theta", "ntk_factor"):
            value = getattr(self, name)
            if isinstance(value, Sequence):
                value = tuple(validation.check_real(name, v) for v in value)
                if len(value) != len(dims):
                    raise ValueError(
                        f"{name} has {len(value)} entries for {len(dims)} axes."
                    )
            else:
                value = validation.check_real(name, value)
            object.__setattr__(self, name, value)
        validation.check_choice("layout", self.layout, angles.LAYOUTS)
        validation.check_choice("spacing", self.spacing, SPACINGS)
        validation.check_bools(
            interleave_axes=self.interleave_axes, centered=self.centered
        )
        pad = validation.check_int("leading_identity", self.leading_identity, minimum=0)
        if pad % 2:
            raise ValueError(f"leading_identity must be even, got {pad}.")
        if self.interleave_axes and len(set(dims)) != 1:
            raise ValueError(
                "interleave_axes cycles through the axes one frequency at a time, "
                f"so every axis needs the same features; got {list(dims)}."
            )

    @property
    def num_axes(self) -> int:
        """The position axes."""
        return len(self.axes_dim)

    @property
    def rotary_dim(self) -> int:
        """The leading features it acts on (the identity ones included)."""
        return self.leading_identity + sum(self.axes_dim)

    def _per_axis(self, value) -> tuple[float, ...]:
        return value if isinstance(value, tuple) else (value,) * self.num_axes

    def frequencies(self) -> tuple[np.ndarray, np.ndarray]:
        """``(inv_freq, axis)``: float64 ``[rotary_dim / 2]`` frequencies of the
        pairs and the int axis each reads (identity pairs: axis 0,
        frequency 0)."""
        per_axis = []
        for d, theta, ntk in zip(
            self.axes_dim,
            self._per_axis(self.theta),
            self._per_axis(self.ntk_factor),
            strict=True,
        ):
            pairs = d // 2
            if self.spacing == "inverse":
                k = np.arange(pairs, dtype=np.float64)
                per_axis.append((theta * ntk) ** (-2.0 * k / d))
            else:
                exponent = np.linspace(0.0, 1.0, pairs, dtype=np.float64)
                per_axis.append((theta * ntk) ** exponent * (math.pi / 2))
        if self.interleave_axes:
            inv_freq = np.stack(per_axis, axis=-1).reshape(-1)
            axis = np.tile(np.arange(self.num_axes), len(per_axis[0]))
        else:
            inv_freq = np.concatenate(per_axis)
            axis = np.repeat(np.arange(self.num_axes), [len(f) for f in per_axis])
        pad = self.leading_identity // 2
        inv_freq = np.concatenate([np.zeros(pad), inv_freq])
        axis = np.concatenate([np.zeros(pad, dtype=np.int64), axis])
        return inv_freq, axis

    # -- Presets ------------------------------------------------------------

    @classmethod
    def flux(cls) -> AxialRope:
        """FLUX.1 (diffusers ``FluxPosEmbed``): axes (16, 56, 56), theta
        10000, interleaved. Positions ``(0, row, column)`` of the image's
        packed latent grid; text tokens all zeros (no rotation)."""
        return cls((16, 56, 56), 10_000.0)

    @classmethod
    def flux2(cls) -> AxialRope:
        """FLUX.2 (``Flux2PosEmbed``): four axes (T, H, W, L) of 32, theta
        2000, interleaved. Text tokens ``(0, 0, 0, index)``, image latents
        ``(0, row, column, 0)``, reference image ``i`` at ``T = 10 + 10 i``."""
        return cls((32, 32, 32, 32), 2_000.0)

    @classmethod
    def wan(cls, head_dim: int = 128) -> AxialRope:
        """Wan 2.1 / 2.2 (``WanRotaryPosEmbed``): rows and columns ``2 (d //
        6)`` features each, frames the rest (44, 42, 42 for 128), theta
        10000, interleaved. Positions: frame, row, column of the patches."""
        head_dim = validation.check_int("head_dim", head_dim, minimum=6)
        side = 2 * (head_dim // 6)
        return cls((head_dim - 2 * side, side, side), 10_000.0)

    @classmethod
    def hunyuan_video(cls) -> AxialRope:
        """HunyuanVideo (``HunyuanVideoRotaryPosEmbed``): axes (16, 56, 56)
        over frame, row, column, theta 256, interleaved; text tokens are not
        rotated."""
        return cls((16, 56, 56), 256.0)

    @classmethod
    def cosmos(
        cls, head_dim: int = 128, rope_scale: Sequence[float] = (2.0, 1.0, 1.0)
    ) -> AxialRope:
        """Cosmos (``CosmosRotaryPosEmbed``): rows and columns ``(d // 6) * 2``
        features each, frames the rest; theta 10000 times the NTK factor
        ``rope_scale[a] ** (d_a / (d_a - 2))`` per axis; pairs ``(j, j +
        d/2)`` with the ``[t | h | w]`` angles in each half. ``rope_scale``:
        Cosmos-1.0 7B (2, 1, 1), 14B (2, 2, 2); Cosmos-2/2.5 (1, 3, 3) or (1,
        4, 4). Videos: frame coordinates ``f * 24 / fps``."""
        head_dim = validation.check_int("head_dim", head_dim, minimum=6)
        side = head_dim // 6 * 2
        dims = (head_dim - 2 * side, side, side)
        scale = tuple(validation.check_real("rope_scale", s) for s in rope_scale)
        if len(scale) != 3:
            raise ValueError(f"rope_scale needs 3 entries (t, h, w), got {scale}.")
        ntk = tuple(s ** (d / (d - 2)) for s, d in zip(scale, dims, strict=True))
        return cls(dims, 10_000.0, ntk, layout="halves")

    @classmethod
    def ltx_video(cls, dim: int = 2048) -> AxialRope:
        """LTX-Video (``LTXVideoRotaryPosEmbed``), applied to the whole
        ``dim = heads * head_dim`` features before the split into heads:
        ``dim // 6`` frequencies per axis rising from pi/2 to 10000 pi/2,
        the three axes interleaved frequency by frequency, ``dim % 6``
        unrotated features in front, coordinates in [0, 1] read as ``2 g -
        1`` (frames ``f * 8 / 25 / 20``, rows and columns ``r * 32 / 2048``
        in its pipeline: `video_grid_positions` with ``scale``)."""
        dim = validation.check_int("dim", dim, minimum=6)
        n = dim // 6
        return cls(
            (2 * n,) * 3,
            10_000.0,
            spacing="log_linear",
            interleave_axes=True,
            leading_identity=dim % 6,
            centered=True,
        )


def video_grid_positions(
    frames: int,
    height: int,
    width: int,
    *,
    scale: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
) -> jax.Array:
    """The ``(frame, row, column)`` of each patch of a ``frames x height x
    width`` video, frame-major then row-major (as video transformers flatten
    their patches).

    Integer coordinates (int32) by default; with ``scale`` and/or
    ``offset`` (one per axis), the real coordinates ``index * scale +
    offset`` (float32), e.g. Cosmos's frame rate (``scale=(24 / fps, 1,
    1)``) or LTX-Video's fractions (``scale=(8 / 25 / 20, 32 / 2048, 32 /
    2048)``).

    Args:
      frames: frames of patches (>= 1).
      height: rows of patches (>= 1).
      width: columns of patches (>= 1).
      scale: per-axis factors, or None.
      offset: per-axis offsets, or None.

    Returns:
      ``[frames * height * width, 3]``: int32, or float32 with scale/offset.

    Examples:
      >>> import flax_posenc as fp
      >>> fp.video_grid_positions(2, 1, 2).tolist()
      [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 1]]
    """
    sizes = [
        validation.check_int(name, value, minimum=1)
        for name, value in (("frames", frames), ("height", height), ("width", width))
    ]
    grids = np.meshgrid(*(np.arange(n) for n in sizes), indexing="ij")
    index = np.stack([g.reshape(-1) for g in grids], axis=-1)
    if scale is None and offset is None:
        return jnp.asarray(index, jnp.int32)
    factors = []
    for name, values, default in (("scale", scale, 1.0), ("offset", offset, 0.0)):
        values = (default,) * 3 if values is None else tuple(values)
        if len(values) != 3:
            raise ValueError(f"{name} needs 3 entries (frame, row, column).")
        factors.append(np.array([validation.check_real(name, v) for v in values]))
    return jnp.asarray(index * factors[0] + factors[1], jnp.float32)
