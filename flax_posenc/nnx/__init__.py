"""Flax NNX twins of the linen modules: same math, parameter names and shapes.

Import as ``from flax_posenc.nnx import ...`` (or ``flax_posenc.nnx``, loaded
on first use). `from_linen` and `to_linen` move parameters between a linen
variables tree and an NNX module.
"""

from flax_posenc._src.nnx.attention import MultiHeadAttention as MultiHeadAttention
from flax_posenc._src.nnx.attention_bias import ALiBiBias as ALiBiBias
from flax_posenc._src.nnx.attention_bias import (
    RelativePositionBias as RelativePositionBias,
)
from flax_posenc._src.nnx.convert import from_linen as from_linen
from flax_posenc._src.nnx.convert import to_linen as to_linen
from flax_posenc._src.nnx.embedding import InputEmbedding as InputEmbedding
from flax_posenc._src.nnx.embedding import TokenEmbedding as TokenEmbedding
from flax_posenc._src.nnx.latent_attention import (
    MultiHeadLatentAttention as MultiHeadLatentAttention,
)
from flax_posenc._src.nnx.normalization import DynamicTanh as DynamicTanh
from flax_posenc._src.nnx.normalization import LayerNorm as LayerNorm
from flax_posenc._src.nnx.normalization import Residual as Residual
from flax_posenc._src.nnx.normalization import RMSNorm as RMSNorm
from flax_posenc._src.nnx.position import (
    LearnedPositionEmbedding as LearnedPositionEmbedding,
)
from flax_posenc._src.nnx.position import (
    SinusoidalPositionEmbedding as SinusoidalPositionEmbedding,
)
from flax_posenc._src.nnx.rotary import RotaryEmbedding as RotaryEmbedding

__all__ = (
    "ALiBiBias",
    "DynamicTanh",
    "InputEmbedding",
    "LayerNorm",
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "MultiHeadLatentAttention",
    "RMSNorm",
    "RelativePositionBias",
    "Residual",
    "RotaryEmbedding",
    "SinusoidalPositionEmbedding",
    "TokenEmbedding",
    "from_linen",
    "to_linen",
)
