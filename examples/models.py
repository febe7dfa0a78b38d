"""Decoder-only transformers from a ``config.json``, built from flax_posenc's parts.

One class, `Decoder`, covers the Llama-shaped families (Llama 2/3, Mistral,
Qwen2/2.5, Qwen3, SmolLM3, OLMo 2): token embedding, then per layer an
attention and a gated MLP each inside a `Residual`, a final RMSNorm and the
LM head (tied to the embedding or not). What differs between the families is
data, read from the config: each layer's attention comes from
``MultiHeadAttention.from_hf_config(config, layer=i)`` (RoPE or none,
windows, QK norms, biases), the residual form and MLP from `FAMILIES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import flax_posenc as fp
from flax_posenc import nnx as pnnx


@dataclasses.dataclass(frozen=True)
class Family:
    """What a decoder family does around its attention.

    Attributes:
      norm_position: the residual form of both sublayers (`Residual`):
        ``"pre"`` (Llama) or ``"reordered"`` (OLMo 2: the sublayer's output
        is normalized, its input is not).
      activation: the gated MLP's activation (``hidden_act``).
    """

    norm_position: str = "pre"
    activation: str = "silu"


FAMILIES = {
    "llama": Family(),
    "mistral": Family(),
    "qwen2": Family(),
    "qwen3": Family(),
    "smollm3": Family(),
    "olmo2": Family(norm_position="reordered"),
}
ACTIVATIONS = {"silu": jax.nn.silu, "gelu_pytorch_tanh": jax.nn.gelu}


def family_of(config: Mapping[str, Any]) -> Family:
    """The `Family` of a config's ``model_type``, or a ValueError naming the
    ones these examples build."""
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(
            f"the examples build no model_type {model_type!r}; they build "
            f"{sorted(FAMILIES)}."
        )
    return FAMILIES[model_type]


class GatedMLP(nnx.Module):
    """``down(act(gate(x)) * up(x))``, without biases (Llama's MLP)."""

    def __init__(self, hidden, intermediate, activation, *, dtype, param_dtype, rngs):
        def linear(n_in, n_out, axes):
            return nnx.Linear(
                n_in,
                n_out,
                use_bias=False,
                dtype=dtype,
                param_dtype=param_dtype,
                kernel_metadata={"out_sharding": axes, "eager_sharding": False},
                rngs=rngs,
            )

        self.gate = linear(hidden, intermediate, ("embed", "mlp"))
        self.up = linear(hidden, intermediate, ("embed", "mlp"))
        self.down = linear(intermediate, hidden, ("mlp", "embed"))
        self.activation = ACTIVATIONS[activation]

    def __call__(self, x):
        return self.down(self.activation(self.gate(x)) * self.up(x))


class DecoderLayer(nnx.Module):
    """Attention then MLP, each a `Residual` with its RMSNorm."""

    def __init__(self, config, layer: int, *, dtype, param_dtype, rngs):
        family = family_of(config)
        hidden, eps = config["hidden_size"], config.get("rms_norm_eps", 1e-6)

        def norm():
            return pnnx.RMSNorm(
                hidden, epsilon=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs
            )

        attention = pnnx.MultiHeadAttention.from_hf_config(
            config, layer=layer, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        mlp = GatedMLP(
            hidden,
            config["intermediate_size"],
            config.get("hidden_act", family.activation),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.attention = pnnx.Residual(
            attention, norm(), norm_position=family.norm_position
        )
        self.mlp = pnnx.Residual(mlp, norm(), norm_position=family.norm_position)

    def __call__(self, x, *, positions, segments, decode):
        x = self.attention(x, positions=positions, segments=segments, decode=decode)
        return self.mlp(x)


class Decoder(nnx.Module):
    """A decoder-only language model from its ``config.json`` (a dict).

    ``model(ids)`` gives logits ``[batch, seq, vocab]`` of int ids ``[batch,
    seq]``; ``positions`` and ``segments`` (0: padding) as
    `flax_posenc.nnx.MultiHeadAttention` takes them; ``decode=True`` after
    `init_cache` writes the tokens into every layer's cache.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        config = dict(config)
        family_of(config)
        self.config = config
        hidden, vocab = config["hidden_size"], config["vocab_size"]
        self.embed = pnnx.TokenEmbedding(
            vocab, hidden, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.layers = nnx.List(
            [
                DecoderLayer(config, i, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for i in range(config["num_hidden_layers"])
            ]
        )
        self.norm = pnnx.RMSNorm(
            hidden,
            epsilon=config.get("rms_norm_eps", 1e-6),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        tied = config.get("tie_word_embeddings", False)
        self.lm_head = (
            None
            if tied
            else nnx.Linear(
                hidden,
                vocab,
                use_bias=False,
                dtype=dtype,
                param_dtype=param_dtype,
                kernel_metadata={
                    "out_sharding": ("embed", "vocab"),
                    "eager_sharding": False,
                },
                rngs=rngs,
            )
        )

    def init_cache(self, batch: int, max_length: int, dtype=None) -> None:
        """An empty cache of ``max_length`` tokens for ``batch`` rows in every
        layer (a window's or a chunk's where the layer has one)."""
        shape = (batch, max_length, self.config["hidden_size"])
        for layer in self.layers:
            layer.attention.sublayer.init_cache(shape, dtype)

    def __call__(self, ids, *, positions=None, segments=None, decode=False):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, positions=positions, segments=segments, decode=decode)
        x = self.norm(x)
        if self.lm_head is None:
            return self.embed.attend(x)
        return self.lm_head(x)


def build(config: Mapping[str, Any], *, dtype=None, seed: int = 0) -> Decoder:
    """A `Decoder` with random weights (the loader then replaces them)."""
    family_of(config)
    fp.attention_schedule(config)  # the config's errors before any weight
    return Decoder(config, dtype=dtype, rngs=nnx.Rngs(seed))
