"""Softmax attention where positions act: masks from positions, GQA, soft-capping.

- `masks`: `attention_mask` (the mask from positions and segments).
- `api`: `dot_product_attention`: argument checks, then one private `jax.jit`
  that hands a `request.Request` to the chosen implementation.
- `request`: the boundary's contract: what an implementation receives and
  returns.
- `implementations`: the registry, name -> implementation, and the default.
- `xla`, `jax_nn`: the implementations, one file each.
- `cache`: `write_cache` and `write_window_cache`, the decode cache's pure steps.
- `blockwise`: `blockwise_attention`, masks from positions block by block.
- `ring`: context parallelism over a mesh (`ring_attention`,
  `load_balanced_order`).

The modules are loaded here so that ``attention.masks``, ``attention.api`` and
``attention.cache`` are reachable from ``from flax_posenc._src import
attention``.
"""

from flax_posenc._src.attention import api, cache, implementations, masks, ring

__all__ = ["api", "cache", "implementations", "masks", "ring"]
