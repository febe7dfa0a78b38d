"""Softmax attention where positions act: masks from positions, GQA, soft-capping.

- `masks`: `attention_mask` (the mask from positions and segments).
- `api`: `dot_product_attention`: argument checks, then one private `jax.jit`
  that hands a `request.Request` to the chosen implementation.
- `request`: the boundary's contract: what an implementation receives and
  returns.
- `implementations`: the registry, name -> implementation, and the default.
- `xla`, `jax_nn`: the implementations, one file each.
- `cache`: `write_cache`, the decode cache's pure step.
- `ring`: context parallelism over a mesh (`load_balanced_order`).

The modules are loaded here so that ``attention.masks``, ``attention.api`` and
``attention.cache`` are reachable from ``from flax_posenc._src import
attention``.
"""

from flax_posenc._src.attention import api, cache, masks

__all__ = ["api", "cache", "masks"]
