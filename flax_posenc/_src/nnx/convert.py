"""Parameters between a linen variables tree and an NNX module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx


def _nested(state: nnx.State) -> dict[str, Any]:
    """``{name: {...: array}}`` of an NNX state's parameter values."""
    return nnx.to_pure_dict(state)


def from_linen(module: nnx.Module, variables: Mapping[str, Any]) -> nnx.Module:
    """Loads a linen twin's ``params`` into ``module`` (in place) and returns it.

    The NNX twins use the linen twins' parameter names and shapes, so the
    linen tree ``variables["params"]`` (boxed with logical names or not) is
    the NNX module's parameter state as a nested dict. Values are copied as
    they are (dtype included); the NNX parameters keep their metadata.

    Args:
      module: an NNX twin (or a module built from them).
      variables: the linen variables, ``{"params": ...}``, or the params alone.

    Returns:
      ``module``, updated.

    Raises:
      ValueError: names or shapes that differ from the module's parameters.
      TypeError: ``module`` not an NNX module, ``variables`` not a dict.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc import linen, nnx as pnnx
      >>> variables = linen.LayerNorm().init(jax.random.key(0), jnp.ones((2, 8)))
      >>> norm = pnnx.from_linen(pnnx.LayerNorm(8, rngs=nnx.Rngs(0)), variables)
      >>> bool((norm(jnp.ones((2, 8))) == linen.LayerNorm().apply(
      ...     variables, jnp.ones((2, 8)))).all())
      True
    """
    if not isinstance(module, nnx.Module):
        raise TypeError(
            f"module must be an NNX module, got {type(module).__name__}; "
            "from_linen(module, variables) loads variables into it."
        )
    if not isinstance(variables, Mapping):
        raise TypeError(
            "variables must be the linen variables {'params': ...} (a dict, as "
            f"linen_module.init returns) or the params alone, got "
            f"{type(variables).__name__}."
        )
    params = nn.meta.unbox(variables.get("params", variables))
    if not isinstance(params, Mapping):
        raise TypeError(
            f"variables['params'] must be a dict of parameters, got "
            f"{type(params).__name__}."
        )
    state = nnx.state(module, nnx.Param)
    want = _nested(state)
    got = jax.tree.map(lambda a: a, dict(params))
    want_shapes = jax.tree.map(lambda a: tuple(a.shape), want)
    got_shapes = jax.tree.map(lambda a: tuple(jax.numpy.shape(a)), got)
    if want_shapes != got_shapes:
        raise ValueError(
            "the linen parameters do not match the NNX module's: "
            f"NNX {want_shapes}, linen {got_shapes}."
        )
    nnx.replace_by_pure_dict(state, got)
    nnx.update(module, state)
    return module


def to_linen(module: nnx.Module) -> dict[str, Any]:
    """The linen twin's ``{"params": ...}`` of an NNX module's parameters.

    The inverse of `from_linen`: ``linen_module.apply(to_linen(model), ...)``
    computes what ``model(...)`` does.

    Args:
      module: an NNX twin (or a module built from them), or its state (such
        as the gradients ``nnx.grad`` returns).

    Returns:
      ``{"params": nested dict of arrays}`` (without logical-axis boxes).
    """
    if not isinstance(module, (nnx.Module, nnx.State)):
        raise TypeError(
            f"module must be an NNX module (or its state, e.g. gradients from "
            f"nnx.grad), got {type(module).__name__}."
        )
    return {"params": _nested(nnx.state(module, nnx.Param))}
