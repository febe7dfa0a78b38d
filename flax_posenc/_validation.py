"""Trace-time argument checks shared by the core functions (private)."""

from __future__ import annotations

import inspect
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Returns ``value`` as an int, or raises if it is not an integer >= minimum."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool {value!r}.")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int, got {type(value).__name__} {value!r}."
        ) from None
    if as_int < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {as_int}.")
    return as_int


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """Raises ValueError naming the allowed values if ``value`` is not one of them."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}.")
    return value  # type: ignore[return-value]


def check_positive(name: str, value: float) -> float:
    """Raises ValueError unless ``value`` is a finite number > 0."""
    value = float(value)
    if not (value > 0.0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return value


def integer_array(name: str, value: jax.typing.ArrayLike) -> jax.Array:
    """Returns ``value`` as a JAX array, or raises TypeError unless it is integer."""
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(
            f"{name} must have an integer dtype, got {array.dtype}. "
            f"Cast with .astype(jnp.int32) if the values are whole numbers."
        )
    return array


def floating_array(name: str, value: jax.typing.ArrayLike) -> jax.Array:
    """Returns ``value`` as a JAX array, or raises TypeError unless it is floating."""
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype, got {array.dtype}.")
    return array


def floating_dtype(name: str, dtype: DTypeLike) -> jnp.dtype:
    """Returns ``dtype`` as a NumPy dtype, or raises TypeError unless it is floating."""
    result = jnp.dtype(dtype)
    if not jnp.issubdtype(result, jnp.floating):
        raise TypeError(f"{name} must be a floating dtype, got {result}.")
    return result


def compute_dtype(dtype: DTypeLike) -> jnp.dtype:
    """The dtype for angles and statistics: ``dtype`` promoted to at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def default_positions(
    x: jax.Array, positions: jax.typing.ArrayLike | None
) -> jax.Array:
    """``positions``, or ``arange(seq)`` broadcast over ``x``'s leading axes."""
    if x.ndim < 2:
        raise ValueError(f"x must be [..., seq, features], got shape {x.shape}.")
    if positions is None:
        return jnp.broadcast_to(jnp.arange(x.shape[-2]), x.shape[:-1])
    positions = jnp.asarray(positions)
    if positions.shape[-1:] != x.shape[-2:-1]:
        raise ValueError(
            f"positions [..., seq] must match x [..., seq, features] in seq; got "
            f"positions {positions.shape} and x {x.shape}."
        )
    return positions


def accepts_keyword(module: object, name: str) -> bool:
    """Whether ``module``'s ``__call__`` takes the keyword ``name`` (or **kwargs)."""
    try:
        parameters = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def dropout_deterministic(field: bool | None, call: bool | None) -> bool:
    """The modules' ``deterministic``: the call's value wins over the field's.

    Only asked for when there is dropout, so ``None`` in both is an error.
    """
    deterministic = call if call is not None else field
    if deterministic is None:
        raise ValueError(
            "dropout_rate > 0 needs `deterministic`: set the module field or "
            "pass deterministic=... in the call."
        )
    return deterministic
