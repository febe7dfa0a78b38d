"""Position-dependent query temperature: the queries scaled by position.

What goes here: the published factors by which long-context models multiply
their queries before attention, as functions of the tokens' positions, so
that attention stays sharp at positions far past training (a larger scale
lowers the softmax's temperature). Each is 1 for the first block of
positions and grows with the logarithm of the block index. The floor
divisions are done on integers, exact at any position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from flax_posenc._src import validation


def temperature_tuning_scale(
    positions: ArrayLike, *, floor_scale: int = 8192, attn_scale: float = 0.1
) -> jax.Array:
    r"""Llama 4's attention temperature tuning (its NoPE layers).

    $$s(p) = 1 + \mathrm{attn\_scale} \cdot
    \log\left(\left\lfloor \frac{p + 1}{\mathrm{floor\_scale}} \right\rfloor
    + 1\right)$$

    the factor Llama 4 multiplies each query by on its layers without RoPE
    (``attn_temperature_tuning`` in its config, with ``floor_scale`` and
    ``attn_scale``), after any QK norm. Pass it to the attention modules as
    ``query_scale=functools.partial(temperature_tuning_scale, ...)``.

    Args:
      positions: integer ``[...]`` token positions (``p >= 0``).
      floor_scale: the length of each block of positions (>= 1).
      attn_scale: the factor's growth per unit of log block index.

    Returns:
      float32 ``[...]``.

    Raises:
      ValueError: ``floor_scale < 1``; a non-finite ``attn_scale``.
      TypeError: non-integer positions or sizes.

    Examples:
      >>> import flax_posenc as fp
      >>> s = fp.temperature_tuning_scale([0, 8190, 8191, 24575])
      >>> [round(float(x), 4) for x in s]
      [1.0, 1.0, 1.0693, 1.1386]

    References:
      Meta, Llama 4 (transformers ``Llama4TextAttention``), 2025;
      Nakanishi, "Scalable-Softmax Is Superior for Attention", 2025.
      https://arxiv.org/abs/2501.19399
    """
    positions = validation.integer_array("positions", positions)
    floor_scale = validation.check_int("floor_scale", floor_scale, minimum=1)
    attn_scale = validation.check_real("attn_scale", attn_scale)
    blocks = (positions + 1) // floor_scale
    return 1.0 + attn_scale * jnp.log1p(blocks.astype(jnp.float32))


def llama_4_scaling(
    positions: ArrayLike, *, beta: float, original_max_position_embeddings: int
) -> jax.Array:
    r"""Ministral 3 / Mistral 4's query scaling (``llama_4_scaling_beta``).

    $$s(p) = 1 + \beta \cdot \log\left(1 + \left\lfloor
    \frac{p}{\mathrm{original\_max}} \right\rfloor\right)$$

    the factor these models multiply each query by after RoPE, with
    ``beta = rope_parameters["llama_4_scaling_beta"]`` and ``original_max =
    rope_parameters["original_max_position_embeddings"]``. Pass it to the
    attention modules as ``query_scale=functools.partial(llama_4_scaling,
    ...)``.

    Args:
      positions: integer ``[...]`` token positions (``p >= 0``).
      beta: the factor's growth per unit of log block index.
      original_max_position_embeddings: the block length, the model's
        pre-training context (>= 1).

    Returns:
      float32 ``[...]``.

    Raises:
      ValueError: ``original_max_position_embeddings < 1``; a non-finite
        ``beta``.
      TypeError: non-integer positions or sizes.

    Examples:
      >>> import flax_posenc as fp
      >>> s = fp.llama_4_scaling(
      ...     [0, 16383, 16384, 32768], beta=0.1,
      ...     original_max_position_embeddings=16384)
      >>> [round(float(x), 4) for x in s]
      [1.0, 1.0, 1.0693, 1.1099]

    References:
      Mistral AI, Ministral 3 (transformers ``Ministral3Attention``), 2025.
    """
    positions = validation.integer_array("positions", positions)
    block = validation.check_int(
        "original_max_position_embeddings", original_max_position_embeddings, minimum=1
    )
    beta = validation.check_real("beta", beta)
    blocks = positions // block
    return 1.0 + beta * jnp.log1p(blocks.astype(jnp.float32))
