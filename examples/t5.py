"""T5 (v1.0 and v1.1 / Flan-T5) from its ``config.json``, from flax_posenc's parts.

An encoder of bidirectional self-attention and a decoder of causal
self-attention plus cross-attention over the encoder's output, each sublayer
a pre-norm `Residual` with T5's RMSNorm; positions act only through the
relative position bias of T5's buckets (`RelativePositionBias`), one per
stack shared by all its layers; logits unscaled by ``head_dim ** -0.5``
(T5 folds it into its initialization: ``scale=1``); v1.0's head multiplies
the decoder's output by ``d_model ** -0.5`` first (``scale_decoder_outputs``
in transformers 5, a tied head in transformers 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx

from examples import models
from flax_posenc import nnx as pnnx

# feed_forward_proj -> (gated, activation): transformers reads "gated-gelu"
# as the tanh GELU ("gelu_new").
FEED_FORWARD = {
    "relu": (False, "relu"),
    "gated-gelu": (True, "gelu_new"),
    "gated-silu": (True, "silu"),
}


class FeedForward(nnx.Module):
    """``wo(act(wi(x)))``, or gated ``wo(act(wi_0(x)) * wi_1(x))`` (v1.1)."""

    def __init__(self, d_model, d_ff, kind, *, dtype, rngs):
        if kind not in FEED_FORWARD:
            raise ValueError(
                f"feed_forward_proj {kind!r} is not one the example builds "
                f"({sorted(FEED_FORWARD)})."
            )
        gated, name = FEED_FORWARD[kind]
        self.activation = models.activation_fn(name)

        def linear(n_in, n_out):
            return nnx.Linear(n_in, n_out, use_bias=False, dtype=dtype, rngs=rngs)

        self.wi = None if gated else linear(d_model, d_ff)
        self.wi_0 = linear(d_model, d_ff) if gated else None
        self.wi_1 = linear(d_model, d_ff) if gated else None
        self.wo = linear(d_ff, d_model)

    def __call__(self, x):
        if self.wi is not None:
            return self.wo(self.activation(self.wi(x)))
        return self.wo(self.activation(self.wi_0(x)) * self.wi_1(x))


class T5(nnx.Module):
    """T5 from its ``config.json`` (a dict): ``model(ids,
    decoder_input_ids=...)`` gives the decoder's logits ``[batch, dec_seq,
    vocab]``; ``attention_mask`` marks the encoder's padding with 0."""

    def __init__(self, config: Mapping[str, Any], *, dtype=None, rngs: nnx.Rngs):
        self.config = config = dict(config)
        d, heads = config["d_model"], config["num_heads"]
        eps = config.get("layer_norm_epsilon", 1e-6)
        self.shared = pnnx.TokenEmbedding(
            config["vocab_size"], d, dtype=dtype, rngs=rngs
        )

        def norm():
            return pnnx.RMSNorm(d, epsilon=eps, dtype=dtype, rngs=rngs)

        def bias(bidirectional):
            return pnnx.RelativePositionBias(
                heads,
                num_buckets=config.get("relative_attention_num_buckets", 32),
                max_distance=config.get("relative_attention_max_distance", 128),
                bidirectional=bidirectional,
                rngs=rngs,
            )

        def attention(causal=False, position_bias=None):
            return pnnx.MultiHeadAttention(
                heads,
                config["d_kv"],
                d,
                causal=causal,
                scale=1.0,
                position_bias=position_bias,
                dtype=dtype,
                rngs=rngs,
            )

        def ff():
            return FeedForward(
                d,
                config["d_ff"],
                config.get("feed_forward_proj", "relu"),
                dtype=dtype,
                rngs=rngs,
            )

        def residual(sublayer):
            return pnnx.Residual(sublayer, norm(), norm_position="pre")

        encoder_bias, decoder_bias = bias(True), bias(False)  # shared by layers
        self.encoder = nnx.List(
            [
                nnx.List(
                    [residual(attention(position_bias=encoder_bias)), residual(ff())]
                )
                for _ in range(config["num_layers"])
            ]
        )
        self.encoder_norm = norm()
        self.decoder = nnx.List(
            [
                nnx.List(
                    [
                        residual(attention(causal=True, position_bias=decoder_bias)),
                        residual(attention()),
                        residual(ff()),
                    ]
                )
                for _ in range(config.get("num_decoder_layers") or config["num_layers"])
            ]
        )
        self.decoder_norm = norm()
        # transformers 4: tie_word_embeddings false (v1.1) means an own head
        # and no scaling; transformers 5 always ties and saves the scaling
        # as scale_decoder_outputs.
        self.tied = config.get("tie_word_embeddings", True)
        self.scale_outputs = config.get(
            "scale_decoder_outputs",
            config.get("tie_word_embeddings", True) is not False,
        )
        self.lm_head = (
            None
            if self.tied
            else nnx.Linear(
                d, config["vocab_size"], use_bias=False, dtype=dtype, rngs=rngs
            )
        )

    def encode(self, ids, attention_mask=None):
        """The encoder's output ``[batch, seq, d_model]``."""
        segments = None if attention_mask is None else jnp.asarray(attention_mask)
        x = self.shared(ids)
        for attn, ff in self.encoder:
            x = ff(attn(x, segments=segments))
        return self.encoder_norm(x)

    def decode(
        self, decoder_ids, encoded, attention_mask=None, *, positions=None, decode=False
    ):
        """The decoder's logits over ``encoded`` (the encoder's output)."""
        kv_segments = segments = None
        if attention_mask is not None:
            kv_segments = jnp.asarray(attention_mask)
            segments = jnp.ones(decoder_ids.shape, jnp.int32)
        x = self.shared(decoder_ids)
        for self_attn, cross, ff in self.decoder:
            x = self_attn(x, positions=positions, decode=decode)
            x = cross(x, kv=encoded, segments=segments, kv_segments=kv_segments)
            x = ff(x)
        x = self.decoder_norm(x)
        if self.scale_outputs:  # T5 v1.0
            x = x * self.config["d_model"] ** -0.5
        return self.shared.attend(x) if self.lm_head is None else self.lm_head(x)

    def init_cache(self, batch: int, max_length: int) -> None:
        """The decoder's self-attention caches."""
        shape = (batch, max_length, self.config["d_model"])
        for self_attn, _, _ in self.decoder:
            self_attn.sublayer.init_cache(shape)

    def __call__(self, ids, *, decoder_input_ids, attention_mask=None):
        encoded = self.encode(ids, attention_mask)
        return self.decode(decoder_input_ids, encoded, attention_mask)
