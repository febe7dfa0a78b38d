"""NNX twins of LayerNorm, RMSNorm and DynamicTanh."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from flax_posenc._src import normalization, twins, validation
from flax_posenc._src.nnx import parameters


def _feature_shape(
    num_features: int | Sequence[int], axes: tuple[str | None, ...]
) -> tuple[int, ...]:
    sizes = (num_features,) if isinstance(num_features, int) else tuple(num_features)
    sizes = tuple(validation.check_int("num_features", n, minimum=1) for n in sizes)
    if len(axes) != len(sizes):
        raise ValueError(
            f"scale/bias axis names {axes} must name each normalized axis "
            f"(num_features {sizes})."
        )
    return sizes


class LayerNorm(nnx.Module):
    """Layer normalization with stable statistics (NNX).

    The twin of `flax_posenc.linen.LayerNorm`.
    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias`` over ``axis``
    (`flax_posenc.layer_norm`).

    Logical axis names: ``scale``: ``("embed",)``, ``bias``: ``("embed",)``
    (``param_axes``: one name per normalized axis).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import LayerNorm
      >>> norm = LayerNorm(8, rngs=nnx.Rngs(0))
      >>> norm(jnp.ones((2, 8))).shape
      (2, 8)

    Args:
      num_features: size of the normalized axis (a tuple for several axes;
        the sizes of ``feature_axes`` when given).
      epsilon: added to the variance; 1e-6 (PyTorch's and so BERT's, GPT-2's
        1e-5: set it from the checkpoint's config). ``epsilon=0`` gives NaN
        values and gradients on constant rows (see `flax_posenc.layer_norm`).
      use_scale: learn a multiplier.
      use_bias: learn an offset.
      axis: axis or axes normalized over.
      feature_axes: the axes ``num_features`` sizes (the parameters');
        default ``axis``. ``axis=-1, feature_axes=(-2, -1)`` with
        ``num_features=(heads, head_dim)`` is a LayerNorm of each head with
        weights of its own (StableLM 2, Command R+).
      dtype: output dtype; default the input's.
      param_dtype: dtype of scale and bias.
      scale_init: initializer of the scale (ones).
      bias_init: initializer of the bias (zeros).
      param_axes: logical axis names of scale and bias.
      rngs: the PRNG streams (``params``).
    """

    def __init__(
        self,
        num_features: int | Sequence[int],
        *,
        epsilon: float = 1e-6,
        use_scale: bool = True,
        use_bias: bool = True,
        axis: int | Sequence[int] = -1,
        feature_axes: int | Sequence[int] | None = None,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        scale_init: nnx.Initializer = nnx.initializers.ones,
        bias_init: nnx.Initializer = nnx.initializers.zeros,
        param_axes: tuple[str | None, ...] = ("embed",),
        rngs: nnx.Rngs,
    ):
        shape = _feature_shape(num_features, param_axes)
        validation.check_real("epsilon", epsilon)
        validation.check_bools(use_scale=use_scale, use_bias=use_bias)
        self.epsilon, self.axis, self.dtype = epsilon, axis, dtype
        self.feature_axes = feature_axes
        self.scale = (
            parameters.param(scale_init, rngs, shape, param_dtype, param_axes)
            if use_scale
            else None
        )
        self.bias = (
            parameters.param(bias_init, rngs, shape, param_dtype, param_axes)
            if use_bias
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalizes ``x``; returns its shape in ``dtype`` (default ``x.dtype``)."""
        return normalization.layer_norm(
            x,
            None if self.scale is None else self.scale[...],
            None if self.bias is None else self.bias[...],
            axis=self.axis,
            feature_axes=self.feature_axes,
            eps=self.epsilon,
            dtype=self.dtype,
        )


class RMSNorm(nnx.Module):
    """RMS normalization (NNX).

    The twin of `flax_posenc.linen.RMSNorm`.
    ``y = x / sqrt(mean(x**2) + epsilon) * scale`` (``* (1 + scale)`` with
    ``unit_offset``, Gemma), `flax_posenc.rms_norm`.

    Logical axis names: ``scale``: ``("embed",)`` (``param_axes``: one
    name per normalized axis).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import RMSNorm
      >>> RMSNorm(8, unit_offset=True, rngs=nnx.Rngs(0))(jnp.ones((2, 8))).shape
      (2, 8)

    Args:
      num_features: size of the normalized axis (a tuple for several axes;
        the sizes of ``feature_axes`` when given).
      epsilon: added to the mean square; 1e-6 (Llama configs give 1e-5 or
        1e-6 as ``rms_norm_eps``). ``epsilon=0`` gives NaN values and
        gradients on all-zero rows (see `flax_posenc.rms_norm`).
      use_scale: learn a multiplier.
      unit_offset: multiply by ``1 + scale`` (Gemma); the scale starts at 0.
      axis: axis or axes normalized over.
      feature_axes: the axes ``num_features`` sizes; default ``axis`` (as
        `LayerNorm`'s).
      dtype: output dtype; default the input's.
      param_dtype: dtype of the scale.
      scale_init: initializer of the scale; default ones, or zeros with
        ``unit_offset``.
      param_axes: logical axis names of the scale.
      rngs: the PRNG streams (``params``).
    """

    def __init__(
        self,
        num_features: int | Sequence[int],
        *,
        epsilon: float = 1e-6,
        use_scale: bool = True,
        unit_offset: bool = False,
        axis: int | Sequence[int] = -1,
        feature_axes: int | Sequence[int] | None = None,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        scale_init: nnx.Initializer | None = None,
        param_axes: tuple[str | None, ...] = ("embed",),
        rngs: nnx.Rngs,
    ):
        validation.check_bools(use_scale=use_scale, unit_offset=unit_offset)
        init = twins.rms_scale_init(scale_init, use_scale, unit_offset)
        shape = _feature_shape(num_features, param_axes)
        validation.check_real("epsilon", epsilon)
        self.epsilon, self.axis, self.dtype = epsilon, axis, dtype
        self.feature_axes = feature_axes
        self.unit_offset = unit_offset
        self.scale = (
            parameters.param(init, rngs, shape, param_dtype, param_axes)
            if use_scale
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalizes ``x``; returns its shape in ``dtype`` (default ``x.dtype``)."""
        return normalization.rms_norm(
            x,
            None if self.scale is None else self.scale[...],
            axis=self.axis,
            feature_axes=self.feature_axes,
            eps=self.epsilon,
            unit_offset=self.unit_offset,
            dtype=self.dtype,
        )


class DynamicTanh(nnx.Module):
    """Dynamic Tanh (Zhu et al. 2025): ``scale * tanh(alpha * x) + bias`` (NNX).

    The twin of `flax_posenc.linen.DynamicTanh` (same parameters ``alpha``,
    ``scale``, ``bias``, logical names and initial values), by
    `flax_posenc.dynamic_tanh` over the last axis.

    Logical axis names: ``alpha``: ``()``, ``scale``: ``("embed",)``,
    ``bias``: ``("embed",)`` (``param_axes``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import DynamicTanh
      >>> norm = DynamicTanh(8, rngs=nnx.Rngs(0))
      >>> norm(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    Attributes:
      num_features: the size of the last axis.
      alpha_init: the initial ``alpha`` (the paper's 0.5).
      use_scale: learn the per-feature ``scale`` (ones at first).
      use_bias: learn the per-feature ``bias`` (zeros at first).
      dtype: output dtype; default the input's.
      param_dtype: dtype of the parameters.
      param_axes: logical axis names of ``scale`` and ``bias``.
      rngs: the PRNG streams (``params``).
    """

    def __init__(
        self,
        num_features: int,
        *,
        alpha_init: float = 0.5,
        use_scale: bool = True,
        use_bias: bool = True,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        param_axes: tuple[str | None] = ("embed",),
        rngs: nnx.Rngs,
    ):
        validation.check_bools(use_scale=use_scale, use_bias=use_bias)
        alpha_init = validation.check_real("alpha_init", alpha_init)
        shape = _feature_shape(num_features, param_axes)
        self.dtype = dtype
        self.alpha = parameters.param(
            nnx.initializers.constant(alpha_init), rngs, (), param_dtype, ()
        )
        self.scale = (
            parameters.param(
                nnx.initializers.ones_init(), rngs, shape, param_dtype, param_axes
            )
            if use_scale
            else None
        )
        self.bias = (
            parameters.param(
                nnx.initializers.zeros_init(), rngs, shape, param_dtype, param_axes
            )
            if use_bias
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """``scale * tanh(alpha * x) + bias``; ``x``'s shape in ``dtype``."""
        return normalization.dynamic_tanh(
            x,
            self.alpha[...],
            None if self.scale is None else self.scale[...],
            None if self.bias is None else self.bias[...],
            dtype=self.dtype,
        )


class Residual(nnx.Module):
    """A residual connection with its norms, in one of five forms (NNX).

    The twin of `flax_posenc.linen.Residual` (same forms, same parameter
    names ``sublayer``, ``norm``, ``post_norm``, ``parallel``,
    ``parallel_norm``). NNX modules know their sizes when built, so the norms
    are passed in, built: ``norm`` always, ``post_norm`` for ``"sandwich"``,
    ``parallel`` and (unless ``share_norm``) ``parallel_norm`` for
    ``"parallel"``. ``output_scale`` creates its parameter (``layer_scale
    [num_features]`` or ``layer_scalar [1]``), so ``"layer_scale"`` needs
    ``num_features``.

    Logical axis names: ``layer_scale``: ``("embed",)`` (Gemma 4's
    ``layer_scalar [1]`` has the name None); otherwise none of its own; its
    sublayers' and norms' are theirs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from flax_posenc.nnx import LayerNorm, Residual
      >>> rngs = nnx.Rngs(0)
      >>> block = Residual(nnx.Linear(8, 8, rngs=rngs), LayerNorm(8, rngs=rngs),
      ...                  norm_position="pre")
      >>> block(jnp.ones((2, 5, 8))).shape
      (2, 5, 8)

    Args:
      sublayer: the module ``f``.
      norm: the normalization before ``f`` (after the sum for ``"post"``).
      norm_position: ``"post"``, ``"pre"``, ``"sandwich"``, ``"parallel"``
        or ``"reordered"`` (OLMo 2: ``y = x + norm(f(x))``).
      post_norm: ``"sandwich"``'s norm of ``f``'s output.
      parallel: ``"parallel"``'s second sublayer ``g``.
      parallel_norm: the norm before ``g``.
      share_norm: ``g`` reads ``norm(x)`` too (GPT-J).
      output_scale: None, ``"layer_scale"`` (LayerScale: ``x +
        layer_scale * branch``) or ``"layer_scalar"`` (Gemma 4: ``layer_scalar
        * y``); see `flax_posenc.linen.Residual`.
      output_scale_init: its initial value.
      num_features: the features of ``x`` (for ``"layer_scale"``).
      dropout_rate: dropout on each sublayer's output.
      deterministic: disable dropout; the call's value wins when given.
      rngs: the PRNG streams (``dropout``), needed with a dropout rate.
    """

    def __init__(
        self,
        sublayer: nnx.Module,
        norm: nnx.Module,
        *,
        norm_position: str = "post",
        post_norm: nnx.Module | None = None,
        parallel: nnx.Module | None = None,
        parallel_norm: nnx.Module | None = None,
        share_norm: bool = False,
        output_scale: str | None = None,
        output_scale_init: float = 1.0,
        num_features: int | None = None,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | None = None,
    ):
        twins.check_residual(
            norm_position, parallel, post_norm, parallel_norm, share_norm
        )
        validation.check_module("sublayer", sublayer, optional=False)
        validation.check_module("norm", norm, optional=False)
        for name, module in (
            ("post_norm", post_norm),
            ("parallel", parallel),
            ("parallel_norm", parallel_norm),
        ):
            validation.check_module(name, module)
        if norm_position == "sandwich" and post_norm is None:
            raise ValueError("norm_position='sandwich' needs post_norm.")
        if norm_position == "parallel" and not share_norm and parallel_norm is None:
            raise ValueError(
                "norm_position='parallel' needs parallel_norm (or share_norm=True)."
            )
        init = twins.check_output_scale(output_scale, output_scale_init)
        self.output_scale = output_scale
        if output_scale == "layer_scale" and num_features is None:
            raise ValueError("output_scale='layer_scale' needs num_features.")
        if output_scale is not None:
            shape = twins.output_scale_shape(
                output_scale,
                validation.check_int("num_features", num_features or 1, minimum=1),
            )
            setattr(
                self,
                output_scale,
                nnx.Param(
                    jnp.full(shape, init, jnp.float32),
                    out_sharding=twins.output_scale_axes(output_scale),
                    eager_sharding=False,
                ),
            )
        self.sublayer, self.norm, self.norm_position = sublayer, norm, norm_position
        self.post_norm, self.parallel = post_norm, parallel
        self.parallel_norm, self.share_norm = parallel_norm, share_norm
        self.dropout_rate = validation.check_rate("dropout_rate", dropout_rate)
        self.dropout = parameters.dropout_layer(self.dropout_rate, deterministic, rngs)

    def __call__(self, x, *args, deterministic: bool | None = None, **kwargs):
        """The residual sum ``y`` (or ``(y, *extra)``)."""
        return twins.residual_sum(
            x,
            args,
            kwargs,
            deterministic,
            lambda out: parameters.dropout(self.dropout, out, deterministic),
            self.norm_position,
            self.sublayer,
            self.norm,
            post_norm=self.post_norm,
            parallel=self.parallel,
            parallel_norm=None if self.share_norm else self.parallel_norm,
            output_scale=self.output_scale,
            scale=None
            if self.output_scale is None
            else getattr(self, self.output_scale)[...],
        )
