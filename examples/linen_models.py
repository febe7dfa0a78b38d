"""`examples.models.Decoder` in Flax linen, for the dense families.

The same layers from the same parts (`flax_posenc.linen`'s twins: the
attention from ``MultiHeadAttention.from_hf_config``, `Residual`, `RMSNorm`,
`TokenEmbedding`) under the same parameter names, so the weights the NNX
loader placed are the linen model's params as they are (`linen_params`).
It covers the families whose layers are an attention and a dense gated MLP
each in a ``"pre"``, ``"sandwich"`` or ``"reordered"`` `Residual` (Llama,
Mistral, Qwen2/3, SmolLM3, OLMo 1/2/3, EXAONE 4, Ministral 3, Phi-3, GLM,
GLM-4, Gemma 1/2/3, Helium, Seed-OSS, ERNIE 4.5, Arcee); the forward pass
only: the decode cache and `examples.generate` are the NNX model's.

    model, params = examples.linen_models.from_pretrained(folder)
    logits = model.apply({"params": params}, ids)
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx

import flax_posenc as fp
from examples import checkpoint, models, moe
from flax_posenc import linen


def check_family(config: Mapping[str, Any]) -> models.Family:
    """The config's `models.Family`, or a ValueError when its linen twin is
    not built here (the NNX `examples.models.Decoder` builds it)."""
    config = models.standard_config(config)
    family = models.family_of(config)
    reasons = [
        ("a parallel residual", family.norm_position == "parallel"),
        ("mixtures of experts", bool(moe.moe_layers(config))),
        ("Gemma 4's parts", family.layer_scalar),
        ("Granite's multipliers", family.multiplier_keys is not None),
        ("Apertus's xIELU", family.activation == "xielu"),
        (
            "an encoder (every layer bidirectional)",
            models.is_encoder(fp.attention_schedule(config)),
        ),
    ]
    missing = [reason for reason, present in reasons if present]
    if missing:
        raise ValueError(
            f"examples.linen_models does not build {', '.join(missing)} "
            f"({config['model_type']}); examples.models.Decoder (NNX) does."
        )
    return family


def _norm(family, config, **kw):
    kind, fields = models.norm_fields(family, config)
    return (linen.LayerNorm if kind == "layer" else linen.RMSNorm)(**fields, **kw)


class GatedMLP(nn.Module):
    """`examples.models.GatedMLP` in linen: ``gate``, ``up``, ``down``."""

    width: int
    activation: str
    gated: bool = True
    use_bias: bool = False

    @nn.compact
    def __call__(self, x):
        def dense(features, name):
            return nn.Dense(features, use_bias=self.use_bias, name=name)

        act = models.activation_fn(self.activation)
        up = dense(self.width, "up")(x)
        h = act(dense(self.width, "gate")(x)) * up if self.gated else act(up)
        return dense(x.shape[-1], "down")(h)


class DecoderLayer(nn.Module):
    """Attention then MLP, each a `Residual` (``attention``, ``mlp``)."""

    config: Mapping[str, Any]
    layer: int

    @nn.compact
    def __call__(self, x, *, positions, segments):
        config = dict(self.config)
        family = check_family(config)
        sandwich = family.norm_position == "sandwich"
        activation = models.activation_name(family, config)
        # Unbound (parent=None): each Residual adopts its sublayer and norms
        # under its own name, as the NNX model nests them.
        attention = linen.MultiHeadAttention.from_hf_config(
            config, layer=self.layer, dropout_rate=0.0
        ).clone(parent=None)
        mlp = GatedMLP(
            config[family.mlp_size_key],
            activation,
            gated=family.gated,
            use_bias=bool(config.get(family.mlp_bias_key, False)),
            parent=None,
        )
        for name, sublayer in (("attention", attention), ("mlp", mlp)):
            block = linen.Residual(
                sublayer,
                norm=_norm(family, config, parent=None),
                norm_position=family.norm_position,
                post_norm=_norm(family, config, parent=None) if sandwich else None,
                name=name,
            )
            kwargs = {"positions": positions, "segments": segments}
            x = block(x, **kwargs) if name == "attention" else block(x)
        return x


class Decoder(nn.Module):
    """A decoder-only language model from its ``config.json`` (a dict; see
    `examples.models.Decoder`): ``apply({"params": p}, ids)`` gives the
    logits ``[batch, seq, vocab]``."""

    config: Mapping[str, Any]

    @nn.compact
    def __call__(self, ids, *, positions=None, segments=None):
        config = models.standard_config(self.config)
        family = check_family(config)
        config = {**family.defaults, **config}
        hidden, vocab = config["hidden_size"], config["vocab_size"]
        embed = linen.TokenEmbedding(
            vocab,
            hidden,
            scale_by_sqrt_features=family.scale_embeddings,
            name="embed",
        )
        x = embed(ids)
        for i in range(config["num_hidden_layers"]):
            x = DecoderLayer(config, i, name=f"layers_{i}")(
                x, positions=positions, segments=segments
            )
        x = _norm(family, config, name="norm")(x)
        if config.get("tie_word_embeddings", family.tied):
            logits = embed.attend(x)
        else:
            logits = nn.Dense(vocab, use_bias=False, name="lm_head")(x)
        scale = family.logit_scale_key and config.get(family.logit_scale_key)
        if scale:
            logits = logits * scale
        cap = family.final_softcap_key and config.get(family.final_softcap_key)
        if cap:
            logits = cap * jnp.tanh(logits / cap)
        return logits


def linen_params(model: models.Decoder) -> dict[str, Any]:
    """The NNX decoder's parameters as the linen `Decoder`'s: the same
    names, ``layers.{i}`` as ``layers_{i}``."""
    params: dict[str, Any] = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        keys = [str(k) for k in path]
        if keys[0] == "layers":  # nnx.List index -> a linen submodule's name
            keys = [f"layers_{keys[1]}", *keys[2:]]
        node = params
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = variable.get_value()
    return params


def from_pretrained(path: str | pathlib.Path):
    """``(Decoder, params)`` of a checkpoint folder, read by the NNX loader
    (`examples.from_pretrained`) and handed over by `linen_params`."""
    config = checkpoint.read_config(path)
    check_family(config)
    return Decoder(config), linen_params(checkpoint.from_pretrained(path))
