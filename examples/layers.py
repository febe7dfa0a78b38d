"""The one Linear the examples build everywhere: no bias, its kernel named
by logical axes (metadata only, for a mesh to read)."""

from __future__ import annotations

from flax import nnx


def linear(n_in, n_out, axes, *, dtype, param_dtype, rngs) -> nnx.Linear:
    """``nnx.Linear(n_in, n_out)`` without bias, the kernel named ``axes``."""
    return nnx.Linear(
        n_in,
        n_out,
        use_bias=False,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_metadata={"out_sharding": axes, "eager_sharding": False},
        rngs=rngs,
    )
