"""Mixture-of-experts MLPs: Qwen3-MoE, Mixtral, OLMoE, DeepSeek-V2/V3, Llama 4,
gpt-oss and Gemma 4, from their configs.

A router scores every token against every expert, keeps the top k and
turns their scores into gates (`ROUTERS`: the families differ only there);
the layer's output is the gated sum of those experts' gated MLPs, plus a
shared expert every token goes through (Llama 4, DeepSeek-V3).

Every expert computes every token here and the gates (zero off the top k)
weight the results: exact, short and jit-friendly, and ``experts / k``
times the work of an implementation that dispatches each token to its k
experts only. It is written for reading and for checking checkpoints
against their reference, not for serving a 256-expert model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class Style:
    """What a family's mixture of experts does.

    Attributes:
      router: the `ROUTERS` entry that makes the gates.
      width_key: the experts' width key.
      shared_width: the shared expert's width from the config, or None.
      router_bias: the router has a bias (gpt-oss).
      scale_inputs: the gates scale each expert's input, not its output
        (Llama 4; the same for its bias-free experts up to rounding).
      clamped: gpt-oss's experts: biases, interleaved gate/up columns and
        ``(clip(up) + 1) * g * sigmoid(alpha * g)`` with ``g = min(gate,
        limit)``.
    """

    router: str
    width_key: str = "moe_intermediate_size"
    shared_width: Callable[[Mapping[str, Any]], int] | None = None
    router_bias: bool = False
    scale_inputs: bool = False
    clamped: bool = False


STYLES = {
    "qwen3_moe": Style("softmax"),
    "olmoe": Style("softmax", width_key="intermediate_size"),
    "mixtral": Style("softmax", width_key="intermediate_size"),
    "deepseek_v2": Style(
        "grouped_softmax",
        shared_width=lambda c: (
            c["moe_intermediate_size"] * c.get("n_shared_experts", 2)
        ),
    ),
    "deepseek_v3": Style(
        "grouped_sigmoid",
        shared_width=lambda c: (
            c["moe_intermediate_size"] * c.get("n_shared_experts", 1)
        ),
    ),
    "llama4_text": Style(
        "sigmoid_of_top_k",
        width_key="intermediate_size",
        shared_width=lambda c: c["intermediate_size"],
        scale_inputs=True,
    ),
    "gpt_oss": Style(
        "softmax_of_top_k",
        width_key="intermediate_size",
        router_bias=True,
        clamped=True,
    ),
    # Beside the dense MLP, every layer (examples.gemma4).
    "gemma4_text": Style("scaled_softmax"),
}


def num_experts(config: Mapping[str, Any]) -> int:
    """The routed experts' count, under any of its config names."""
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if config.get(key):
            return int(config[key])
    raise ValueError("the config names no experts (num_local_experts, num_experts).")


def moe_layers(config: Mapping[str, Any]) -> frozenset[int]:
    """The layers whose MLP is a mixture of experts, as transformers decides."""
    model_type, layers = config.get("model_type"), config["num_hidden_layers"]
    if model_type not in STYLES:
        return frozenset()
    if model_type == "qwen3_moe":
        step, dense = (
            config.get("decoder_sparse_step", 1),
            config.get("mlp_only_layers"),
        )
        return frozenset(
            i
            for i in range(layers)
            if i not in (dense or []) and (i + 1) % step == 0 and num_experts(config)
        )
    if model_type == "deepseek_v3":
        return frozenset(range(config.get("first_k_dense_replace", 3), layers))
    if model_type == "deepseek_v2":
        return frozenset(range(config.get("first_k_dense_replace", 0), layers))
    if model_type == "gemma4_text":  # its experts are beside the dense MLP
        return frozenset()
    if model_type == "llama4_text":
        moe = config.get("moe_layers")
        if moe is None:
            step = config.get("interleave_moe_layer_step", 1)
            moe = range(step - 1, layers, step)
        return frozenset(moe)
    return frozenset(range(layers))  # Mixtral, OLMoE, gpt-oss: every layer


def _top_k_gates(weights, index, experts):
    """``[tokens, experts]`` gates: ``weights`` at ``index``, zero elsewhere."""
    return jnp.einsum("nk,nke->ne", weights, jax.nn.one_hot(index, experts))


def _softmax(logits, config, k):
    """Qwen3-MoE, OLMoE, Mixtral: softmax over all experts, the top k kept
    (their sum renormalized to 1 with ``norm_topk_prob``; Mixtral always)."""
    weights, index = jax.lax.top_k(jax.nn.softmax(logits), k)
    if config.get("model_type") == "mixtral" or config.get("norm_topk_prob", False):
        weights = weights / weights.sum(-1, keepdims=True)
    return weights, index


