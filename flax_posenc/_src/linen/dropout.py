"""Dropout with a module-field default that the call may override (private)."""

from __future__ import annotations

import flax.linen as nn
import jax

from flax_posenc._src import twins, validation


def dropout(
    x: jax.Array,
    rate: float,
    field: bool | None,
    call: bool | None,
    layer: nn.Dropout | None = None,
) -> jax.Array:
    """``x`` through ``layer`` (default a new ``nn.Dropout(rate)``) at ``rate``.

    ``deterministic`` by `twins.dropout_deterministic`: ``call`` (the call's)
    wins over ``field`` (the module's). A new Dropout is made inside the
    caller's compact method, and becomes its child. With ``rate == 0``
    nothing happens and ``deterministic`` is not needed.
    """
    if validation.check_rate("dropout_rate", rate) == 0.0:
        return x
    if layer is None:
        layer = nn.Dropout(rate)
    return layer(x, deterministic=twins.dropout_deterministic(field, call))
