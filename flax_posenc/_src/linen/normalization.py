"""LayerNorm, RMSNorm and DynamicTanh modules, and the residual with its norms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from flax_posenc._src import normalization, twins, validation
from flax_posenc._src.linen import dropout

NORM_POSITIONS = normalization.NORM_POSITIONS


def _param_shape(
    x: jax.Array,
    axis: int | Sequence[int],
    names: tuple[str | None, ...],
    feature_axes: int | Sequence[int] | None = None,
) -> tuple[int, ...]:
    axes = normalization._feature_axes(
        x, normalization._axes(x.ndim, axis), feature_axes
    )
    if len(names) != len(axes):
        raise ValueError(
            f"scale/bias axis names {names} must name each feature axis {axes} "
            "(default: the normalized axes)."
        )
    return tuple(x.shape[a] for a in axes)


def _norm_param(module: nn.Module, name: str, init, shape: tuple[int, ...]):
    """A scale/bias parameter with the module's dtype and logical axis names."""
    return module.param(
        name,
        nn.with_logical_partitioning(init, module.param_axes),
        shape,
        module.param_dtype,
    )


class LayerNorm(nn.Module):
    """Layer normalization (Ba et al. 2016, ``https://arxiv.org/abs/1607.06450``).

    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias`` over ``axis``, by
    `flax_posenc.layer_norm`: statistics in at least float32 by the
    corrected two-pass method, accurate where ``flax.linen.LayerNorm``'s default
    fast variance cancels (inputs far from zero mean).

    Logical axis names: ``scale``: ``("embed",)``, ``bias``: ``("embed",)``
    (``param_axes``: one name per normalized axis).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import LayerNorm
      >>> x = jnp.ones((2, 5, 8))
      >>> variables = LayerNorm().init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, nn.meta.unbox(variables))
      {'params': {'bias': (8,), 'scale': (8,)}}

    Attributes:
      epsilon: added to the variance inside the square root; 1e-6 as Flax's
        LayerNorm. PyTorch's ``nn.LayerNorm`` and so BERT, GPT-2 and GPT-NeoX
        checkpoints use 1e-5 (``layer_norm_eps`` / ``layer_norm_epsilon`` in
        their configs): set it from the config when porting. ``epsilon=0``
        gives NaN values and gradients on constant rows (see
        `flax_posenc.layer_norm`).
      use_scale: learn a multiplier.
      use_bias: learn an offset.
      axis: axis or axes normalized over.
      feature_axes: the axes scale and bias span; default ``axis``.
        ``axis=-1, feature_axes=(-2, -1)`` on ``[..., heads, head_dim]`` is a
        LayerNorm of each head with weights of its own (StableLM 2, Command
        R+).
      dtype: output dtype; default the input's.
      param_dtype: dtype of scale and bias.
      scale_init: initializer of the scale (ones).
      bias_init: initializer of the bias (zeros).
      param_axes: logical axis names of scale and bias, one per feature axis.
    """

    epsilon: float = 1e-6
    use_scale: bool = True
    use_bias: bool = True
    axis: int | Sequence[int] = -1
    feature_axes: int | Sequence[int] | None = None
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    scale_init: nn.initializers.Initializer = nn.initializers.ones
    bias_init: nn.initializers.Initializer = nn.initializers.zeros
    param_axes: tuple[str | None, ...] = ("embed",)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalizes ``x``; returns its shape in ``dtype`` (default ``x.dtype``)."""
        x = jnp.asarray(x)
        validation.check_real("epsilon", self.epsilon)
        validation.check_bools(use_scale=self.use_scale, use_bias=self.use_bias)
        shape = _param_shape(x, self.axis, self.param_axes, self.feature_axes)
        scale = bias = None
        if self.use_scale:
            scale = _norm_param(self, "scale", self.scale_init, shape)
        if self.use_bias:
            bias = _norm_param(self, "bias", self.bias_init, shape)
        return normalization.layer_norm(
            x,
            scale,
            bias,
            axis=self.axis,
            feature_axes=self.feature_axes,
            eps=self.epsilon,
            dtype=self.dtype,
        )


class RMSNorm(nn.Module):
    """RMS normalization (Zhang and Sennrich 2019, ``https://arxiv.org/abs/1910.07467``).

    ``y = x / sqrt(mean(x**2) + epsilon) * scale``, or ``* (1 + scale)`` with
    ``unit_offset=True`` (Gemma checkpoints; the scale then starts at zero), by
    `flax_posenc.rms_norm`.

    Logical axis names: ``scale``: ``("embed",)`` (``param_axes``: one
    name per normalized axis).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import RMSNorm
      >>> x = jnp.ones((2, 5, 8))
      >>> variables = RMSNorm(unit_offset=True).init(jax.random.key(0), x)
      >>> nn.meta.unbox(variables)["params"]["scale"].tolist()
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]

    Attributes:
      epsilon: added to the mean square inside the square root; 1e-6 as
        Flax's RMSNorm, Gemma and Qwen. Llama 2 and 3 configs give
        ``rms_norm_eps`` 1e-5 or 1e-6: set it from the config when porting.
        ``epsilon=0`` gives NaN values and gradients on all-zero rows (see
        `flax_posenc.rms_norm`).
      use_scale: learn a multiplier.
      unit_offset: multiply by ``1 + scale`` (Gemma) instead of ``scale``.
      axis: axis or axes normalized over.
      feature_axes: the axes the scale spans; default ``axis`` (as
        `LayerNorm`'s).
      dtype: output dtype; default the input's.
      param_dtype: dtype of the scale.
      scale_init: initializer of the scale; default ones, or zeros with
        ``unit_offset``.
      param_axes: logical axis names of the scale, one per feature axis.
    """

    epsilon: float = 1e-6
    use_scale: bool = True
    unit_offset: bool = False
    axis: int | Sequence[int] = -1
    feature_axes: int | Sequence[int] | None = None
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    scale_init: nn.initializers.Initializer | None = None
    param_axes: tuple[str | None, ...] = ("embed",)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalizes ``x``; returns its shape in ``dtype`` (default ``x.dtype``)."""
        x = jnp.asarray(x)
        validation.check_real("epsilon", self.epsilon)
        validation.check_bools(use_scale=self.use_scale, unit_offset=self.unit_offset)
        init = twins.rms_scale_init(self.scale_init, self.use_scale, self.unit_offset)
        shape = _param_shape(x, self.axis, self.param_axes, self.feature_axes)
        scale = None
        if self.use_scale:
            scale = _norm_param(self, "scale", init, shape)
        return normalization.rms_norm(
            x,
            scale,
            axis=self.axis,
            feature_axes=self.feature_axes,
            eps=self.epsilon,
            unit_offset=self.unit_offset,
            dtype=self.dtype,
        )


class DynamicTanh(nn.Module):
    """Dynamic Tanh (Zhu et al. 2025): ``scale * tanh(alpha * x) + bias``.

    A normalization layer without statistics, opt-in beside `LayerNorm` and
    `RMSNorm` (which it replaces where a model was trained with it): the
    learned scalar ``alpha`` squashes extreme activations as a norm does,
    with no mean or variance over the features. By
    `flax_posenc.dynamic_tanh`, in at least float32, over the last axis.

    Logical axis names: ``alpha``: ``()``, ``scale``: ``("embed",)``,
    ``bias``: ``("embed",)`` (``param_axes``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import DynamicTanh
      >>> x = jnp.ones((2, 5, 8))
      >>> variables = DynamicTanh().init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, nn.meta.unbox(variables))
      {'params': {'alpha': (), 'bias': (8,), 'scale': (8,)}}

    Attributes:
      alpha_init: the initial ``alpha`` (the paper's 0.5; it advises less for
        wider or deeper models).
      use_scale: learn the per-feature ``scale`` (ones at first).
      use_bias: learn the per-feature ``bias`` (zeros at first).
      dtype: output dtype; default the input's.
      param_dtype: dtype of the parameters.
      param_axes: logical axis names of ``scale`` and ``bias``.
    """

    alpha_init: float = 0.5
    use_scale: bool = True
    use_bias: bool = True
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    param_axes: tuple[str | None] = ("embed",)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``scale * tanh(alpha * x) + bias``; ``x``'s shape in ``dtype``."""
        x = jnp.asarray(x)
        validation.check_bools(use_scale=self.use_scale, use_bias=self.use_bias)
        alpha_init = validation.check_real("alpha_init", self.alpha_init)
        shape = _param_shape(x, -1, self.param_axes)
        alpha = self.param(
            "alpha",
            nn.with_logical_partitioning(nn.initializers.constant(alpha_init), ()),
            (),
            self.param_dtype,
        )
        scale = bias = None
        if self.use_scale:
            scale = _norm_param(self, "scale", nn.initializers.ones_init(), shape)
        if self.use_bias:
            bias = _norm_param(self, "bias", nn.initializers.zeros_init(), shape)
        return normalization.dynamic_tanh(x, alpha, scale, bias, dtype=self.dtype)


class Residual(nn.Module):
    """A residual connection with its normalization, in one of five forms.

    - ``norm_position="post"`` (Vaswani et al. 2017): ``y = norm(x + f(x))``.
    - ``"pre"`` (Xiong et al. 2020, ``https://arxiv.org/abs/2002.04745``):
      ``y = x + f(norm(x))``; the residual stream is never normalized, which
      trains stably without warm-up but leaves a final norm to the caller.
    - ``"sandwich"`` (Gemma 2 and 3): ``y = x + post_norm(f(norm(x)))``.
    - ``"parallel"`` (GPT-NeoX, GPT-J): ``y = x + f(norm(x)) +
      g(parallel_norm(x))``, ``g = parallel``; GPT-J shares one norm
      (``share_norm=True``).
    - ``"reordered"`` (OLMo 2, Walsh et al. 2024): ``y = x + norm(f(x))``:
      the sublayer's output is normalized before the sum, its input is not.

    A learned output scale (``output_scale``): ``"layer_scale"`` (LayerScale,
    Touvron et al. 2021; DINOv3) multiplies what is added to ``x`` by a
    vector ``layer_scale [features]`` (``y = x + layer_scale * f(norm(x))``
    for ``"pre"``); ``"layer_scalar"`` (Gemma 4) multiplies the result by one
    number ``layer_scalar [1]`` (put it on a layer's last residual for Gemma
    4's ``h = layer_scalar * (h_mid + mlp(...))``). Both start at
    ``output_scale_init``.

    Dropout (``dropout_rate``) applies to each sublayer's output before the sum.
    Extra call arguments go to ``f`` (and ``g``), and so does ``deterministic``
    when their ``__call__`` takes it. A sublayer may return a tuple ``(out,
    *extra)`` (e.g. with its attention weights): the residual then returns
    ``(y, *extra)`` (``f``'s extras, then ``g``'s).

    Logical axis names: ``layer_scale``: ``("embed",)`` (Gemma 4's
    ``layer_scalar [1]`` has the name None); otherwise none of its own; its
    sublayers' and norms' are theirs.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from flax_posenc.linen import Residual
      >>> block = Residual(nn.Dense(8), norm_position="pre")
      >>> x = jnp.ones((2, 5, 8))
      >>> variables = block.init(jax.random.key(0), x)
      >>> sorted(variables["params"])
      ['norm', 'sublayer']
      >>> block.apply(variables, x).shape
      (2, 5, 8)
      >>> neox = Residual(nn.Dense(8), norm_position="parallel", parallel=nn.Dense(8))
      >>> sorted(neox.init(jax.random.key(0), x)["params"])
      ['norm', 'parallel', 'parallel_norm', 'sublayer']

    Attributes:
      sublayer: the module ``f``.
      norm: the normalization before ``f`` (after the sum for ``"post"``);
        default `LayerNorm`.
      norm_position: ``"post"``, ``"pre"``, ``"sandwich"``, ``"parallel"``
        or ``"reordered"``.
      post_norm: ``"sandwich"``'s norm of ``f``'s output; default `LayerNorm`
        (Gemma: ``RMSNorm(unit_offset=True)``).
      parallel: ``"parallel"``'s second sublayer ``g`` (the MLP).
      parallel_norm: the norm before ``g``; default `LayerNorm`.
      share_norm: ``g`` reads ``norm(x)`` too (GPT-J) instead of its own norm.
      output_scale: None, ``"layer_scale"`` or ``"layer_scalar"``.
      output_scale_init: the output scale's initial value (LayerScale:
        ``layerscale_value``, e.g. 1e-5 in CaiT, 1.0 in DINOv3).
      dropout_rate: dropout on each sublayer's output.
      deterministic: disable dropout; the call's ``deterministic`` wins when
        given, and is passed on to sublayers that take it.
    """

    sublayer: nn.Module
    norm: nn.Module | None = None
    norm_position: str = "post"
    post_norm: nn.Module | None = None
    parallel: nn.Module | None = None
    parallel_norm: nn.Module | None = None
    share_norm: bool = False
    output_scale: str | None = None
    output_scale_init: float = 1.0
    dropout_rate: float = 0.0
    deterministic: bool | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, *args: Any, deterministic: bool | None = None, **kwargs
    ) -> jax.Array | tuple[Any, ...]:
        """The residual sum ``y`` (or ``(y, *extra)``); see the class docstring."""
        position = twins.check_residual(
            self.norm_position,
            self.parallel,
            self.post_norm,
            self.parallel_norm,
            self.share_norm,
        )
        init = twins.check_output_scale(self.output_scale, self.output_scale_init)
        validation.check_module("sublayer", self.sublayer, optional=False)
        for name in ("norm", "post_norm", "parallel", "parallel_norm"):
            validation.check_module(name, getattr(self, name))
        norm = self.norm if self.norm is not None else LayerNorm(name="norm")

        # Default norms are made only for the forms that use them.
        post_norm = parallel_norm = None
        if position == "sandwich":
            post_norm = self.post_norm
            if post_norm is None:
                post_norm = LayerNorm(name="post_norm")
        if position == "parallel" and not self.share_norm:
            parallel_norm = self.parallel_norm
            if parallel_norm is None:
                parallel_norm = LayerNorm(name="parallel_norm")
        scale = None
        if self.output_scale is not None:
            scale = self.param(
                self.output_scale,
                nn.with_logical_partitioning(
                    nn.initializers.constant(init),
                    twins.output_scale_axes(self.output_scale),
                ),
                twins.output_scale_shape(self.output_scale, x.shape[-1]),
                jnp.float32,
            )
        return twins.residual_sum(
            x,
            args,
            kwargs,
            deterministic,
            lambda out: dropout.dropout(
                out, self.dropout_rate, self.deterministic, deterministic
            ),
            position,
            self.sublayer,
            norm,
            post_norm=post_norm,
            parallel=self.parallel,
            parallel_norm=parallel_norm,
            output_scale=self.output_scale,
            scale=scale,
        )