def _softmax_of_top_k(logits, config, k):
    """gpt-oss: the top k logits, then a softmax over those."""
    top, index = jax.lax.top_k(logits, k)
    return jax.nn.softmax(top), index


def _sigmoid_of_top_k(logits, config, k):
    """Llama 4: the top k logits, each through a sigmoid."""
    top, index = jax.lax.top_k(logits, k)
    return jax.nn.sigmoid(top), index


def _scaled_softmax(logits, config, k, expert_scale):
    """Gemma 4: softmax over all experts, the top k renormalized, each times
    its expert's ``per_expert_scale`` (the logits of a scaled, normed
    input: `MoE.gates`)."""
    weights, index = jax.lax.top_k(jax.nn.softmax(logits), k)
    weights = weights / weights.sum(-1, keepdims=True)
    return weights * expert_scale[index], index


def _limit_to_groups(scores, groups, keep, group_score, fill):
    """``scores`` with every expert outside the ``keep`` of ``groups``
    groups that ``group_score`` (of a group's scores) ranks highest set to
    ``fill`` (DeepSeek's group-limited routing)."""
    grouped = scores.reshape(*scores.shape[:-1], groups, -1)
    _, best = jax.lax.top_k(group_score(grouped), keep)
    kept = jax.nn.one_hot(best, groups).sum(-2).astype(bool)
    return jnp.where(kept[..., None], grouped, fill).reshape(scores.shape)


def _grouped_softmax(logits, config, k):
    """DeepSeek-V2: softmax scores, the top k (``topk_method="greedy"``)
    or the top k among the ``topk_group`` of ``n_group`` groups whose best
    score is highest (``"group_limited_greedy"``), times
    ``routed_scaling_factor`` (transformers 5.24 does not renormalize)."""
    scores = jax.nn.softmax(logits)
    method = config.get("topk_method", "greedy")
    if method == "group_limited_greedy":
        scores = _limit_to_groups(
            scores, config["n_group"], config["topk_group"], lambda g: g.max(-1), 0.0
        )
    elif method != "greedy":
        raise ValueError(f"topk_method {method!r} is not one the examples build.")
    weights, index = jax.lax.top_k(scores, k)
    return weights * config.get("routed_scaling_factor", 1.0), index


def _grouped_sigmoid(logits, config, k, correction):
    """DeepSeek-V3: sigmoid scores; the experts chosen by score plus the
    correction bias among the ``topk_group`` of ``n_group`` groups whose
    two best such scores sum highest; the chosen scores (without the bias)
    renormalized (``norm_topk_prob``) and times ``routed_scaling_factor``."""
    scores = jax.nn.sigmoid(logits)
    masked = _limit_to_groups(
        scores + correction,
        config.get("n_group", 8),
        config.get("topk_group", 4),
        lambda g: jax.lax.top_k(g, 2)[0].sum(-1),
        -jnp.inf,
    )
    _, index = jax.lax.top_k(masked, k)
    weights = jnp.take_along_axis(scores, index, axis=-1)
    if config.get("norm_topk_prob", True):
        weights = weights / (weights.sum(-1, keepdims=True) + 1e-20)
    return weights * config.get("routed_scaling_factor", 2.5), index


ROUTERS = {
    "softmax": _softmax,
    "softmax_of_top_k": _softmax_of_top_k,
    "sigmoid_of_top_k": _sigmoid_of_top_k,
    "grouped_sigmoid": _grouped_sigmoid,
    "grouped_softmax": _grouped_softmax,
    "scaled_softmax": _scaled_softmax,
}


def _stacked(rngs, shape, param_dtype, axes):
    init = nnx.initializers.normal(0.02)
    return nnx.Param(
        init(rngs.params(), shape, param_dtype), out_sharding=axes, eager_sharding=False
    )


