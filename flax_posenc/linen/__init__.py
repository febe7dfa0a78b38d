"""Flax linen modules: parameters and Flax conventions around the pure core."""

from flax_posenc.linen.embedding import InputEmbedding as InputEmbedding
from flax_posenc.linen.embedding import TokenEmbedding as TokenEmbedding
from flax_posenc.linen.embedding import pretrained_init as pretrained_init
from flax_posenc.linen.normalization import LayerNorm as LayerNorm
from flax_posenc.linen.normalization import Residual as Residual
from flax_posenc.linen.normalization import RMSNorm as RMSNorm
from flax_posenc.linen.position import (
    LearnedPositionEmbedding as LearnedPositionEmbedding,
)
from flax_posenc.linen.position import (
    SinusoidalPositionEmbedding as SinusoidalPositionEmbedding,
)

__all__ = (
    "InputEmbedding",
    "LayerNorm",
    "LearnedPositionEmbedding",
    "RMSNorm",
    "Residual",
    "SinusoidalPositionEmbedding",
    "TokenEmbedding",
    "pretrained_init",
)
