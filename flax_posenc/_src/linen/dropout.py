"""Dropout with a module-field default that the call may override (private)."""

from __future__ import annotations

import flax.linen as nn
import jax

from flax_posenc._src import validation


def dropout(
    x: jax.Array, rate: float, field: bool | None, call: bool | None
) -> jax.Array:
    """``nn.Dropout(rate)(x)``; ``call`` (the call's ``deterministic``) wins.

    Call from inside a compact method: the Dropout becomes a child of the caller.
    With ``rate == 0`` nothing happens and ``deterministic`` is not needed.
    """
    if validation.check_rate("dropout_rate", rate) == 0.0:
        return x
    deterministic = validation.dropout_deterministic(field, call)
    return nn.Dropout(rate)(x, deterministic=deterministic)