class Experts(nnx.Module):
    """``experts`` gated MLPs with their weights stacked: ``gate`` and
    ``up`` ``[experts, hidden, width]``, ``down`` ``[experts, width,
    hidden]`` (logical names ``expert``, ``embed``, ``mlp``)."""

    def __init__(
        self,
        experts,
        hidden,
        width,
        activation,
        *,
        clamped,
        config,
        dtype,
        param_dtype,
        rngs,
    ):
        wide = (experts, hidden, width)
        self.gate = _stacked(rngs, wide, param_dtype, ("expert", "embed", "mlp"))
        self.up = _stacked(rngs, wide, param_dtype, ("expert", "embed", "mlp"))
        self.down = _stacked(
            rngs, (experts, width, hidden), param_dtype, ("expert", "mlp", "embed")
        )
        self.clamped = clamped
        if clamped:  # gpt-oss
            self.gate_bias = _stacked(
                rngs, (experts, width), param_dtype, ("expert", "mlp")
            )
            self.up_bias = _stacked(
                rngs, (experts, width), param_dtype, ("expert", "mlp")
            )
            self.down_bias = _stacked(
                rngs, (experts, hidden), param_dtype, ("expert", "embed")
            )
            self.limit = float(config.get("swiglu_limit", 7.0))
            self.alpha = float(config.get("swiglu_alpha", 1.702))
        else:
            self.activation = activation
        self.dtype = dtype

    def _cast(self, *arrays):
        return [a if self.dtype is None else a.astype(self.dtype) for a in arrays]

    def __call__(self, x):
        """Every expert's output ``[experts, tokens, hidden]`` of ``x``
        (``[tokens, hidden]``, or ``[experts, tokens, hidden]``: one input
        per expert)."""
        x, gate, up, down = self._cast(x, self.gate[...], self.up[...], self.down[...])
        spec = "enh" if x.ndim == 3 else "nh"
        g = jnp.einsum(f"{spec},ehi->eni", x, gate)
        u = jnp.einsum(f"{spec},ehi->eni", x, up)
        if not self.clamped:
            return jnp.einsum("eni,eih->enh", self.activation(g) * u, down)
        g_bias, u_bias, d_bias = self._cast(
            self.gate_bias[...], self.up_bias[...], self.down_bias[...]
        )
        g = jnp.minimum(g + g_bias[:, None], self.limit)
        u = jnp.clip(u + u_bias[:, None], -self.limit, self.limit)
        h = (u + 1) * g * jax.nn.sigmoid(g * self.alpha)
        return jnp.einsum("eni,eih->enh", h, down) + d_bias[:, None]


class MoE(nnx.Module):
    """A config's mixture-of-experts MLP (`STYLES`), called on ``[...,
    hidden]``. ``activation``: the experts' function; ``shared_mlp(width)``:
    the shared expert's module. The router computes in float32 (DeepSeek-V3's
    choice; the others' logits are float32 in a float32 model)."""

    def __init__(self, config, *, activation, shared_mlp, dtype, param_dtype, rngs):
        style = STYLES[config["model_type"]]
        hidden, experts = config["hidden_size"], num_experts(config)
        # (Gemma 4: top_k_experts.)
        self.k = int(
            config.get("num_experts_per_tok") or config.get("top_k_experts", 1)
        )
        self.style = style
        self.config = dict(config)
        self.router = nnx.Linear(
            hidden,
            experts,
            use_bias=style.router_bias,
            param_dtype=param_dtype,
            kernel_metadata={"out_sharding": ("embed", None), "eager_sharding": False},
            rngs=rngs,
        )
        if style.router == "grouped_sigmoid":
            self.correction = nnx.Param(
                jnp.zeros((experts,), param_dtype),
                out_sharding=(None,),
                eager_sharding=False,
            )
        if style.router == "scaled_softmax":
            self.router_scale = nnx.Param(
                jnp.ones((hidden,), param_dtype),
                out_sharding=("embed",),
                eager_sharding=False,
            )
            self.expert_scale = nnx.Param(
                jnp.ones((experts,), param_dtype),
                out_sharding=(None,),
                eager_sharding=False,
            )
            self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.experts = Experts(
            experts,
            hidden,
            config[style.width_key],
            activation,
            clamped=style.clamped,
            config=config,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.shared = (
            None
            if style.shared_width is None
            else shared_mlp(style.shared_width(config))
        )

    def gates(self, x):
        """The ``[tokens, experts]`` gates of ``x`` ``[tokens, hidden]``."""
        x = x.astype(jnp.float32)
        extra = ()
        if self.style.router == "grouped_sigmoid":
            extra = (self.correction[...],)
        if self.style.router == "scaled_softmax":  # RMS-normed, times w / sqrt(d)
            x = x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + self.eps)
            x = x * self.router_scale[...] * x.shape[-1] ** -0.5
            extra = (self.expert_scale[...],)
        logits = self.router(x)
        route = ROUTERS[self.style.router]
        weights, index = route(logits, self.config, self.k, *extra)
        return _top_k_gates(weights, index, logits.shape[-1])

    def __call__(self, x, *, route_by=None, **unused):
        """The experts' sum on ``x``, gated by the router on ``route_by``
        (default ``x``; Gemma 4 routes by the layer's un-normed input)."""
        # (**unused: a parallel Residual hands it the attention's arguments.)
        tokens = x.reshape(-1, x.shape[-1])
        route_by = tokens if route_by is None else route_by.reshape(tokens.shape)
        gates = self.gates(route_by).astype(x.dtype)
        if self.style.scale_inputs:  # Llama 4: expert_e(gate_e * x)
            out = self.experts(gates.T[:, :, None] * tokens[None]).sum(0)
        else:
            out = jnp.einsum("ne,enh->nh", gates, self.experts(tokens))
        if self.shared is not None:
            out = out + self.shared(tokens)
        return out.reshape(x.shape).astype(x.dtype)
