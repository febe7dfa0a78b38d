"""A small encoder built from flax_posenc parts, one positional scheme at a time."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from flax_posenc.linen import (
    ALiBiBias,
    InputEmbedding,
    LayerNorm,
    LearnedPositionEmbedding,
    MultiHeadAttention,
    RelativePositionBias,
    Residual,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositionEmbedding,
)
from train_demo.names import ENCODINGS


def scheme(encoding: str) -> str:
    """The positional scheme behind an encoding name."""
    return ENCODINGS[encoding][0]


def is_randomized(encoding: str) -> bool:
    """Whether an encoding draws its positions at random."""
    return ENCODINGS[encoding][1]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoder (the defaults are the demo's: 3 layers, d = 64, 4 heads)."""

    vocab_size: int
    num_outputs: int
    encoding: str = "sinusoidal"
    num_layers: int = 3
    features: int = 64
    num_heads: int = 4
    mlp_features: int = 256
    max_position: int = 128  # table size for learned positions
    norm: str = "layer"  # "layer" or "rms"
    norm_position: str = "post"  # "post" or "pre"
    # How absolute positions join the tokens: "add" (features each), or
    # "concat" (features / 2 of token, features / 2 of position).
    combine: str = "add"


class FeedForward(nn.Module):
    """Two dense layers with a ReLU between."""

    mlp_features: int

    @nn.compact
    def __call__(self, x):
        hidden = nn.relu(nn.Dense(self.mlp_features)(x))
        return nn.Dense(x.shape[-1])(hidden)


class Encoder(nn.Module):
    """Token embedding, one positional scheme, and post- or pre-LN blocks.

    Returns per-slot logits over the task's symbols.
    """

    config: ModelConfig

    def _norm(self, name):
        return (
            LayerNorm(name=name) if self.config.norm == "layer" else RMSNorm(name=name)
        )

    @nn.compact
    def __call__(self, tokens, *, positions, valid, segments):
        cfg = self.config
        # Each slot attends to the real tokens of its own example: segment ids
        # from 1 for real tokens, 0 for padding (which attends to nothing).
        attention_segments = jnp.where(valid, segments + 1, 0)
        kind = scheme(cfg.encoding)
        concat = cfg.combine == "concat" and kind in ("sinusoidal", "learned")
        token_features = cfg.features // 2 if concat else cfg.features
        position_features = cfg.features - token_features if concat else cfg.features
        position_module = None
        if kind == "sinusoidal":
            position_module = SinusoidalPositionEmbedding(position_features)
        elif kind == "learned":
            position_module = LearnedPositionEmbedding(
                cfg.max_position, position_features
            )
        x = InputEmbedding(
            cfg.vocab_size,
            token_features,
            position=position_module,
            combine=cfg.combine,
        )(tokens, positions=positions)
        position_bias = None  # one bias module, shared by every layer
        if kind == "alibi":
            position_bias = ALiBiBias(cfg.num_heads)
        elif kind == "relative":
            position_bias = RelativePositionBias(cfg.num_heads)
        for layer in range(cfg.num_layers):
            attention = MultiHeadAttention(
                num_heads=cfg.num_heads,
                head_dim=cfg.features // cfg.num_heads,
                # No q/k/v biases, as Llama: a key bias has no gradient (softmax
                # ignores what it adds to a row) and a value bias is the output
                # bias again (the weights of a row sum to 1).
                out_bias=True,
                rotary=RotaryEmbedding() if kind == "rope" else None,
                position_bias=position_bias,
            )
            x = Residual(
                attention,
                norm=self._norm(f"attention_norm_{layer}"),
                norm_position=cfg.norm_position,
                name=f"attention_{layer}",
            )(x, positions=positions, segments=attention_segments)
            x = Residual(
                FeedForward(cfg.mlp_features),
                norm=self._norm(f"mlp_norm_{layer}"),
                norm_position=cfg.norm_position,
                name=f"mlp_{layer}",
            )(x)
        if cfg.norm_position == "pre":
            x = self._norm("final_norm")(x)
        return nn.Dense(cfg.num_outputs, name="head")(x)
