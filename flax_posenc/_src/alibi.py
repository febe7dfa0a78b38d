"""ALiBi: attention with linear biases (Press et al. 2022)."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from flax_posenc._src import validation


def alibi_slopes(num_heads: int) -> np.ndarray:
    r"""The per-head slopes of ALiBi.

    For ``n`` a power of two: $m_h = 2^{-8(h+1)/n}$, ``h = 0..n-1``. For
    other ``n``, with ``c`` the largest power of two below ``n``: the ``c``
    slopes for ``c`` heads, followed by the first ``n - c`` of every other slope
    for ``2c`` heads ($2^{-8k/(2c)}$, ``k = 1, 3, 5, ...``), as in the
    paper's reference code.

    Args:
      num_heads: number of attention heads (>= 1).

    Returns:
      float64 NumPy array ``[num_heads]``.

    Raises:
      ValueError: ``num_heads < 1``.
      TypeError: ``num_heads`` not an int.

    Examples:
      >>> import flax_posenc as fp
      >>> fp.alibi_slopes(4).tolist()
      [0.25, 0.0625, 0.015625, 0.00390625]

    References:
      Press, Smith and Lewis, "Train Short, Test Long: Attention with Linear
      Biases Enables Input Length Extrapolation", 2022.
      https://arxiv.org/abs/2108.12409
    """
    num_heads = validation.check_int("num_heads", num_heads, minimum=1)
    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = 2.0 ** (-8.0 * np.arange(1, closest + 1) / closest)
    if closest == num_heads:
        return slopes
    extra = 2.0 ** (-8.0 * np.arange(1, 2 * closest + 1, 2) / (2 * closest))
    return np.concatenate([slopes, extra[: num_heads - closest]])


# The forms of ALiBi's biases: the paper's -m |q - k|, and m k (the keys'
# positions only: BLOOM's and Falcon-RW's code).
ALIBI_FORMS = ("distance", "key_position")


def alibi_bias(
    q_positions: ArrayLike,
    k_positions: ArrayLike,
    num_heads: int,
    *,
    dtype: DTypeLike = jnp.float32,
    form: str = "distance",
    slope_dtype: DTypeLike | None = None,
    scale: float = 1.0,
) -> jax.Array:
    r"""ALiBi attention biases: $b[h, i, j] = -m_h\,|q_i - k_j|$.

    Add the result to the attention logits before the softmax. Causal
    attention adds its usual mask too (``-inf`` where ``k_j > q_i``); on the
    allowed entries ``|q_i - k_j| = q_i - k_j``, the paper's bias. For
    bidirectional attention the symmetric distance is used as is.

    ``form="key_position"`` gives $b[h, i, j] = m_h k_j$, as BLOOM's and
    Falcon-RW's code computes ALiBi: under a causal softmax it differs from
    the paper's by $m_h q_i$ in each query's row, which the softmax removes,
    so the two give the same attention but for rounding. Porting such a
    checkpoint exactly takes its form, and its rounding: ``slope_dtype`` and
    ``scale``.

    Args:
      q_positions: integer ``[..., q_len]``, any integer dtype, values in the
        int32 range (checked unless traced; see `apply_rope`).
      k_positions: integer ``[..., k_len]``; leading axes broadcast with the
        queries'.
      num_heads: number of heads; slopes from `alibi_slopes`.
      dtype: floating output dtype (distances are exact integers first, for
        every pair of int32 positions).
      form: ``"distance"`` (the paper's) or ``"key_position"``.
      slope_dtype: None (slopes and products in float32), or the dtype the
        slopes, the positions (or distances) and their products are rounded
        to, as a checkpoint's code computed them (Falcon-RW:
        ``jnp.bfloat16``, PyTorch's ``slopes.bfloat16() * positions``).
      scale: a factor on the biases, applied in float32 after that rounding
        (Falcon-RW: ``head_dim ** -0.5``: its code scales the biases with
        the logits).

    Returns:
      ``[..., num_heads, q_len, k_len]`` array of ``dtype``.

    Raises:
      TypeError: positions not integer, ``dtype`` or ``slope_dtype`` not
        floating, ``scale`` not a real number.
      ValueError: as `alibi_slopes`; positions of rank 0, leading axes that
        do not broadcast, concrete positions outside the int32 range; an
        unknown ``form``; a ``scale`` not finite.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> bias = fp.alibi_bias(jnp.arange(3), jnp.arange(3), 2)
      >>> bias.shape
      (2, 3, 3)
      >>> bias[0].tolist()
      [[0.0, -0.0625, -0.125], [-0.0625, 0.0, -0.0625], [-0.125, -0.0625, 0.0]]
      >>> keys = fp.alibi_bias(jnp.arange(3), jnp.arange(3), 2, form="key_position")
      >>> keys[0].tolist()
      [[0.0, 0.0625, 0.125], [0.0, 0.0625, 0.125], [0.0, 0.0625, 0.125]]
    """
    q_positions = validation.position_array("q_positions", q_positions)
    k_positions = validation.position_array("k_positions", k_positions)
    dtype = validation.floating_dtype("dtype", dtype)
    validation.check_query_key_positions(q_positions, k_positions)
    slopes = tuple(alibi_slopes(num_heads).tolist())
    form, slope_dtype, scale = check_alibi_form(form, slope_dtype, scale)
    return _bias(
        q_positions,
        k_positions,
        slopes=slopes,
        dtype=dtype,
        form=form,
        slope_dtype=slope_dtype,
        scale=scale,
    )


def check_alibi_form(form, slope_dtype, scale) -> tuple[str, Any, float]:
    """``form``, ``slope_dtype`` and ``scale`` of `alibi_bias`, checked."""
    validation.check_choice("form", form, ALIBI_FORMS)
    if slope_dtype is not None:
        slope_dtype = validation.floating_dtype("slope_dtype", slope_dtype)
    return form, slope_dtype, validation.check_real("scale", scale)


@functools.partial(
    jax.jit, static_argnames=("slopes", "dtype", "form", "slope_dtype", "scale")
)
def _bias(q_positions, k_positions, *, slopes, dtype, form, slope_dtype, scale):
    # One compiled program per call signature, not one per operation when
    # called eagerly.
    slopes = np.asarray(slopes, np.float64).astype(np.float32)
    if form == "distance":
        distance = validation.abs_distance(
            q_positions[..., :, None], k_positions[..., None, :]
        )
        factor = 0.0 - distance.astype(jnp.float32)  # 0 stays +0
    else:
        shape = jnp.broadcast_shapes(
            q_positions[..., :, None].shape, k_positions[..., None, :].shape
        )
        factor = jnp.broadcast_to(k_positions[..., None, :].astype(jnp.float32), shape)
    factor = factor[..., None, :, :]
    if slope_dtype is None:
        bias = slopes[:, None, None] * factor
    else:
        # Rounded to slope_dtype in float32 (reduce_precision: XLA may drop a
        # cast to bfloat16 and back): the product of two such numbers is
        # exact in float32, so rounding it once is PyTorch's bfloat16 product.
        finfo = jnp.finfo(slope_dtype)

        def rounded(x):
            return jax.lax.reduce_precision(x, finfo.nexp, finfo.nmant)

        bias = rounded(rounded(jnp.asarray(slopes))[:, None, None] * rounded(factor))
    if scale != 1.0:
        bias = bias * jnp.float32(scale)
    return bias.astype(dtype)
