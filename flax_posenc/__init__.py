"""flax_posenc: token embeddings, positional information and normalization for JAX.

The pure functions live here and import only jax and numpy. The Flax linen
modules are in `flax_posenc.linen`, their NNX twins in `flax_posenc.nnx`
(each imported on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

from flax_posenc._src.alibi import alibi_bias as alibi_bias
from flax_posenc._src.alibi import alibi_slopes as alibi_slopes
from flax_posenc._src.attention.api import (
    dot_product_attention as dot_product_attention,
)
from flax_posenc._src.attention.masks import attention_mask as attention_mask
from flax_posenc._src.attention.ring import load_balanced_order as load_balanced_order
from flax_posenc._src.attention.ring import ring_attention as ring_attention
from flax_posenc._src.attention.temperature import (
    llama_4_scaling as llama_4_scaling,
)
from flax_posenc._src.attention.temperature import (
    temperature_tuning_scale as temperature_tuning_scale,
)
from flax_posenc._src.embedding import embedding_attend as embedding_attend
from flax_posenc._src.embedding import embedding_lookup as embedding_lookup
from flax_posenc._src.naive import fraction_encoding as fraction_encoding
from flax_posenc._src.naive import index_encoding as index_encoding
from flax_posenc._src.normalization import dynamic_tanh as dynamic_tanh
from flax_posenc._src.normalization import layer_norm as layer_norm
from flax_posenc._src.normalization import rms_norm as rms_norm
from flax_posenc._src.randomized import randomized_positions as randomized_positions
from flax_posenc._src.relative import relative_position_bias as relative_position_bias
from flax_posenc._src.relative import (
    relative_position_bucket as relative_position_bucket,
)
from flax_posenc._src.rope.apply import apply_axial_rope as apply_axial_rope
from flax_posenc._src.rope.apply import apply_rope as apply_rope
from flax_posenc._src.rope.apply import grid_positions as grid_positions
from flax_posenc._src.rope.apply import rope_frequencies as rope_frequencies
from flax_posenc._src.rope.axial import AxialRope as AxialRope
from flax_posenc._src.rope.axial import video_grid_positions as video_grid_positions
from flax_posenc._src.rope.config import RopeConfig as RopeConfig
from flax_posenc._src.rope.config import rope_config_from_hf as rope_config_from_hf
from flax_posenc._src.rope.scalings import DynamicNTKScaling as DynamicNTKScaling
from flax_posenc._src.rope.scalings import LinearScaling as LinearScaling
from flax_posenc._src.rope.scalings import Llama3Scaling as Llama3Scaling
from flax_posenc._src.rope.scalings import LongRopeScaling as LongRopeScaling
from flax_posenc._src.rope.scalings import ProportionalScaling as ProportionalScaling
from flax_posenc._src.rope.scalings import RopeScaling as RopeScaling
from flax_posenc._src.rope.scalings import YarnScaling as YarnScaling
from flax_posenc._src.schedule.layers import AlibiForm as AlibiForm
from flax_posenc._src.schedule.layers import LatentDims as LatentDims
from flax_posenc._src.schedule.layers import LayerAttention as LayerAttention
from flax_posenc._src.schedule.layers import (
    attention_schedule as attention_schedule,
)
from flax_posenc._src.sinusoidal import sinusoidal_encoding as sinusoidal_encoding
from flax_posenc._src.sinusoidal import sinusoidal_frequencies as sinusoidal_frequencies
from flax_posenc._src.sinusoidal import sinusoidal_table as sinusoidal_table
from flax_posenc._src.twins import SharedKV as SharedKV

__version__ = "0.1.0"

__all__ = (
    "AlibiForm",
    "AxialRope",
    "DynamicNTKScaling",
    "LatentDims",
    "LayerAttention",
    "LinearScaling",
    "Llama3Scaling",
    "LongRopeScaling",
    "ProportionalScaling",
    "RopeConfig",
    "RopeScaling",
    "SharedKV",
    "YarnScaling",
    "alibi_bias",
    "alibi_slopes",
    "apply_axial_rope",
    "apply_rope",
    "attention_mask",
    "attention_schedule",
    "dot_product_attention",
    "dynamic_tanh",
    "embedding_attend",
    "embedding_lookup",
    "fraction_encoding",
    "grid_positions",
    "index_encoding",
    "layer_norm",
    "llama_4_scaling",
    "load_balanced_order",
    "randomized_positions",
    "relative_position_bias",
    "relative_position_bucket",
    "ring_attention",
    "rms_norm",
    "rope_config_from_hf",
    "rope_frequencies",
    "sinusoidal_encoding",
    "sinusoidal_frequencies",
    "sinusoidal_table",
    "temperature_tuning_scale",
    "video_grid_positions",
)


def __getattr__(name: str) -> Any:
    # `flax_posenc.linen` imports flax; load it only when asked for, so that the
    # core stays importable (and fast to import) with jax alone.
    if name in ("linen", "nnx"):
        return importlib.import_module(f"flax_posenc.{name}")
    raise AttributeError(f"module 'flax_posenc' has no attribute {name!r}")
