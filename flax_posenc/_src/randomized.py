"""Randomized positions (Ruoss et al. 2023)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from flax_posenc._src import validation


def randomized_positions(key: jax.Array, length: int, max_position: int) -> jax.Array:
    r"""Sorted distinct positions drawn uniformly from ``[0, max_position)``.

    Training on such positions, with ``max_position`` well above the longest
    test length, shows the model every position it will meet at test time while
    keeping their order: the positions of a short sequence are a sorted sample
    of the long range. Pass the result as ``positions`` to any scheme. Every
    subset of size ``length`` is equally likely.

    Cost: the draw permutes the whole range (``jax.random.choice`` without
    replacement), so time and memory grow with ``max_position``, not
    ``length``: about 20 bytes per position, e.g. 190 MiB of temporaries at
    ``max_position = 10**7``, for each row under ``vmap``. The ranges used in
    practice (a few times the longest test length) cost little.

    Args:
      key: a JAX PRNG key; ``vmap`` over keys for one draw per row.
      length: number of positions (static, >= 0).
      max_position: size of the range (static, >= length, < 2**31).

    Returns:
      int32 ``[length]``, strictly increasing.

    Raises:
      ValueError: ``length > max_position``, negative sizes, ``max_position``
        beyond int32.
      TypeError: sizes not ints.

    Examples:
      >>> import jax
      >>> import flax_posenc as fp
      >>> p = fp.randomized_positions(jax.random.key(0), 5, 100)
      >>> p.shape, bool((p[1:] > p[:-1]).all()), bool((p < 100).all())
      ((5,), True, True)

    References:
      Ruoss et al., "Randomized Positional Encodings Boost Length
      Generalization of Transformers", 2023. https://arxiv.org/abs/2305.16843
    """
    length = validation.check_int("length", length, minimum=0)
    max_position = validation.check_int("max_position", max_position, minimum=1)
    if max_position > validation.INT32_MAX:
        raise ValueError(
            f"max_position must be <= 2**31 - 1 (positions are int32), got "
            f"{max_position}."
        )
    if length > max_position:
        raise ValueError(
            f"cannot draw {length} distinct positions from [0, {max_position}): "
            "length must be <= max_position."
        )
    return _draw(key, length=length, max_position=max_position)


@functools.partial(jax.jit, static_argnames=("length", "max_position"))
def _draw(key, *, length, max_position):
    # One compiled program per call signature, not one per operation when
    # called eagerly.
    chosen = jax.random.choice(key, max_position, (length,), replace=False)
    return jnp.sort(chosen).astype(jnp.int32)
