"""Trace-time argument checks shared by the core functions (private)."""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def check_factory(name: str, value: object, module_type: type) -> None:
    """Raises TypeError unless ``value`` is None or makes modules (NNX norms).

    A built ``module_type`` instance is refused: it would be called with the
    factory's arguments.
    """
    if value is None:
        return
    if isinstance(value, module_type) or not callable(value):
        raise TypeError(
            f"{name} must make a module when called as {name}(features, rngs=rngs) "
            f"(e.g. RMSNorm, or functools.partial(RMSNorm, epsilon=1e-6)), not a "
            f"built {type(value).__name__}."
        )


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


def check_bool(name: str, value: object) -> bool:
    """Returns ``value`` as a Python bool, or raises TypeError unless it is one.

    ``"false"`` and ``0`` are not bools; a concrete boolean scalar array is.
    A traced one is refused: the option is static (it changes the program).
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.ndarray, jax.Array)) and value.dtype == np.bool_:
        if isinstance(value, jax.core.Tracer):
            raise TypeError(
                f"{name} must be a Python bool: it is static (it chooses the "
                "computation), so it cannot be a traced value."
            )
        if value.shape == ():
            return bool(value)
    raise TypeError(
        f"{name} must be true or false (a bool), got {type(value).__name__} {value!r}."
    )


def check_sequence(name: str, value: object, check) -> tuple:
    """``value``'s items, each read by ``check(f"{name}[i]", item)``, as a tuple.

    A list, tuple or array; a string, a dict or a lone number is refused.
    """
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a list, got {value!r}.")
    return tuple(check(f"{name}[{i}]", item) for i, item in enumerate(value))


def check_bools(**flags: object) -> None:
    """`check_bool` on each of a module's switches, by name."""
    for name, value in flags.items():
        check_bool(name, value)


