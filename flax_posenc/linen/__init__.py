"""Flax linen modules: parameters and Flax conventions around the pure core."""

from flax_posenc._src.linen.attention import MultiHeadAttention as MultiHeadAttention
from flax_posenc._src.linen.attention_bias import ALiBiBias as ALiBiBias
from flax_posenc._src.linen.attention_bias import (
    RelativePositionBias as RelativePositionBias,
)
from flax_posenc._src.linen.embedding import InputEmbedding as InputEmbedding
from flax_posenc._src.linen.embedding import TokenEmbedding as TokenEmbedding
from flax_posenc._src.linen.embedding import pretrained_init as pretrained_init
from flax_posenc._src.linen.latent_attention import (
    MultiHeadLatentAttention as MultiHeadLatentAttention,
)
from flax_posenc._src.linen.normalization import DynamicTanh as DynamicTanh
from flax_posenc._src.linen.normalization import LayerNorm as LayerNorm
from flax_posenc._src.linen.normalization import Residual as Residual
from flax_posenc._src.linen.normalization import RMSNorm as RMSNorm
from flax_posenc._src.linen.position import (
    LearnedPositionEmbedding as LearnedPositionEmbedding,
)
from flax_posenc._src.linen.position import (
    SinusoidalPositionEmbedding as SinusoidalPositionEmbedding,
)
from flax_posenc._src.linen.rotary import RotaryEmbedding as RotaryEmbedding

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
    "pretrained_init",
)
