"""BERT from its ``config.json``, from flax_posenc's parts: an encoder whose
call gives the last hidden states.

Token, learned-position and token-type embeddings summed and layer-normed
(`InputEmbedding`), then per layer a post-LN `Residual` of bidirectional
attention (biases on every projection, no positions: they came in with the
embeddings) and one of a GELU MLP, as Devlin et al. 2018.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx

from examples import models
from flax_posenc import nnx as pnnx


class MLP(nnx.Module):
    """``output(act(intermediate(x)))``, with biases."""

    def __init__(self, hidden, intermediate, activation, *, dtype, rngs):
        self.intermediate = nnx.Linear(hidden, intermediate, dtype=dtype, rngs=rngs)
        self.output = nnx.Linear(intermediate, hidden, dtype=dtype, rngs=rngs)
        self.activation = models.activation_fn(activation)

    def __call__(self, x):
        return self.output(self.activation(self.intermediate(x)))


class Bert(nnx.Module):
    """BERT's encoder: ``model(ids, attention_mask=..., token_type_ids=...)``
    gives the last hidden states ``[batch, seq, hidden]`` (those of padding
    tokens, ``attention_mask`` 0, are not transformers': here they attend
    nothing)."""

    def __init__(self, config: Mapping[str, Any], *, dtype=None, rngs: nnx.Rngs):
        self.config = config = dict(config)
        hidden, heads = config["hidden_size"], config["num_attention_heads"]
        eps = config.get("layer_norm_eps", 1e-12)

        def norm():
            return pnnx.LayerNorm(hidden, epsilon=eps, dtype=dtype, rngs=rngs)

        self.embeddings = pnnx.InputEmbedding(
            config["vocab_size"],
            hidden,
            position=pnnx.LearnedPositionEmbedding(
                config["max_position_embeddings"], hidden, rngs=rngs
            ),
            num_token_types=config.get("type_vocab_size", 2),
            norm=norm(),
            dtype=dtype,
            rngs=rngs,
        )
        self.layers = nnx.List()
        for _ in range(config["num_hidden_layers"]):
            attention = pnnx.MultiHeadAttention(
                heads,
                hidden // heads,
                hidden,
                qkv_bias=True,
                out_bias=True,
                dtype=dtype,
                rngs=rngs,
            )
            mlp = MLP(
                hidden,
                config["intermediate_size"],
                config.get("hidden_act", "gelu"),
                dtype=dtype,
                rngs=rngs,
            )
            self.layers.append(
                nnx.List(
                    [
                        pnnx.Residual(attention, norm(), norm_position="post"),
                        pnnx.Residual(mlp, norm(), norm_position="post"),
                    ]
                )
            )

    def __call__(self, ids, *, attention_mask=None, token_type_ids=None):
        if token_type_ids is None:
            token_type_ids = jax.numpy.zeros_like(ids)
        x = self.embeddings(ids, token_types=token_type_ids)
        segments = None if attention_mask is None else jax.numpy.asarray(attention_mask)
        for attention, mlp in self.layers:
            x = mlp(attention(x, segments=segments))
        return x


class Identity(nnx.Module):
    """No norm (ModernBERT's first layer has none before its attention)."""

    def __call__(self, x):
        return x


class GeGLU(nnx.Module):
    """``Wo(act(a) * g)`` with ``[a, g] = Wi(x)`` split in halves (ModernBERT)."""

    def __init__(self, hidden, intermediate, activation, *, use_bias, dtype, rngs):
        self.wi = nnx.Linear(
            hidden, 2 * intermediate, use_bias=use_bias, dtype=dtype, rngs=rngs
        )
        self.wo = nnx.Linear(
            intermediate, hidden, use_bias=use_bias, dtype=dtype, rngs=rngs
        )
        self.activation = models.activation_fn(activation)

    def __call__(self, x):
        a, g = jax.numpy.split(self.wi(x), 2, axis=-1)
        return self.wo(self.activation(a) * g)


class ModernBert(nnx.Module):
    """ModernBERT's encoder: token embeddings and a LayerNorm, then pre-LN
    layers of attention (each layer's rotary base, global or a bidirectional
    window, from ``MultiHeadAttention.from_hf_config``) and a GeGLU MLP, a
    final LayerNorm; no biases where the config says none. The call gives the
    last hidden states (padding tokens' as for `Bert`)."""

    def __init__(self, config: Mapping[str, Any], *, dtype=None, rngs: nnx.Rngs):
        self.config = config = dict(config)
        hidden = config["hidden_size"]
        eps, bias = config.get("norm_eps", 1e-5), config.get("norm_bias", False)

        def norm():
            return pnnx.LayerNorm(
                hidden, epsilon=eps, use_bias=bias, dtype=dtype, rngs=rngs
            )

        self.embeddings = pnnx.TokenEmbedding(
            config["vocab_size"], hidden, dtype=dtype, rngs=rngs
        )
        self.embeddings_norm = norm()
        self.layers = nnx.List()
        for i in range(config["num_hidden_layers"]):
            attention = pnnx.MultiHeadAttention.from_hf_config(
                config, layer=i, dtype=dtype, rngs=rngs
            )
            mlp = GeGLU(
                hidden,
                config["intermediate_size"],
                config.get("hidden_activation", "gelu"),
                use_bias=config.get("mlp_bias", False),
                dtype=dtype,
                rngs=rngs,
            )
            first = Identity() if i == 0 else norm()
            self.layers.append(
                nnx.List(
                    [
                        pnnx.Residual(attention, first, norm_position="pre"),
                        pnnx.Residual(mlp, norm(), norm_position="pre"),
                    ]
                )
            )
        self.final_norm = norm()

    def __call__(self, ids, *, attention_mask=None):
        x = self.embeddings_norm(self.embeddings(ids))
        segments = None if attention_mask is None else jax.numpy.asarray(attention_mask)
        for attention, mlp in self.layers:
            x = mlp(attention(x, segments=segments))
        return self.final_norm(x)
