"""The one Linear the examples build everywhere: its kernel named by logical
axes (metadata only, for a mesh to read)."""

from __future__ import annotations

from flax import nnx


def linear(
    n_in, n_out, axes, *, dtype, param_dtype, rngs, use_bias=False
) -> nnx.Linear:
    """``nnx.Linear(n_in, n_out)``, without bias by default, the kernel
    named ``axes``."""
    return nnx.Linear(
        n_in,
        n_out,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_metadata={"out_sharding": axes, "eager_sharding": False},
        rngs=rngs,
    )
