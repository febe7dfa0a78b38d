"""RoPE itself: frequencies, the rotation kernel, and 1-D, multi-axis and axial RoPE.

Every public function checks its arguments in Python, parses a ``scaling``
once (`hf.parse`), computes the frequencies once, and rotates in one
compiled program, `_rope`, whose options are static.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flax_posenc._src import angles, validation
from flax_posenc._src.rope import hf
from flax_posenc._src.rope.axial import AxialRope
from flax_posenc._src.rope.scalings import (
    DynamicNTKScaling,
    LongRopeScaling,
    RopeScaling,
    default_frequencies,
)


def rope_frequencies(
    dim: int,
    *,
    base: float | None = None,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    max_position_embeddings: int | None = None,
) -> tuple[np.ndarray, float]:
    r"""RoPE angular frequencies and attention factor, with optional scaling.

    Unscaled (Su et al. 2021): $\omega_i = \mathrm{base}^{-2i/\mathrm{dim}}$,
    ``i = 0..dim/2-1``, where ``dim`` is the rotary dimension. ``scaling``
    changes them as the implementations the checkpoints were trained with do
    (transformers 5 ``modeling_rope_utils``; Meta's ``apply_scaling`` for llama3):

    - ``"linear"``: $\omega_i / s$.
    - ``"dynamic"``: the unscaled formula with
      $\mathrm{base}' = \mathrm{base}\,(s\,n/L - (s - 1))^{d/(d-2)}$,
      ``n = max(seq_len, L)``; unchanged while ``seq_len <= L`` or if ``seq_len``
      is None. ``L`` is ``max_position_embeddings`` (what transformers reads),
      else the dict's ``original_max_position_embeddings``.
    - ``"yarn"``: with $c(r) = d \ln(L / (2\pi r)) / (2 \ln \mathrm{base})$,
      ``lo = floor(c(beta_fast))``, ``hi = ceil(c(beta_slow))`` (no rounding when
      ``truncate`` is False), clipped to ``[0, d - 1]``, and
      $\gamma_i = \mathrm{clip}((i - lo)/(hi - lo), 0, 1)$:
      $\omega_i (1 - \gamma_i) + (\omega_i / s)\,\gamma_i$.
      Attention factor $0.1 \ln s + 1$ unless given; a missing ``factor`` is
      ``max_position_embeddings / L``.
    - ``"llama3"``: with wavelength $\lambda_i = 2\pi/\omega_i$: unchanged
      if $\lambda_i < L/h$, $\omega_i/s$ if $\lambda_i > L/l$,
      else $(1 - \mu)\,\omega_i/s + \mu\,\omega_i$,
      $\mu = (L/\lambda_i - l)/(h - l)$ (no band when ``l == h``).
    - ``"longrope"``: $\omega_i / f_i$ with ``f = short_factor`` while
      ``seq_len <= L`` (or ``seq_len`` is None), ``long_factor`` beyond;
      attention factor $\sqrt{1 + \ln s / \ln L}$ unless given.
    - ``"proportional"``: $\mathrm{base}^{-2i/d} / s$ for the first
      ``int(p * d // 2)`` pairs, 0 for the rest (``p = partial_rotary_factor``).

    Here ``s = factor``, ``L = original_max_position_embeddings``, ``l, h`` the
    low/high frequency factors. Computed in float64 at trace time.

    ``dim`` is the rotary dimension: a dict's ``partial_rotary_factor`` is not
    applied here (`apply_rope` applies it to the head dimension), except for
    ``"proportional"``, whose ``dim`` is the whole head.

    Args:
      dim: rotary dimension (even, >= 2).
      base: the frequency base (``rope_theta``). None reads the dict's
        ``rope_theta``, else 10000; a value that disagrees with the dict's is an
        error.
      scaling: None; a Hugging Face ``rope_scaling`` dict (transformers 4) or
        ``rope_parameters`` dict (transformers 5, carrying ``rope_theta`` and
        ``partial_rotary_factor``), with ``"rope_type"`` (or its alias ``"type"``)
        one of ``"default"``, ``"linear"``, ``"dynamic"``, ``"yarn"``,
        ``"llama3"``, ``"longrope"`` (alias ``"su"``), ``"proportional"``;
        or one of `LinearScaling`, `DynamicNTKScaling`, `YarnScaling`,
        `Llama3Scaling`, `LongRopeScaling`, `ProportionalScaling`. Keys set to
        None count as absent; unknown keys are warned about.
      seq_len: static sequence length, read by ``"dynamic"`` and ``"longrope"``.
      max_position_embeddings: the model config's value; ``L`` of
        ``"dynamic"``, and the stand-in for a dict's missing
        ``original_max_position_embeddings`` and for a missing YaRN / LongRoPE
        ``factor``, as in transformers.

    Returns:
      ``(inv_freq, attention_factor)``: float64 NumPy ``[dim // 2]`` and a float
      (1.0 except for YaRN and LongRoPE) that multiplies cos and sin.

    Raises:
      ValueError: odd or too small ``dim``, bad ``base`` or one that disagrees
        with ``rope_theta``, an unknown scaling type, a missing value,
        ``factor < 1`` or infinite, ``"dynamic"`` with ``dim == 2``, LongRoPE
        factor lists of the wrong length, YaRN ``beta_fast``/``beta_slow`` not
        finite and > 0 or ``base <= 1``, llama3 frequency factors not finite
        and > 0, a per-layer-type dict.
      TypeError: ``scaling`` of another type, a number that is not real.

    Examples:
      >>> import flax_posenc as fp
      >>> inv_freq, factor = fp.rope_frequencies(8)
      >>> inv_freq.round(4).tolist(), factor
      ([1.0, 0.1, 0.01, 0.001], 1.0)
      >>> llama31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      ...            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
      ...            "rope_theta": 500_000.0}
      >>> inv_freq, _ = fp.rope_frequencies(128, scaling=llama31)
      >>> inv_freq.shape
      (64,)

    References:
      Su et al., "RoFormer: Enhanced Transformer with Rotary Position
      Embedding", 2021. https://arxiv.org/abs/2104.09864

      Ding et al., "LongRoPE: Extending LLM Context Window Beyond 2 Million
      Tokens", 2024. https://arxiv.org/abs/2402.13753
    """
    dim = check_dim(dim)
    plan = hf.parse(scaling, base, max_position_embeddings)
    if seq_len is not None:
        seq_len = validation.check_int("seq_len", seq_len, minimum=1)
    return plan_frequencies(dim, plan, seq_len)


def check_dim(dim: int) -> int:
    dim = validation.check_int("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"the rotary dimension must be even, got {dim}.")
    return dim


def plan_frequencies(
    dim: int, plan: hf.Plan, seq_len: int | None
) -> tuple[np.ndarray, float]:
    """``(inv_freq, attention_factor)`` of a parsed plan."""
    if plan.scaling is None:
        return default_frequencies(dim, plan.base)[1], 1.0
    return plan.scaling.frequencies(dim, plan.base, seq_len)


def check_plan(rotary_dim: int, plan: hf.Plan) -> None:
    """Checks a plan for ``rotary_dim`` (the scaling's values, the M-RoPE
    section) as `frequencies` and `apply_rope` would, without computing."""
    dim = check_dim(rotary_dim)
    if plan.scaling is not None:
        plan.scaling.check(dim, plan.base)
    if plan.mrope_section is not None:
        pair_axes(dim // 2, plan.mrope_section, plan.mrope_interleaved)


def check_rotary_dim(
    head_dim: int,
    rotary_dim: int | None,
    scaling: RopeScaling | Mapping[str, Any] | None,
) -> int:
    """The rotary dimension `apply_rope` will use on ``head_dim`` features,
    checked before any call (a rotary module's fields)."""
    partial = None
    if isinstance(scaling, Mapping) and not hf.is_nested(scaling):
        kind = hf.rope_type(scaling)
        if kind != "proportional" and scaling.get("partial_rotary_factor") is not None:
            partial = validation.check_real(
                "partial_rotary_factor", scaling["partial_rotary_factor"]
            )
    return resolve_rotary_dim(head_dim, rotary_dim, partial)


def apply_rope(
    x: ArrayLike,
    positions: ArrayLike,
    *,
    base: float | None = None,
    layout: str = "halves",
    rotary_dim: int | None = None,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    max_position_embeddings: int | None = None,
    frequencies: tuple[ArrayLike, float] | None = None,
    mrope_section: Sequence[int] | None = None,
    mrope_interleaved: bool | None = None,
) -> jax.Array:
    r"""Rotates feature pairs of ``x`` by angles proportional to their positions.

    For pair ``i`` with frequency $\omega_i$ (`rope_frequencies`) at
    position ``p``, with $\theta = p\,\omega_i$ and attention factor ``a``:

    $$(y_a, y_b) = a\,(x_a \cos\theta - x_b \sin\theta,\;
                      x_b \cos\theta + x_a \sin\theta)$$

    - ``layout="halves"`` pairs features ``(i, i + r/2)`` (GPT-NeoX, Hugging
      Face Llama: ``x * cos + rotate_half(x) * sin``).
    - ``layout="interleaved"`` pairs ``(2i, 2i + 1)`` (GPT-J, Meta's Llama
      reference: complex multiplication).

    The two layouts give the same result up to a fixed permutation of the
    features. Only the first ``r = rotary_dim`` features rotate; the rest pass
    through bit-identical (GPT-NeoX's ``rotary_pct``). Because rotations
    compose, $\langle \mathrm{rope}(q, m), \mathrm{rope}(k, n)\rangle$
    depends only on ``m - n``. Angles are reduced exactly (within 1e-6 for
    positions below 2**20); the rotation is done in float32 and cast back to
    ``x.dtype``.

    **Multi-axis (M-RoPE, Qwen2-VL / Qwen3-VL).** With ``mrope_section`` (or a
    dict carrying it), ``positions`` is ``[..., seq, A]`` (e.g. time, height,
    width; transformers' ``position_ids`` ``[A, batch, seq]`` moved to the last
    axis) and frequency ``j`` reads one axis: contiguous bands of the sizes in
    ``mrope_section``, or, with ``mrope_interleaved``, axis ``a >= 1`` where
    ``j % A == a`` and ``j < A * mrope_section[a]`` (axis 0 elsewhere). A
    trailing axis of size 1 (text only: all axes equal) gives plain RoPE.

    **LongRoPE under jit.** With a static ``seq_len`` the factor set is chosen
    at trace time (``long_factor`` when ``seq_len > L``). With ``seq_len=None``
    it is chosen as transformers does, from the traced largest position:
    ``max(positions) + 1 > L``, over the whole ``positions`` array (per example
    under ``vmap``).

    Args:
      x: ``[..., seq, heads, head_dim]`` queries or keys.
      positions: integer ``[..., seq]``, broadcastable against ``x.shape[:-2]``:
        per-row offsets when decoding, restarting positions in packed rows;
        ``[..., seq, A]`` with ``mrope_section``. Any integer dtype; positions
        are computed in int32, so values must lie in ``[-2**31, 2**31)``.
        Concrete values outside it raise ``ValueError``; traced ones of a wider
        dtype (int64, uint32) cannot be checked and wrap modulo 2**32.
      base: frequency base (``rope_theta``); None reads the dict's, else 10000.
      layout: ``"halves"`` or ``"interleaved"``.
      rotary_dim: number of leading features to rotate (even); default all, or
        ``int(head_dim * partial_rotary_factor)`` when the dict carries that
        factor (a different explicit value is an error).
      scaling: see `rope_frequencies`; a transformers-5 ``rope_parameters``
        dict is read whole (``rope_theta``, ``partial_rotary_factor``,
        ``mrope_section``, ``mrope_interleaved``).
      seq_len: static sequence length for ``"dynamic"`` and ``"longrope"``.
        None: for ``"dynamic"``, ``max(positions) + 1`` of concrete positions
        (traced positions need it); for ``"longrope"``, see above.
      max_position_embeddings: see `rope_frequencies`.
      frequencies: ``(inv_freq, attention_factor)`` computed elsewhere (a new
        scheme needs only its frequency function): a static ``[rotary_dim / 2]``
        array. Excludes ``base``, ``scaling``, ``seq_len`` and
        ``max_position_embeddings``.
      mrope_section: the number of frequencies read by each position axis.
      mrope_interleaved: assign them interleaved (Qwen3-VL), not contiguous.

    Returns:
      Array of ``x``'s shape and dtype.

    Raises:
      ValueError: ``x`` of rank < 3, odd or too large ``rotary_dim``, one that
        disagrees with ``partial_rotary_factor``, unknown ``layout``, positions
        that do not broadcast, ``frequencies`` of the wrong length or with
        other frequency arguments, an ``mrope_section`` that does not sum to
        ``rotary_dim / 2`` or disagrees with the dict's, and as
        `rope_frequencies`; concrete positions outside the int32 range.
      TypeError: ``x`` not floating, ``positions`` not integer.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> q = jnp.ones((1, 3, 2, 4))  # [batch, seq, heads, head_dim]
      >>> fp.apply_rope(q, jnp.arange(3)[None]).shape
      (1, 3, 2, 4)
      >>> params = {"rope_type": "default", "rope_theta": 1e6,
      ...           "partial_rotary_factor": 0.5}  # transformers 5
      >>> out = fp.apply_rope(q, jnp.arange(3)[None], scaling=params)
      >>> bool((out[..., 2:] == q[..., 2:]).all())  # 2 of 4 features rotate
      True

    References:
      Su et al., "RoFormer: Enhanced Transformer with Rotary Position
      Embedding", 2021. https://arxiv.org/abs/2104.09864

      Wang et al., "Qwen2-VL: Enhancing Vision-Language Model's Perception of
      the World at Any Resolution", 2024. https://arxiv.org/abs/2409.12191
    """
    return rotate(
        (x,),
        positions,
        base=base,
        layout=layout,
        rotary_dim=rotary_dim,
        scaling=scaling,
        seq_len=seq_len,
        max_position_embeddings=max_position_embeddings,
        frequencies=frequencies,
        mrope_section=mrope_section,
        mrope_interleaved=mrope_interleaved,
    )[0]


def rotate(
    xs: Sequence[ArrayLike],
    positions: ArrayLike | None,
    *,
    base: float | None = None,
    layout: str = "halves",
    rotary_dim: int | None = None,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    max_position_embeddings: int | None = None,
    frequencies: tuple[ArrayLike, float] | None = None,
    mrope_section: Sequence[int] | None = None,
    mrope_interleaved: bool | None = None,
    head_dim: int | None = None,
    text: bool = False,
    default_positions: bool = False,
) -> tuple[jax.Array, ...]:
    """`apply_rope` on each of ``xs`` (queries and keys) with the same positions.

    The arguments are checked, the scaling parsed and the frequencies
    computed once for all of ``xs``. Unknown keys of a rope dict are warned
    about at the caller of the caller of this. For the rotary modules: every ``x`` must
    have ``head_dim`` features when it is set; with ``default_positions``,
    ``positions=None`` is ``arange(seq)`` (``[seq, 1]`` for M-RoPE: every
    axis equal), whose largest + 1 is the static ``seq_len`` when none is
    given; ``text``: ``[..., seq]`` positions of text, for every M-RoPE axis.
    """
    first = xs[0]
    if default_positions and positions is None and seq_len is None:
        if np.ndim(first) >= 3:
            seq_len = np.shape(first)[-3] or None
    if head_dim is not None:
        for name, x in zip(("q", "k"), xs, strict=False):
            shape = np.shape(x)  # lists too
            if shape and shape[-1] != head_dim:
                raise ValueError(
                    f"{name} has head_dim {shape[-1]}, but this rotary embedding "
                    f"is for head_dim {head_dim} (shape {shape})."
                )
    if default_positions and positions is None:
        if np.ndim(first) < 3:
            raise ValueError(
                f"q must be [..., seq, heads, head_dim], got shape {np.shape(first)}."
            )
        positions = jnp.arange(np.shape(first)[-3])
        if mrope_section is not None:
            positions = positions[:, None]
    elif text and mrope_section is not None:
        positions = jnp.asarray(positions)[..., None]
    options = dict(
        base=base,
        layout=layout,
        rotary_dim=rotary_dim,
        scaling=scaling,
        seq_len=seq_len,
        max_position_embeddings=max_position_embeddings,
        frequencies=frequencies,
        mrope_section=mrope_section,
        mrope_interleaved=mrope_interleaved,
    )
    x = _check_x(first)
    positions = validation.position_array("positions", positions)
    validation.check_choice("layout", layout, angles.LAYOUTS)
    width = x.shape[-1]
    if frequencies is not None:
        if (
            scaling is not None
            or base is not None
            or seq_len is not None
            or (max_position_embeddings is not None)
        ):
            raise ValueError(
                "frequencies= gives the frequencies whole: pass it without base, "
                "scaling, seq_len or max_position_embeddings."
            )
        plan = hf.Plan(base=1.0, scaling=None)
    else:
        plan = hf.parse(scaling, base, max_position_embeddings, stacklevel=4)
        if seq_len is not None:
            seq_len = validation.check_int("seq_len", seq_len, minimum=1)
        elif isinstance(plan.scaling, DynamicNTKScaling):
            seq_len = _length_from_positions(positions)
    rotary_dim = resolve_rotary_dim(width, rotary_dim, plan.partial_rotary_factor)
    section, interleaved = _multi_axis(plan, mrope_section, mrope_interleaved)
    axes = None if section is None else pair_axes(rotary_dim // 2, section, interleaved)
    _check_positions_fit(positions, x, None if section is None else len(section))
    given = positions
    checked = [x]
    for other in xs[1:]:
        other = _check_x(other)
        if other.shape[-1] != width:
            checked.append(None)  # another rotary dimension: rotated on its own
            continue
        if other.shape[:-2] != x.shape[:-2]:
            _check_positions_fit(
                positions, other, None if section is None else len(section)
            )
        checked.append(other)
    if axes is not None and positions.shape[-1] == 1:
        positions, axes = positions[..., 0], None  # all axes equal
    if frequencies is not None:
        inv_freq = np.asarray(frequencies[0])
        if not np.issubdtype(inv_freq.dtype, np.number) or np.iscomplexobj(inv_freq):
            raise TypeError(
                f"frequencies[0] must be real numbers, got dtype {inv_freq.dtype}."
            )
        inv_freq = inv_freq.astype(np.float64)
        if not np.isfinite(inv_freq).all():
            raise ValueError(f"frequencies[0] must be finite, got {inv_freq}.")
        if inv_freq.shape != (rotary_dim // 2,):
            raise ValueError(
                f"frequencies[0] must have shape ({rotary_dim // 2},) (rotary_dim / "
                f"2), got {inv_freq.shape}."
            )
        sin_cos = _sin_cos(
            positions,
            inv_freq,
            validation.check_real("frequencies[1]", frequencies[1]),
            axes,
        )
    elif isinstance(plan.scaling, LongRopeScaling) and seq_len is None:
        sin_cos = _longrope_sin_cos(positions, rotary_dim, plan, axes)
    else:
        inv_freq, attention = plan_frequencies(rotary_dim, plan, seq_len)
        sin_cos = None
        if isinstance(attention, jax.core.Tracer):
            sin_cos = _sin_cos(positions, inv_freq, attention, axes)
        else:
            static = dict(
                inv_freq=tuple(np.asarray(inv_freq, np.float64).tolist()),
                attention=float(attention),
                pair_axes=None if axes is None else tuple(axes.tolist()),
                layout=layout,
                rotary_dim=rotary_dim,
            )
    out = []
    for original, y in zip(xs, checked, strict=True):
        if y is None:
            out.append(rotate((original,), given, **options)[0])
        elif sin_cos is None:
            out.append(_rope(y, positions, **static))
        else:
            out.append(_rotate(y, *sin_cos, layout, rotary_dim))
    return tuple(out)


@functools.partial(
    jax.jit,
    static_argnames=("inv_freq", "attention", "pair_axes", "layout", "rotary_dim"),
)
def _rope(x, positions, *, inv_freq, attention, pair_axes, layout, rotary_dim):
    """The rotation as one compiled program per call signature (called op by
    op, eagerly, each of its operations would compile on its own). The
    frequencies are static: the angles read them in float64 at trace time."""
    pair_axes = None if pair_axes is None else np.asarray(pair_axes)
    inv_freq = np.asarray(inv_freq, np.float64)
    sin, cos = _sin_cos(positions, inv_freq, attention, pair_axes)
    return _rotate(x, sin, cos, layout, rotary_dim)


def _length_from_positions(positions: jax.Array) -> int | None:
    """Dynamic NTK's static length: ``max(positions) + 1``, as transformers."""
    if isinstance(positions, jax.core.Tracer):
        raise ValueError(
            "dynamic NTK scaling grows the base with the sequence length, "
            "max(positions) + 1, which traced positions (under jit) cannot give "
            "statically: pass seq_len= (the largest position so far + 1)."
        )
    return max(int(jnp.max(positions)) + 1, 1) if positions.size else None


def _multi_axis(plan: hf.Plan, section, interleaved):
    """The M-RoPE section and assignment from the arguments and the dict."""
    if section is not None:
        section = hf.section("mrope_section", section)
        if plan.mrope_section is not None and plan.mrope_section != section:
            raise ValueError(
                f"mrope_section={list(section)} disagrees with the rope dict's "
                f"{list(plan.mrope_section)}."
            )
    section = section if section is not None else plan.mrope_section
    if interleaved is None:
        interleaved = plan.mrope_interleaved
    return section, validation.check_bool("mrope_interleaved", interleaved)


def _sin_cos(positions, inv_freq, attention, pair_axes):
    """sin/cos ``[..., seq, r/2]`` times the attention factor;
    ``positions [..., seq, A]`` when multi-axis."""
    if pair_axes is None:
        sin, cos = angles.sin_cos(positions, inv_freq)
    else:
        sins, coss, order = [], [], []
        for axis in range(int(pair_axes.max()) + 1):
            index = np.flatnonzero(pair_axes == axis)
            if index.size:
                s, c = angles.sin_cos(positions[..., axis], inv_freq[index])
                sins.append(s)
                coss.append(c)
                order.extend(index.tolist())
        sin, cos = jnp.concatenate(sins, axis=-1), jnp.concatenate(coss, axis=-1)
        if order != sorted(order):
            back = np.argsort(order)
            sin, cos = sin[..., back], cos[..., back]
    if attention != 1.0:
        sin, cos = sin * attention, cos * attention
    return sin, cos


def _longrope_sin_cos(positions, rotary_dim, plan: hf.Plan, pair_axes):
    """LongRoPE's factor set chosen from the traced largest position."""
    original = plan.scaling.original_max_position_embeddings
    short = plan_frequencies(rotary_dim, plan, None)
    long = plan_frequencies(rotary_dim, plan, original + 1)
    use_long = jnp.max(positions) + 1 > original
    sin_s, cos_s = _sin_cos(positions, *short, pair_axes)
    sin_l, cos_l = _sin_cos(positions, *long, pair_axes)
    return jnp.where(use_long, sin_l, sin_s), jnp.where(use_long, cos_l, cos_s)


def pair_axes(pairs: int, section: tuple[int, ...], interleaved: bool) -> np.ndarray:
    """Which position axis each of ``pairs`` frequencies reads (multi-axis RoPE).

    Contiguous (Qwen2-VL): the first ``section[0]`` frequencies read axis 0, the
    next ``section[1]`` axis 1, and so on. Interleaved (Qwen3-VL): frequency
    ``j`` reads axis ``a >= 1`` when ``j % A == a`` and ``j < A * section[a]``,
    axis 0 otherwise.
    """
    if sum(section) != pairs:
        raise ValueError(
            f"mrope_section {list(section)} must sum to the number of rotated pairs "
            f"(rotary dim / 2 = {pairs}), got {sum(section)}."
        )
    if not interleaved:
        return np.repeat(np.arange(len(section)), section)
    count = len(section)
    j = np.arange(pairs)
    axes = np.zeros(pairs, dtype=np.int64)
    for axis in range(1, count):
        axes[(j % count == axis) & (j < count * section[axis])] = axis
    return axes


def _rotate(x, sin, cos, layout, rotary_dim):
    """Rotates the first ``rotary_dim`` features of ``x`` by angles with sin/cos.

    ``sin``/``cos``: float32 ``[..., seq, rotary_dim / 2]``, already multiplied
    by the attention factor.
    """
    # View the rotated features as pairs along a size-2 axis: [..., 2, r/2] for
    # "halves", [..., r/2, 2] for "interleaved". Then y = x * cos + swap(x) *
    # (-sin, +sin), where swap reverses that axis: no concatenation, and the
    # long axis stays contiguous, so XLA emits one vectorized elementwise loop.
    head_dim = x.shape[-1]
    half = rotary_dim // 2
    pair_axis = -2 if layout == "halves" else -1
    sin, cos = sin[..., None, :], cos[..., None, :]  # one angle for every head
    # (Materialized along the pair axis: XLA on CPU runs a broadcast there
    # several times slower.)
    cos = jnp.stack([cos, cos], axis=pair_axis)
    signed_sin = jnp.stack([-sin, sin], axis=pair_axis)
    work = validation.compute_dtype(x.dtype)
    pairs_shape = (2, half) if layout == "halves" else (half, 2)
    rotary = x if rotary_dim == head_dim else x[..., :rotary_dim]
    pairs = rotary.astype(work).reshape(*x.shape[:-1], *pairs_shape)
    swapped = jnp.flip(pairs, axis=pair_axis)
    rotated = (pairs * cos + swapped * signed_sin).reshape(*x.shape[:-1], rotary_dim)
    rotated = rotated.astype(x.dtype)
    if rotary_dim == head_dim:
        return rotated
    return jnp.concatenate([rotated, x[..., rotary_dim:]], axis=-1)


def _check_x(x) -> jax.Array:
    x = validation.floating_array("x", x)
    if x.ndim < 3:
        raise ValueError(f"x must be [..., seq, heads, head_dim], got shape {x.shape}.")
    return x


def _check_positions_fit(positions, x, axes: int | None) -> None:
    """``positions`` must broadcast to ``x.shape[:-2]`` (``+ (axes,)``)."""
    target = x.shape[:-2] if axes is None else (*x.shape[:-2], axes)
    try:
        fits = np.broadcast_shapes(positions.shape, target) == target
    except ValueError:
        fits = False
    if axes is not None and (
        positions.ndim < 2
        or positions.shape[-1] not in (1, axes)
        or positions.shape[-2] != x.shape[-3]
    ):
        # [..., seq, A] exactly: a [batch, seq] array whose seq happens to
        # equal A must not be read as axes.
        fits = False
    if not fits:
        what = "[..., seq]" if axes is None else f"[..., seq, {axes}]"
        raise ValueError(
            f"positions {positions.shape} must broadcast to x's {what} "
            f"{target} (x has shape {x.shape})."
        )
    if axes is not None and positions.shape[-1] != 1:
        # Could these be [..., seq] positions of text, missing the axes axis?
        try:
            text = np.broadcast_shapes(positions.shape[:-1], x.shape[:-3]) == tuple(
                x.shape[:-3]
            )
        except ValueError:
            text = False
        if text and positions.shape[-1] == x.shape[-3]:
            raise ValueError(
                f"positions {positions.shape} are ambiguous for x {x.shape}: "
                f"[..., seq, {axes}] (one position per axis) or [..., seq] (text, "
                f"without the axes axis). Give them x's leading axes, "
                f"[batch..., seq, {axes}] ({x.ndim - 1} axes): e.g. positions[None] "
                "for positions shared by the batch, or positions[..., None] for "
                "text (every axis equal)."
            )


def resolve_rotary_dim(
    head_dim: int, rotary_dim: int | None, partial_rotary_factor: float | None
) -> int:
    """The rotary dimension from an explicit value and a dict's factor."""
    if partial_rotary_factor is not None:
        from_factor = int(head_dim * partial_rotary_factor)
        if rotary_dim is not None and rotary_dim != from_factor:
            raise ValueError(
                f"rotary_dim={rotary_dim!r} disagrees with the rope dict's "
                f"partial_rotary_factor={partial_rotary_factor!r} (int({head_dim} * "
                f"{partial_rotary_factor}) = {from_factor}); pass one of them."
            )
        rotary_dim = from_factor
    if rotary_dim is None:
        if head_dim % 2:
            raise ValueError(
                f"head_dim {head_dim} is odd, but RoPE rotates every feature in "
                "pairs: use an even head_dim, or pass an even rotary_dim < "
                f"{head_dim} to rotate part of it."
            )
        rotary_dim = head_dim
    rotary_dim = validation.check_int("rotary_dim", rotary_dim, minimum=2)
    if rotary_dim > head_dim or rotary_dim % 2:
        raise ValueError(
            f"rotary_dim must be even and <= head_dim {head_dim}, got {rotary_dim}."
        )
    return rotary_dim


def grid_positions(height: int, width: int) -> jax.Array:
    """The ``(row, column)`` of each patch of an ``height x width`` grid.

    Row-major, as a vision transformer flattens its patches: patch ``n`` is at
    row ``n // width``, column ``n % width``. Pass the result to
    `apply_axial_rope`.

    Args:
      height: rows of patches (static, >= 1).
      width: columns of patches (static, >= 1).

    Returns:
      int32 ``[height * width, 2]``.

    Raises:
      ValueError: sizes below 1.
      TypeError: sizes not ints.

    Examples:
      >>> import flax_posenc as fp
      >>> fp.grid_positions(2, 3).tolist()
      [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    """
    height = validation.check_int("height", height, minimum=1)
    width = validation.check_int("width", width, minimum=1)
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.int32),
        jnp.arange(width, dtype=jnp.int32),
        indexing="ij",
    )
    return jnp.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1)


def apply_axial_rope(
    x: ArrayLike,
    positions: ArrayLike,
    *,
    base: float | None = None,
    layout: str | None = None,
    rotary_dim: int | None = None,
    rope: AxialRope | None = None,
) -> jax.Array:
    r"""Axial (N-axis) RoPE: each position axis rotates its own share of pairs.

    **Equal shares** (``rope=None``, vision transformers): with ``A`` axes
    (2 for the row and column of a patch) and ``r`` rotated features, pairs
    ``[a r / (2A), (a + 1) r / (2A))`` read axis ``a`` and have the
    frequencies of 1-D RoPE of dimension ``r / A``: $\omega_i =
    \mathrm{base}^{-2i A / r}$, so every axis sees the whole spectrum (Heo et
    al. 2024, "axial"); ``base`` (10000), ``layout`` (``"halves"``) and
    ``rotary_dim`` (all) as `apply_rope`'s.

    **The general form** (``rope=`` an `AxialRope`, image, video and
    diffusion transformers): each axis its own features, base, NTK factor,
    spacing and place, as the preset or spec says (`AxialRope.flux`,
    `AxialRope.flux2`, `AxialRope.wan`, `AxialRope.hunyuan_video`,
    `AxialRope.cosmos`, `AxialRope.ltx_video`); ``base``, ``layout`` and
    ``rotary_dim`` then come from it. Coordinates may be integers or real
    numbers (LTX-Video's fractions, Cosmos's frame rate): integers get the
    exact angles of `apply_rope`; real ones are reduced modulo a turn
    without the float32 product's rounding (within 1e-6 radians of float64
    for angles up to 2**20).

    Either way, relative in each axis separately: scores depend only on the
    offsets along each axis.

    Args:
      x: ``[..., seq, heads, head_dim]`` queries or keys (LTX-Video: ``[...,
        seq, 1, dim]``, the whole width before the split into heads).
      positions: ``[..., seq, A]``, e.g. `grid_positions` or
        `video_grid_positions`; integer, or floating with ``rope``.
      base: frequency base (equal shares).
      layout: ``"halves"`` or ``"interleaved"`` (equal shares).
      rotary_dim: leading features to rotate, a multiple of ``2 A`` (equal
        shares); default all.
      rope: an `AxialRope`, or None for equal shares.

    Returns:
      Array of ``x``'s shape and dtype.

    Raises:
      ValueError: ``rotary_dim`` not a multiple of ``2 A``; positions whose
        last axis is not the rope's axes or that do not broadcast; a rope
        wider than ``head_dim``; ``base``, ``layout`` or ``rotary_dim`` with
        ``rope``; and as `apply_rope`.
      TypeError: ``x`` not floating; positions not integer (equal shares) or
        not numbers.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> patches = jnp.ones((1, 6, 2, 8))  # [batch, 2 x 3 patches, heads, dim]
      >>> fp.apply_axial_rope(patches, fp.grid_positions(2, 3)).shape
      (1, 6, 2, 8)
      >>> video = jnp.ones((1, 4, 2, 128))  # 2 frames of 1 x 2 patches
      >>> ids = fp.video_grid_positions(2, 1, 2)
      >>> fp.apply_axial_rope(video, ids, rope=fp.AxialRope.wan(128)).shape
      (1, 4, 2, 128)

    References:
      Heo et al., "Rotary Position Embedding for Vision Transformer", 2024.
      https://arxiv.org/abs/2403.13298
    """
    x = _check_x(x)
    if rope is not None:
        return _apply_axial_spec(x, positions, base, layout, rotary_dim, rope)
    base = 10_000.0 if base is None else base
    layout = "halves" if layout is None else layout
    positions = validation.position_array("positions", positions)
    if positions.ndim < 2:
        raise ValueError(
            f"positions must be [..., seq, axes], got shape {positions.shape}."
        )
    axes = positions.shape[-1]
    rotary_dim = resolve_rotary_dim(x.shape[-1], rotary_dim, None)
    if rotary_dim % (2 * axes):
        raise ValueError(
            f"rotary_dim {rotary_dim} must be a multiple of 2 * axes = {2 * axes}."
        )
    per_axis = rope_frequencies(rotary_dim // axes, base=base)[0]
    return apply_rope(
        x,
        positions,
        layout=layout,
        rotary_dim=rotary_dim,
        frequencies=(np.tile(per_axis, axes), 1.0),
        mrope_section=(rotary_dim // (2 * axes),) * axes,
    )


def _apply_axial_spec(x, positions, base, layout, rotary_dim, rope) -> jax.Array:
    if not isinstance(rope, AxialRope):
        raise TypeError(f"rope must be an AxialRope, got {type(rope).__name__}.")
    given = [
        name
        for name, value in (
            ("base", base),
            ("layout", layout),
            ("rotary_dim", rotary_dim),
        )
        if value is not None
    ]
    if given:
        raise ValueError(
            f"{given} come from the AxialRope with rope=; leave them out "
            "(or build an AxialRope with the values you want)."
        )
    if rope.rotary_dim > x.shape[-1]:
        raise ValueError(
            f"this AxialRope rotates {rope.rotary_dim} features, but x has "
            f"head_dim {x.shape[-1]} (shape {x.shape})."
        )
    if not isinstance(positions, (jax.Array, np.ndarray)):
        positions = np.asarray(positions)
    if jnp.issubdtype(positions.dtype, jnp.floating):
        positions = validation.floating_array("positions", positions)
        real = True
    else:
        positions = validation.position_array("positions", positions)
        real = False
    _check_positions_fit(positions, x, rope.num_axes)
    inv_freq, axis = rope.frequencies()
    return _axial(
        x,
        positions,
        inv_freq=tuple(inv_freq.tolist()),
        axis=tuple(axis.tolist()),
        layout=rope.layout,
        rotary_dim=rope.rotary_dim,
        centered=rope.centered,
        real=real,
    )


@functools.partial(
    jax.jit,
    static_argnames=("inv_freq", "axis", "layout", "rotary_dim", "centered", "real"),
)
def _axial(x, positions, *, inv_freq, axis, layout, rotary_dim, centered, real):
    """The N-axis rotation, one compiled program per signature: each axis's
    angles from its coordinates (exact for integers, `angles.sin_cos_real`
    for real ones), in the pairs' order."""
    inv_freq, axis = np.asarray(inv_freq, np.float64), np.asarray(axis)
    positions = jnp.broadcast_to(positions, (*x.shape[:-2], positions.shape[-1]))
    if centered and not real:
        positions = 2 * positions - 1  # exact in integers
    sins, coss, order = [], [], []
    for a in range(int(axis.max()) + 1):
        index = np.flatnonzero(axis == a)
        if not real:
            s, c = angles.sin_cos(positions[..., a], inv_freq[index])
        elif centered:  # w (2p - 1) as (2w) p - w: 2p - 1 would round in float32
            w = inv_freq[index]
            s, c = angles.sin_cos_real(positions[..., a], 2 * w, phase=-w)
        else:
            s, c = angles.sin_cos_real(positions[..., a], inv_freq[index])
        sins.append(s)
        coss.append(c)
        order.extend(index.tolist())
    back = np.argsort(order)
    sin = jnp.concatenate(sins, axis=-1)[..., back]
    cos = jnp.concatenate(coss, axis=-1)[..., back]
    return _rotate(x, sin, cos, layout, rotary_dim)