def one_edit_away(word: str, known: Sequence[str]) -> str | None:
    """The entry of ``known`` one edit from ``word`` (a typo of it), or None.

    One edit: a character inserted, deleted or replaced, or two neighbours
    swapped.
    """
    for candidate in known:
        if candidate == word or abs(len(candidate) - len(word)) > 1:
            continue
        short, long = sorted((word, candidate), key=len)
        i = 0
        while i < len(short) and short[i] == long[i]:
            i += 1
        if len(short) < len(long):
            if short[i:] == long[i + 1 :]:
                return candidate
        elif short[i + 1 :] == long[i + 1 :] or (
            short[i + 2 :] == long[i + 2 :]
            and short[i : i + 2] == long[i : i + 2][::-1]
        ):
            return candidate
    return None


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """Raises ValueError naming the allowed values if ``value`` is not one of them."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}.")
    return value  # type: ignore[return-value]


def check_positive(name: str, value: float) -> float:
    """Raises ValueError unless ``value`` is a finite number > 0."""
    value = check_real(name, value)
    if not value > 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return value


def check_real(name: str, value: object, *, finite: bool = True) -> float:
    """Returns ``value`` as a float, or raises unless it is a finite real number.

    Rejects strings, bools, complex numbers (whose imaginary part ``float``
    would drop) and arrays of more than one element.
    """
    if isinstance(value, (str, bytes, bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.ndarray, jax.Array)
    ):
        raise TypeError(
            f"{name} must be a real number, got {type(value).__name__} {value!r}."
        )
    if isinstance(value, (np.ndarray, jax.Array)):
        _check_real_scalar(name, value)
    result = float(value)
    if finite and not math.isfinite(result):
        raise ValueError(f"{name} must be a finite number, got {result!r}.")
    return result


def check_real_or_traced(name: str, value: object) -> float | jax.Array:
    """`check_real`, or a traced real scalar as it is (checked for its type only)."""
    if isinstance(value, jax.core.Tracer):
        _check_real_scalar(name, value)
        return value
    return check_real(name, value)


def _check_real_scalar(name: str, value: np.ndarray | jax.Array) -> None:
    if value.shape != () or not (
        jnp.issubdtype(value.dtype, jnp.floating)
        or jnp.issubdtype(value.dtype, jnp.integer)
    ):
        raise TypeError(
            f"{name} must be a real number, got an array of dtype {value.dtype} "
            f"and shape {value.shape}."
        )


def check_rate(name: str, value: object) -> float:
    """Returns a dropout rate as a float, or raises unless it lies in [0, 1)."""
    rate = check_real(name, value)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate!r}.")
    return rate


def integer_array(name: str, value: jax.typing.ArrayLike) -> jax.Array:
    """Returns ``value`` as a JAX array, or raises TypeError unless it is integer."""
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(
            f"{name} must have an integer dtype, got {array.dtype}. "
            f"Cast with .astype(jnp.int32) if the values are whole numbers."
        )
    return array


def position_array(name: str, value: jax.typing.ArrayLike) -> jax.Array:
    """Integer positions as int32, the type every position computation uses.

    Any integer dtype is accepted. Concrete values (NumPy arrays, Python lists,
    JAX arrays outside ``jit``) must lie in the int32 range
    ``[-2**31, 2**31)``: checked here, before a conversion could wrap them.
    Traced values can only be checked for their dtype; wider ones (int64,
    uint32, uint64) are converted to int32, which wraps values outside that
    range.
    """
    if not isinstance(value, (jax.Array, np.ndarray)):
        value = np.asarray(value)  # Python ints keep their size: no wrap yet
    if not jnp.issubdtype(value.dtype, jnp.integer):
        raise TypeError(
            f"{name} must have an integer dtype, got {value.dtype}. "
            f"Cast with .astype(jnp.int32) if the values are whole numbers."
        )
    info = np.iinfo(value.dtype)
    wide = info.min < INT32_MIN or info.max > INT32_MAX
    if wide and value.size and not isinstance(value, jax.core.Tracer):
        low, high = int(value.min()), int(value.max())
        if low < INT32_MIN or high > INT32_MAX:
            raise ValueError(
                f"{name} must lie in the int32 range [-2**31, 2**31); got values "
                f"from {low} to {high} (dtype {value.dtype})."
            )
    return jnp.asarray(value).astype(jnp.int32)


def abs_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    """``|a - b|`` of int32 arrays as uint32, exact for every pair of int32 values.

    ``a - b`` in int32 overflows once the positions span more than 2**31; in
    uint32 arithmetic (modulo 2**32) the larger minus the smaller is exact.
    """
    a_bits = jax.lax.bitcast_convert_type(a, jnp.uint32)
    b_bits = jax.lax.bitcast_convert_type(b, jnp.uint32)
    return jnp.where(a >= b, a_bits - b_bits, b_bits - a_bits)


def check_query_key_positions(q_positions: jax.Array, k_positions: jax.Array) -> None:
    """Query and key positions ``[..., q]``, ``[..., k]``: leading axes broadcast."""
    if q_positions.ndim == 0 or k_positions.ndim == 0:
        raise ValueError(
            f"q_positions and k_positions must be [..., length]; got shapes "
            f"{q_positions.shape} and {k_positions.shape}."
        )
    check_leading_axes("q_positions", q_positions, "k_positions", k_positions)


def check_leading_axes(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
    """The axes of ``a`` and ``b`` before their last must broadcast."""
    try:
        np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    except ValueError:
        raise ValueError(
            f"the leading axes of {name_a} {a.shape} and {name_b} {b.shape} must "
            "broadcast."
        ) from None


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


def module_dtypes(dtype: DTypeLike | None, param_dtype: DTypeLike) -> jnp.dtype:
    """A module's output dtype (default ``param_dtype``), both checked floating.

    An integer ``dtype`` would truncate the learned values, most to 0.
    """
    param_dtype = floating_dtype("param_dtype", param_dtype)
    return param_dtype if dtype is None else floating_dtype("dtype", dtype)


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


def check_module(name: str, value: object, *, optional: bool = True) -> None:
    """Raises TypeError unless ``value`` is a callable module (or None if optional).

    Catches a scheme's name given where its module is expected, e.g.
    ``position="sinusoidal"`` instead of ``SinusoidalPositionEmbedding()``,
    and a module class given where an instance is (``norm=LayerNorm``).
    """
    if value is None and optional:
        return
    if isinstance(value, type):
        raise TypeError(
            f"{name} must be a module instance, got the class {value.__name__}: "
            f"pass {value.__name__}(...)."
        )
    if not callable(value):
        allowed = "a module (or None)" if optional else "a module"
        raise TypeError(
            f"{name} must be {allowed}, called on arrays; got "
            f"{type(value).__name__} {value!r}."
        )
