"""The demo's encoder built from the NNX twins (``--api nnx``).

The same architecture as `train_demo.model.Encoder`, written as
``flax.nnx`` modules, and `NnxNet`, which gives it the ``init`` / ``apply``
interface of a linen module so the trainer (optax, ``vmap`` over seeds,
checkpoints) handles both APIs alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from flax_posenc import nnx as pnnx
from train_demo.model import ModelConfig, scheme


class FeedForward(nnx.Module):
    """Two dense layers with a ReLU between."""

    def __init__(self, features: int, mlp_features: int, *, rngs: nnx.Rngs):
        self.up = nnx.Linear(features, mlp_features, rngs=rngs)
        self.down = nnx.Linear(mlp_features, features, rngs=rngs)

    def __call__(self, x):
        return self.down(jax.nn.relu(self.up(x)))


class Encoder(nnx.Module):
    """Token embedding, one positional scheme, and post- or pre-LN blocks."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        cfg = self.config = config
        kind = scheme(cfg.encoding)
        concat = cfg.combine == "concat" and kind in ("sinusoidal", "learned")
        token_features = cfg.features // 2 if concat else cfg.features
        position_features = cfg.features - token_features if concat else cfg.features
        position = None
        if kind == "sinusoidal":
            position = pnnx.SinusoidalPositionEmbedding(position_features)
        elif kind == "learned":
            position = pnnx.LearnedPositionEmbedding(
                cfg.max_position, position_features, rngs=rngs
            )
        self.embed = pnnx.InputEmbedding(
            cfg.vocab_size,
            token_features,
            position=position,
            combine=cfg.combine,
            rngs=rngs,
        )
        bias = None  # one bias module, shared by every layer
        if kind == "alibi":
            bias = pnnx.ALiBiBias(cfg.num_heads)
        elif kind == "relative":
            bias = pnnx.RelativePositionBias(cfg.num_heads, rngs=rngs)

        def norm():
            if cfg.norm == "layer":
                return pnnx.LayerNorm(cfg.features, rngs=rngs)
            return pnnx.RMSNorm(cfg.features, rngs=rngs)

        self.attention = nnx.List(
            [
                pnnx.Residual(
                    pnnx.MultiHeadAttention(
                        cfg.num_heads,
                        cfg.features // cfg.num_heads,
                        cfg.features,
                        out_bias=True,
                        rotary=pnnx.RotaryEmbedding() if kind == "rope" else None,
                        position_bias=bias,
                        rngs=rngs,
                    ),
                    norm(),
                    norm_position=cfg.norm_position,
                )
                for _ in range(cfg.num_layers)
            ]
        )
        self.mlp = nnx.List(
            [
                pnnx.Residual(
                    FeedForward(cfg.features, cfg.mlp_features, rngs=rngs),
                    norm(),
                    norm_position=cfg.norm_position,
                )
                for _ in range(cfg.num_layers)
            ]
        )
        self.final_norm = norm() if cfg.norm_position == "pre" else None
        self.head = nnx.Linear(cfg.features, cfg.num_outputs, rngs=rngs)

    def __call__(self, tokens, *, positions, valid, segments):
        attention_segments = jnp.where(valid, segments + 1, 0)
        x = self.embed(tokens, positions=positions)
        for attention, mlp in zip(self.attention, self.mlp, strict=True):
            x = attention(x, positions=positions, segments=attention_segments)
            x = mlp(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return self.head(x)


class NnxNet:
    """`Encoder` behind linen's ``init`` / ``apply``: parameters as a pytree."""

    def __init__(self, config: ModelConfig):
        self.config = config
        abstract = nnx.eval_shape(lambda: Encoder(config, rngs=nnx.Rngs(0)))
        self._graphdef, self._params = nnx.split(abstract, nnx.Param)

    def init(self, key, tokens, *, positions, valid, segments):
        del tokens, positions, valid, segments  # NNX knows its sizes already
        model = Encoder(self.config, rngs=nnx.Rngs(key))
        return {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}

    def apply(self, variables, tokens, *, positions, valid, segments):
        params = jax.tree.map(lambda x: x, self._params)  # a copy to fill
        nnx.replace_by_pure_dict(params, variables["params"])
        model = nnx.merge(self._graphdef, params)
        return model(tokens, positions=positions, valid=valid, segments=segments)
