"""Gemma 4's text decoder parts beyond Gemma 3's form.

- Per-layer inputs (``hidden_size_per_layer_input``, the E2B/E4B models):
  every token has, for each layer, a small vector from its own embedding
  table and from a projection of its embedding (`PerLayerInputs`); each
  layer adds ``norm(project(act(gate(x)) * its vector))`` to its output
  (`PerLayerBlock` in a ``"reordered"`` `Residual`).
- The mixture-of-experts block (``enable_moe_block``, 26B-A4B): the experts
  sit beside the dense MLP, each with its own norms, routed by the layer's
  input before any norm (`DenseAndExperts`).
- ``layer_scalar``: the layer's output times a learned scalar (the last
  `Residual`'s ``output_scale="layer_scalar"``).
- The last ``num_kv_shared_layers`` layers reuse the keys and values of an
  earlier layer (`flax_posenc.LayerAttention.kv_shared_from`; the decoder
  hands them over, `examples.models.Decoder`), with MLPs twice as wide
  (``use_double_wide_mlp``).
"""

from __future__ import annotations

from flax import nnx

from examples import layers, moe
from flax_posenc import nnx as pnnx


class PerLayerInputs(nnx.Module):
    """The ``[batch, seq, layers, width]`` per-layer inputs of ``ids`` and
    their (scaled) embeddings ``x``: ``(norm(proj(x) / sqrt(hidden)) +
    table[ids] * sqrt(width)) / sqrt(2)``."""

    def __init__(self, config, *, dtype, param_dtype, rngs):
        hidden, width = config["hidden_size"], config["hidden_size_per_layer_input"]
        self.layers, self.width = config["num_hidden_layers"], width
        self.table = pnnx.TokenEmbedding(
            config.get("vocab_size_per_layer_input", config["vocab_size"]),
            self.layers * width,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.projection = layers.linear(
            hidden,
            self.layers * width,
            ("embed", "mlp"),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.norm = pnnx.RMSNorm(
            width,
            epsilon=config.get("rms_norm_eps", 1e-6),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, ids, x):
        shape = (*ids.shape, self.layers, self.width)
        own = self.table(ids).reshape(shape) * self.width**0.5
        projected = self.projection(x) * x.shape[-1] ** -0.5
        return (self.norm(projected.reshape(shape)) + own) * 2**-0.5


class PerLayerBlock(nnx.Module):
    """``project(act(gate(x)) * per_layer_input)``: hidden -> width -> hidden."""

    def __init__(self, config, activation, *, dtype, param_dtype, rngs):
        hidden, width = config["hidden_size"], config["hidden_size_per_layer_input"]
        kw = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        self.gate = layers.linear(hidden, width, ("embed", "mlp"), **kw)
        self.projection = layers.linear(width, hidden, ("mlp", "embed"), **kw)
        self.activation = activation

    def __call__(self, x, *, per_layer_input):
        return self.projection(self.activation(self.gate(x)) * per_layer_input)


class DenseAndExperts(nnx.Module):
    """``dense_norm(dense(norm(x))) + experts_norm(experts(experts_pre_norm(x)))``,
    the experts routed by ``x`` itself; in a ``"reordered"`` `Residual`
    whose norm is the layer's ``post_feedforward_layernorm``."""

    def __init__(self, config, dense, norm, *, dtype, param_dtype, rngs):
        self.pre_norm, self.dense, self.dense_norm = norm(), dense, norm()
        self.experts_pre_norm, self.experts_norm = norm(), norm()
        self.moe = moe.MoE(
            config,
            activation=dense.activation,
            shared_mlp=None,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x, **unused):
        dense = self.dense_norm(self.dense(self.pre_norm(x)))
        routed = self.moe(self.experts_pre_norm(x), route_by=x)
        return dense + self.experts_norm(routed)
