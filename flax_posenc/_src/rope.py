"""Rotary position embeddings (RoPE) and their context-extension scalings."""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flax_posenc._src import angles, validation

LAYOUTS = ("halves", "interleaved")


@dataclasses.dataclass(frozen=True)
class LinearScaling:
    """Position interpolation (Chen et al. 2023): every frequency divided by ``factor``.

    Equivalent to dividing positions by ``factor``.
    ``https://arxiv.org/abs/2306.15595``

    Attributes:
      factor: the scale ``s >= 1``.
    """

    factor: float


@dataclasses.dataclass(frozen=True)
class DynamicNTKScaling:
    """Dynamic NTK-aware scaling: the base grows once ``seq_len`` exceeds the original.

    ``base' = base * (factor * s / L - (factor - 1)) ** (dim / (dim - 2))`` with
    ``s = max(seq_len, L)`` and ``L = original_max_position_embeddings`` (Hugging
    Face reads ``L`` from the model config's ``max_position_embeddings``; here it
    must be given). Nothing changes while ``seq_len <= L``.

    Stateless: the frequencies follow each call's static ``seq_len``, and
    nothing is remembered between calls. transformers instead recomputes them
    in the forward pass from ``max(position_ids) + 1`` and keeps the grown base
    (it grows with longer inputs and returns to the original only when an
    input no longer than ``L`` arrives). To match it while generating, pass
    ``seq_len`` = largest position so far + 1: the prompt length when
    prefilling, the cache length after the new token at each decoding step.
    In both, keys already in a KV cache keep the rotation they were written
    with. `apply_rope` with ``seq_len=None`` reads it as transformers does,
    ``max(positions) + 1``, from concrete positions; traced ones (under
    ``jit``) cannot give a static length, and are an error unless
    ``seq_len`` is passed. (`rope_frequencies` with ``seq_len=None``: the
    unscaled frequencies.)

    Attributes:
      factor: the scale ``s >= 1``.
      original_max_position_embeddings: the training context ``L``.
    """

    factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class YarnScaling:
    """YaRN (Peng et al. 2023): per-frequency blend of interpolation and extrapolation.

    ``https://arxiv.org/abs/2309.00071``. Frequencies whose wavelength fits
    ``beta_fast`` times in ``L`` keep their value, those fitting fewer than
    ``beta_slow`` times are divided by ``factor``, with a linear ramp between
    (bounds floored/ceiled when ``truncate``). ``attention_factor`` defaults to
    ``0.1 ln(factor) + 1`` (or the ratio of the two ``mscale`` forms when both
    ``mscale`` and ``mscale_all_dim`` are set) and multiplies cos and sin.

    Attributes:
      factor: the scale ``s >= 1``.
      original_max_position_embeddings: the training context ``L``.
      beta_fast: rotations in ``L`` above which a frequency is kept (32).
      beta_slow: rotations in ``L`` below which it is interpolated (1).
      attention_factor: overrides the computed attention factor.
      mscale: DeepSeek-style ``mscale`` numerator.
      mscale_all_dim: DeepSeek-style ``mscale`` denominator.
      truncate: floor/ceil the ramp bounds (Hugging Face's default).
    """

    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True


@dataclasses.dataclass(frozen=True)
class Llama3Scaling:
    """Llama 3.1's frequency-band scaling.

    Wavelengths below ``L / high_freq_factor`` keep their frequency, those above
    ``L / low_freq_factor`` are divided by ``factor``, and the band between is
    interpolated smoothly in ``L / wavelength``. With ``low_freq_factor ==
    high_freq_factor`` (Llama 4 Scout) there is no band between: a wavelength
    exactly at the boundary keeps its frequency (the reference gives NaN there,
    a case no published config meets).

    Attributes:
      factor: the scale ``s >= 1`` (8 for Llama 3.1).
      low_freq_factor: ``l`` (1 for Llama 3.1).
      high_freq_factor: ``h`` (4 for Llama 3.1).
      original_max_position_embeddings: the training context ``L`` (8192).
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class LongRopeScaling:
    """LongRoPE (Ding et al. 2024) as Phi-3, Phi-3.5 and Phi-4-mini use it.

    ``https://arxiv.org/abs/2402.13753``. Each frequency is divided by its own
    factor: ``short_factor[i]`` while the sequence fits the training context
    ``L``, ``long_factor[i]`` once it is longer (``seq_len > L``). cos and sin
    are multiplied by ``attention_factor``, by default
    ``sqrt(1 + ln(factor) / ln(L))`` (1 when ``factor <= 1``), where ``factor``
    defaults to ``max_position_embeddings / L``.

    Attributes:
      short_factor: ``dim // 2`` per-frequency factors for short sequences.
      long_factor: ``dim // 2`` per-frequency factors for long sequences.
      original_max_position_embeddings: the training context ``L`` (4096 for
        Phi-3-mini-128k).
      factor: context-extension ratio, for the default attention factor only;
        None reads it from ``max_position_embeddings / L``.
      attention_factor: overrides the computed attention factor.
    """

    short_factor: tuple[float, ...]
    long_factor: tuple[float, ...]
    original_max_position_embeddings: int
    factor: float | None = None
    attention_factor: float | None = None

    def __post_init__(self):
        # Lists from a config.json become tuples: hashable, usable as a static
        # jit argument and as a Flax module field.
        for name in ("short_factor", "long_factor"):
            numbers = validation.check_sequence(
                name,
                getattr(self, name),
                functools.partial(validation.check_real, finite=False),
            )  # finiteness: checked with the lengths, in rope_frequencies
            object.__setattr__(self, name, numbers)


@dataclasses.dataclass(frozen=True)
class ProportionalScaling:
    """Proportional RoPE (p-RoPE) of Gemma 4: a fraction of the pairs rotate.

    With head dimension ``d`` and ``n = int(partial_rotary_factor * d // 2)``,
    pair ``i < n`` has frequency ``base ** (-2 i / d)`` (the exponent's
    denominator is the whole head, not the rotated part) and the pairs from
    ``n`` on have frequency 0, so they pass through; every frequency is then
    divided by ``factor``. The pairs span the whole head: in the ``"halves"``
    layout, head 512 with ``partial_rotary_factor=0.25`` rotates features
    ``[0:64]`` and ``[256:320]``.

    Attributes:
      partial_rotary_factor: the fraction of pairs that rotate (1 rotates all).
      factor: divides every frequency (1).
    """

    partial_rotary_factor: float = 1.0
    factor: float = 1.0


RopeScaling = (
    LinearScaling
    | DynamicNTKScaling
    | YarnScaling
    | Llama3Scaling
    | LongRopeScaling
    | ProportionalScaling
)

SCALING_TYPES: dict[str, type] = {
    "linear": LinearScaling,
    "dynamic": DynamicNTKScaling,
    "yarn": YarnScaling,
    "llama3": Llama3Scaling,
    "longrope": LongRopeScaling,
    "proportional": ProportionalScaling,
}

# Keys of a rope_scaling / rope_parameters dict that every type may carry, and
# those each type reads (transformers 5's validation lists the same ones). Any
# other key is warned about: the library does not know what it would change.
_COMMON_KEYS = frozenset(
    {
        "rope_type",
        "type",
        "rope_theta",
        "partial_rotary_factor",
        "mrope_section",
        "mrope_interleaved",
    }
)
_TYPE_KEYS: dict[str, frozenset[str]] = {
    "default": frozenset(),
    "linear": frozenset({"factor"}),
    "dynamic": frozenset({"factor", "original_max_position_embeddings"}),
    "yarn": frozenset(
        {
            "factor",
            "original_max_position_embeddings",
            "attention_factor",
            "beta_fast",
            "beta_slow",
            "mscale",
            "mscale_all_dim",
            "truncate",
        }
    ),
    "longrope": frozenset(
        {
            "short_factor",
            "long_factor",
            "original_max_position_embeddings",
            "factor",
            "attention_factor",
        }
    ),
    "llama3": frozenset(
        {
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        }
    ),
    "proportional": frozenset({"factor"}),
}
# Older spellings of a type in published configs: Phi-3's first releases wrote
# "su" for LongRoPE; Qwen2-VL writes "mrope" for default RoPE with sections.
_TYPE_ALIASES = {"su": "longrope", "mrope": "default"}


@dataclasses.dataclass(frozen=True)
class _Parsed:
    """A ``scaling`` argument resolved: what the rotation needs besides ``dim``."""

    base: float
    scaling: RopeScaling | None
    partial_rotary_factor: float | None = None
    mrope_section: tuple[int, ...] | None = None
    mrope_interleaved: bool = False


def _is_nested(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` maps layer types to dicts (Gemma 3/4 rope_parameters)."""
    return bool(config) and all(
        isinstance(value, Mapping) or value is None for value in config.values()
    )


def _parse(
    scaling: RopeScaling | Mapping[str, Any] | None,
    base: float | None,
    max_position_embeddings: int | None,
) -> _Parsed:
    """Reads a ``scaling`` argument in any accepted form, and checks the base."""
    if scaling is None or isinstance(scaling, tuple(SCALING_TYPES.values())):
        resolved = 10_000.0 if base is None else base
        return _Parsed(validation.check_positive("base", resolved), scaling)
    if not isinstance(scaling, Mapping):
        raise TypeError(
            "scaling must be None, a rope_scaling / rope_parameters dict or one of "
            f"{', '.join(t.__name__ for t in SCALING_TYPES.values())}; "
            f"got {type(scaling).__name__}."
        )
    if _is_nested(scaling):
        raise ValueError(
            "this rope_parameters dict holds one entry per layer type "
            f"({', '.join(repr(k) for k in scaling)}): pass one of them, e.g. "
            "config['rope_parameters']['full_attention'], or build with "
            "rope_config_from_hf(config, layer_type=...)."
        )
    config = {key: value for key, value in scaling.items() if value is not None}
    kind = config.get("rope_type", config.get("type"))
    if kind is None:
        extra = sorted(set(config) - _COMMON_KEYS)
        if extra:
            raise ValueError(
                f"the rope dict has keys {extra} but no 'rope_type' (or 'type') "
                f"saying how to read them; one of "
                f"{', '.join(repr(k) for k in ('default', *SCALING_TYPES))}."
            )
        kind = "default"
    if isinstance(kind, str):
        kind = _TYPE_ALIASES.get(kind, kind)
    validation.check_choice(
        "the rope dict's 'rope_type'", kind, ("default", *SCALING_TYPES)
    )
    known = _COMMON_KEYS | _TYPE_KEYS[kind]
    unknown = sorted(set(config) - known)
    for key in unknown:
        meant = validation.one_edit_away(key, sorted(known))
        if meant is not None:
            raise ValueError(
                f"rope dict of type {kind!r}: unknown key {key!r}; did you mean "
                f"{meant!r}? (Without it, {meant!r} would take its default.)"
            )
    if unknown:
        warnings.warn(
            f"rope dict of type {kind!r}: ignoring unknown keys {unknown}; known "
            f"keys are {sorted(known)}.",
            stacklevel=3,
        )
    values = _dict_values(config)
    theta = values.get("rope_theta")
    if base is not None and theta is not None and float(base) != theta:
        raise ValueError(
            f"base={base!r} disagrees with the rope dict's rope_theta={theta!r}; "
            "pass one of them (base=None reads rope_theta)."
        )
    resolved = base if base is not None else theta if theta is not None else 1e4
    partial = values.get("partial_rotary_factor")
    if partial is not None and not 0.0 < partial <= 1.0:
        raise ValueError(f"partial_rotary_factor must be in (0, 1], got {partial!r}.")
    typed = _typed_scaling(kind, values, max_position_embeddings)
    if kind == "proportional":
        partial = None  # consumed by the scaling: the pairs span the whole head
    return _Parsed(
        base=validation.check_positive("base", resolved),
        scaling=typed,
        partial_rotary_factor=partial,
        mrope_section=values.get("mrope_section"),
        mrope_interleaved=values.get("mrope_interleaved", False),
    )


# How a rope dict's values are read: JSON numbers (no strings, no bools),
# whole numbers for lengths, bools for switches, lists of numbers.
_INT_KEYS = frozenset({"original_max_position_embeddings"})
_BOOL_KEYS = frozenset({"truncate", "mrope_interleaved"})
_LIST_KEYS = frozenset({"short_factor", "long_factor"})


def _dict_values(config: dict[str, Any]) -> dict[str, Any]:
    """A rope dict's values checked for their type (its None values dropped)."""
    values = {}
    for key, value in config.items():
        name = f"the rope dict's {key!r}"
        if key in ("rope_type", "type"):
            values[key] = value
        elif key in _INT_KEYS:
            values[key] = validation.check_int(name, value, minimum=1)
        elif key in _BOOL_KEYS:
            values[key] = validation.check_bool(name, value)
        elif key == "mrope_section":
            values[key] = _section(name, value)
        elif key in _LIST_KEYS:
            values[key] = validation.check_sequence(name, value, validation.check_real)
        elif key in _COMMON_KEYS or any(key in keys for keys in _TYPE_KEYS.values()):
            values[key] = validation.check_real(name, value)
        else:
            values[key] = value  # unknown: warned about, not read
    return values


def _typed_scaling(
    kind: str, config: dict[str, Any], max_position_embeddings: int | None
) -> RopeScaling | None:
    """The typed scaling of a dict (its None values already dropped)."""
    if kind == "default":
        return None
    given = dict(config)
    original = given.get("original_max_position_embeddings")
    if kind == "dynamic" and max_position_embeddings is not None:
        # transformers grows the base against the model's max_position_embeddings.
        given["original_max_position_embeddings"] = max_position_embeddings
    elif original is None and max_position_embeddings is not None:
        given["original_max_position_embeddings"] = max_position_embeddings
    if kind == "yarn" and "factor" not in given:
        # transformers 5 infers YaRN's factor from the two context lengths.
        if max_position_embeddings is None or original is None:
            raise ValueError(
                "a yarn rope dict without 'factor' needs "
                "'original_max_position_embeddings' in the dict and "
                "max_position_embeddings= from the model config (factor = "
                "max_position_embeddings / original_max_position_embeddings)."
            )
        given["factor"] = max_position_embeddings / original
    if kind == "yarn":
        # transformers reads `beta_fast or 32`: a 0 means the default.
        for key, default in (("beta_fast", 32.0), ("beta_slow", 1.0)):
            if key in given and not given[key]:
                given[key] = default
    if kind == "longrope" and "factor" not in given and "attention_factor" not in given:
        if max_position_embeddings is None:
            raise ValueError(
                "a longrope rope dict without 'factor' or 'attention_factor' needs "
                "max_position_embeddings= from the model config (factor = "
                "max_position_embeddings / original_max_position_embeddings)."
            )
        given["factor"] = max_position_embeddings / given.get(
            "original_max_position_embeddings", max_position_embeddings
        )
    cls = SCALING_TYPES[kind]
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in given:
            values[field.name] = given[field.name]
        elif field.default is dataclasses.MISSING:
            present = sorted(k for k, v in config.items())
            hint = (
                " Or pass max_position_embeddings= from the model config."
                if field.name == "original_max_position_embeddings"
                else ""
            )
            raise ValueError(
                f"rope dict of type {kind!r} needs a value for {field.name!r}; it "
                f"has values for {present}.{hint}"
            )
    return cls(**values)


def _check_factor(factor: float) -> float:
    factor = validation.check_real("scaling factor", factor)
    if not factor >= 1.0:
        raise ValueError(f"scaling factor must be >= 1, got {factor!r}.")
    return factor


def _yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1.0 else 0.1 * mscale * math.log(factor) + 1.0


def rope_frequencies(
    dim: int,
    *,
    base: float | None = None,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    max_position_embeddings: int | None = None,
) -> tuple[np.ndarray, float]:
    r"""RoPE angular frequencies and attention factor, with optional scaling.

    Unscaled (Su et al. 2021): $\omega_i = \mathrm{base}^{-2i/\mathrm{dim}}$,
    ``i = 0..dim/2-1``, where ``dim`` is the rotary dimension. ``scaling``
    changes them as the implementations the checkpoints were trained with do
    (transformers 5 ``modeling_rope_utils``; Meta's ``apply_scaling`` for llama3):

    - ``"linear"``: $\omega_i / s$.
    - ``"dynamic"``: the unscaled formula with
      $\mathrm{base}' = \mathrm{base}\,(s\,n/L - (s - 1))^{d/(d-2)}$,
      ``n = max(seq_len, L)``; unchanged while ``seq_len <= L`` or if ``seq_len``
      is None. ``L`` is ``max_position_embeddings`` (what transformers reads),
      else the dict's ``original_max_position_embeddings``.
    - ``"yarn"``: with $c(r) = d \ln(L / (2\pi r)) / (2 \ln \mathrm{base})$,
      ``lo = floor(c(beta_fast))``, ``hi = ceil(c(beta_slow))`` (no rounding when
      ``truncate`` is False), clipped to ``[0, d - 1]``, and
      $\gamma_i = \mathrm{clip}((i - lo)/(hi - lo), 0, 1)$:
      $\omega_i (1 - \gamma_i) + (\omega_i / s)\,\gamma_i$.
      Attention factor $0.1 \ln s + 1$ unless given; a missing ``factor`` is
      ``max_position_embeddings / L``.
    - ``"llama3"``: with wavelength $\lambda_i = 2\pi/\omega_i$: unchanged
      if $\lambda_i < L/h$, $\omega_i/s$ if $\lambda_i > L/l$,
      else $(1 - \mu)\,\omega_i/s + \mu\,\omega_i$,
      $\mu = (L/\lambda_i - l)/(h - l)$ (no band when ``l == h``).
    - ``"longrope"``: $\omega_i / f_i$ with ``f = short_factor`` while
      ``seq_len <= L`` (or ``seq_len`` is None), ``long_factor`` beyond;
      attention factor $\sqrt{1 + \ln s / \ln L}$ unless given.
    - ``"proportional"``: $\mathrm{base}^{-2i/d} / s$ for the first
      ``int(p * d // 2)`` pairs, 0 for the rest (``p = partial_rotary_factor``).

    Here ``s = factor``, ``L = original_max_position_embeddings``, ``l, h`` the
    low/high frequency factors. Computed in float64 at trace time.

    ``dim`` is the rotary dimension: a dict's ``partial_rotary_factor`` is not
    applied here (`apply_rope` applies it to the head dimension), except for
    ``"proportional"``, whose ``dim`` is the whole head.

    Args:
      dim: rotary dimension (even, >= 2).
      base: the frequency base (``rope_theta``). None reads the dict's
        ``rope_theta``, else 10000; a value that disagrees with the dict's is an
        error.
      scaling: None; a Hugging Face ``rope_scaling`` dict (transformers 4) or
        ``rope_parameters`` dict (transformers 5, carrying ``rope_theta`` and
        ``partial_rotary_factor``), with ``"rope_type"`` (or its alias ``"type"``)
        one of ``"default"``, ``"linear"``, ``"dynamic"``, ``"yarn"``,
        ``"llama3"``, ``"longrope"`` (alias ``"su"``), ``"proportional"``;
        or one of `LinearScaling`, `DynamicNTKScaling`, `YarnScaling`,
        `Llama3Scaling`, `LongRopeScaling`, `ProportionalScaling`. Keys set to
        None count as absent; unknown keys are warned about.
      seq_len: static sequence length, read by ``"dynamic"`` and ``"longrope"``.
      max_position_embeddings: the model config's value; ``L`` of
        ``"dynamic"``, and the stand-in for a dict's missing
        ``original_max_position_embeddings`` and for a missing YaRN / LongRoPE
        ``factor``, as in transformers.

    Returns:
      ``(inv_freq, attention_factor)``: float64 NumPy ``[dim // 2]`` and a float
      (1.0 except for YaRN and LongRoPE) that multiplies cos and sin.

    Raises:
      ValueError: odd or too small ``dim``, bad ``base`` or one that disagrees
        with ``rope_theta``, an unknown scaling type, a missing value,
        ``factor < 1`` or infinite, ``"dynamic"`` with ``dim == 2``, LongRoPE
        factor lists of the wrong length, YaRN ``beta_fast``/``beta_slow`` not
        finite and > 0 or ``base <= 1``, llama3 frequency factors not finite
        and > 0, a per-layer-type dict.
      TypeError: ``scaling`` of another type, a number that is not real.

    Examples:
      >>> import flax_posenc as fp
      >>> inv_freq, factor = fp.rope_frequencies(8)
      >>> inv_freq.round(4).tolist(), factor
      ([1.0, 0.1, 0.01, 0.001], 1.0)
      >>> llama31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      ...            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
      ...            "rope_theta": 500_000.0}
      >>> inv_freq, _ = fp.rope_frequencies(128, scaling=llama31)
      >>> inv_freq.shape
      (64,)

    References:
      Su et al., "RoFormer: Enhanced Transformer with Rotary Position
      Embedding", 2021. https://arxiv.org/abs/2104.09864

      Ding et al., "LongRoPE: Extending LLM Context Window Beyond 2 Million
      Tokens", 2024. https://arxiv.org/abs/2402.13753
    """
    dim = _check_dim(dim)
    parsed = _parse(scaling, base, max_position_embeddings)
    if seq_len is not None:
        seq_len = validation.check_int("seq_len", seq_len, minimum=1)
    return _frequencies(dim, parsed.base, parsed.scaling, seq_len)


def _check_dim(dim: int) -> int:
    dim = validation.check_int("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"the rotary dimension must be even, got {dim}.")
    return dim


def _frequencies(
    dim: int, base: float, config: RopeScaling | None, seq_len: int | None
) -> tuple[np.ndarray, float]:
    """``(inv_freq, attention_factor)`` of an already parsed scaling."""
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    inv_freq = base**-exponents
    if config is None:
        return inv_freq, 1.0
    if isinstance(config, ProportionalScaling):
        return _proportional(inv_freq, dim, config), 1.0
    if isinstance(config, LongRopeScaling):
        return _longrope(inv_freq, dim, config, seq_len)
    factor = _check_factor(config.factor)
    if isinstance(config, LinearScaling):
        return inv_freq / factor, 1.0
    original = validation.check_int(
        "original_max_position_embeddings",
        config.original_max_position_embeddings,
        minimum=1,
    )
    if isinstance(config, DynamicNTKScaling):
        if dim == 2:
            raise ValueError("dynamic NTK scaling needs a rotary dimension > 2.")
        length = original if seq_len is None else max(seq_len, original)
        grown = base * (factor * length / original - (factor - 1)) ** (dim / (dim - 2))
        return grown**-exponents, 1.0
    if isinstance(config, YarnScaling):
        return _yarn(inv_freq, dim, base, factor, original, config)
    return _llama3(inv_freq, factor, original, config), 1.0


def _proportional(inv_freq, dim, config: ProportionalScaling):
    fraction = float(config.partial_rotary_factor)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(
            f"proportional RoPE needs partial_rotary_factor in [0, 1], got {fraction}."
        )
    factor = validation.check_positive("proportional factor", config.factor)
    rotated = int(fraction * dim // 2)
    return np.where(np.arange(dim // 2) < rotated, inv_freq, 0.0) / factor


def _longrope(inv_freq, dim, config: LongRopeScaling, seq_len):
    original = validation.check_int(
        "original_max_position_embeddings",
        config.original_max_position_embeddings,
        minimum=1,
    )
    for name in ("short_factor", "long_factor"):
        values = getattr(config, name)
        if len(values) != dim // 2:
            raise ValueError(
                f"longrope {name} must have dim // 2 = {dim // 2} values (one per "
                f"frequency), got {len(values)}."
            )
        if not all(0 < v < math.inf for v in values):
            raise ValueError(f"longrope {name} must be > 0 and finite, got {values}.")
    long = seq_len is not None and seq_len > original
    factors = np.asarray(config.long_factor if long else config.short_factor)
    if config.attention_factor is not None:
        attention = validation.check_real("attention_factor", config.attention_factor)
    else:
        factor = float(config.factor) if config.factor is not None else 1.0
        attention = (
            1.0
            if factor <= 1.0
            else math.sqrt(1.0 + math.log(factor) / math.log(original))
        )
    return inv_freq / factors, attention


def _yarn(inv_freq, dim, base, factor, original, config: YarnScaling):
    def correction_dim(rotations):
        return (
            dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))
        )

    if not base > 1.0:
        raise ValueError(
            f"yarn scaling needs base > 1 (it divides by ln base), got {base!r}."
        )
    low = correction_dim(validation.check_positive("yarn beta_fast", config.beta_fast))
    high = correction_dim(validation.check_positive("yarn beta_slow", config.beta_slow))
    if config.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as the reference: avoids a division by zero
    ramp = np.clip((np.arange(dim // 2) - low) / (high - low), 0.0, 1.0)
    blended = (inv_freq / factor) * ramp + inv_freq * (1.0 - ramp)
    if config.attention_factor is not None:
        attention = validation.check_real("attention_factor", config.attention_factor)
    elif config.mscale and config.mscale_all_dim:
        attention = _yarn_mscale(factor, config.mscale) / _yarn_mscale(
            factor, config.mscale_all_dim
        )
    else:
        attention = _yarn_mscale(factor)
    return blended, attention


def _llama3(inv_freq, factor, original, config: Llama3Scaling):
    low = validation.check_positive("llama3 low_freq_factor", config.low_freq_factor)
    high = validation.check_positive("llama3 high_freq_factor", config.high_freq_factor)
    if high < low:
        raise ValueError(
            f"llama3 scaling needs high_freq_factor >= low_freq_factor; got {high} "
            f"and {low}."
        )
    wavelength = 2 * math.pi / inv_freq
    if high == low:  # Llama 4 Scout: no smooth band between the two regimes
        medium = inv_freq
    else:
        smooth = (original / wavelength - low) / (high - low)
        medium = (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
    return np.where(
        wavelength < original / high,
        inv_freq,
        np.where(wavelength > original / low, inv_freq / factor, medium),
    )


def _pair_axes(pairs: int, section: tuple[int, ...], interleaved: bool) -> np.ndarray:
    """Which position axis each of ``pairs`` frequencies reads (multi-axis RoPE).

    Contiguous (Qwen2-VL): the first ``section[0]`` frequencies read axis 0, the
    next ``section[1]`` axis 1, and so on. Interleaved (Qwen3-VL): frequency
    ``j`` reads axis ``a >= 1`` when ``j % A == a`` and ``j < A * section[a]``,
    axis 0 otherwise.
    """
    if sum(section) != pairs:
        raise ValueError(
            f"mrope_section {list(section)} must sum to the number of rotated pairs "
            f"(rotary dim / 2 = {pairs}), got {sum(section)}."
        )
    if not interleaved:
        return np.repeat(np.arange(len(section)), section)
    count = len(section)
    j = np.arange(pairs)
    axes = np.zeros(pairs, dtype=np.int64)
    for axis in range(1, count):
        axes[(j % count == axis) & (j < count * section[axis])] = axis
    return axes


def _sin_cos(positions, inv_freq, pair_axes):
    """sin/cos ``[..., seq, r/2]``; ``positions [..., seq, A]`` when multi-axis."""
    if pair_axes is None:
        return angles.sin_cos(positions, inv_freq)
    sins, coss, order = [], [], []
    for axis in range(int(pair_axes.max()) + 1):
        index = np.flatnonzero(pair_axes == axis)
        if index.size:
            s, c = angles.sin_cos(positions[..., axis], inv_freq[index])
            sins.append(s)
            coss.append(c)
            order.extend(index.tolist())
    sin, cos = jnp.concatenate(sins, axis=-1), jnp.concatenate(coss, axis=-1)
    if order != sorted(order):
        back = np.argsort(order)
        sin, cos = sin[..., back], cos[..., back]
    return sin, cos


def _rotate(x, sin, cos, layout, rotary_dim):
    """Rotates the first ``rotary_dim`` features of ``x`` by angles with sin/cos.

    ``sin``/``cos``: float32 ``[..., seq, rotary_dim / 2]``, already multiplied
    by the attention factor.
    """
    # View the rotated features as pairs along a size-2 axis: [..., 2, r/2] for
    # "halves", [..., r/2, 2] for "interleaved". Then y = x * cos + swap(x) *
    # (-sin, +sin), where swap reverses that axis: no concatenation, and the
    # long axis stays contiguous, so XLA emits one vectorized elementwise loop.
    head_dim = x.shape[-1]
    half = rotary_dim // 2
    pair_axis = -2 if layout == "halves" else -1
    sin, cos = sin[..., None, :], cos[..., None, :]  # one angle for every head
    # (Materialized along the pair axis: XLA on CPU runs a broadcast there
    # several times slower.)
    cos = jnp.stack([cos, cos], axis=pair_axis)
    signed_sin = jnp.stack([-sin, sin], axis=pair_axis)
    work = validation.compute_dtype(x.dtype)
    pairs_shape = (2, half) if layout == "halves" else (half, 2)
    rotary = x if rotary_dim == head_dim else x[..., :rotary_dim]
    pairs = rotary.astype(work).reshape(*x.shape[:-1], *pairs_shape)
    swapped = jnp.flip(pairs, axis=pair_axis)
    rotated = (pairs * cos + swapped * signed_sin).reshape(*x.shape[:-1], rotary_dim)
    rotated = rotated.astype(x.dtype)
    if rotary_dim == head_dim:
        return rotated
    return jnp.concatenate([rotated, x[..., rotary_dim:]], axis=-1)


def _check_x(x) -> jax.Array:
    x = validation.floating_array("x", x)
    if x.ndim < 3:
        raise ValueError(f"x must be [..., seq, heads, head_dim], got shape {x.shape}.")
    return x


def _check_positions_fit(positions, x, axes: int | None) -> None:
    """``positions`` must broadcast to ``x.shape[:-2]`` (``+ (axes,)``)."""
    target = x.shape[:-2] if axes is None else (*x.shape[:-2], axes)
    try:
        fits = np.broadcast_shapes(positions.shape, target) == target
    except ValueError:
        fits = False
    if axes is not None and (
        positions.ndim < 2
        or positions.shape[-1] not in (1, axes)
        or positions.shape[-2] != x.shape[-3]
    ):
        # [..., seq, A] exactly: a [batch, seq] array whose seq happens to
        # equal A must not be read as axes.
        fits = False
    if not fits:
        what = "[..., seq]" if axes is None else f"[..., seq, {axes}]"
        raise ValueError(
            f"positions {positions.shape} must broadcast to x's {what} "
            f"{target} (x has shape {x.shape})."
        )
    if axes is not None and positions.shape[-1] != 1:
        # Could these be [..., seq] positions of text, missing the axes axis?
        try:
            text = np.broadcast_shapes(positions.shape[:-1], x.shape[:-3]) == tuple(
                x.shape[:-3]
            )
        except ValueError:
            text = False
        if text and positions.shape[-1] == x.shape[-3]:
            raise ValueError(
                f"positions {positions.shape} are ambiguous for x {x.shape}: "
                f"[..., seq, {axes}] (one position per axis) or [..., seq] (text, "
                f"without the axes axis). Give them x's leading axes, "
                f"[batch..., seq, {axes}] ({x.ndim - 1} axes): e.g. positions[None] "
                "for positions shared by the batch, or positions[..., None] for "
                "text (every axis equal)."
            )


def _rotary_dim(
    head_dim: int, rotary_dim: int | None, partial_rotary_factor: float | None
) -> int:
    """The rotary dimension from an explicit value and a dict's factor."""
    if partial_rotary_factor is not None:
        from_factor = int(head_dim * partial_rotary_factor)
        if rotary_dim is not None and rotary_dim != from_factor:
            raise ValueError(
                f"rotary_dim={rotary_dim!r} disagrees with the rope dict's "
                f"partial_rotary_factor={partial_rotary_factor!r} (int({head_dim} * "
                f"{partial_rotary_factor}) = {from_factor}); pass one of them."
            )
        rotary_dim = from_factor
    if rotary_dim is None:
        if head_dim % 2:
            raise ValueError(
                f"head_dim {head_dim} is odd, but RoPE rotates every feature in "
                "pairs: use an even head_dim, or pass an even rotary_dim < "
                f"{head_dim} to rotate part of it."
            )
        rotary_dim = head_dim
    rotary_dim = validation.check_int("rotary_dim", rotary_dim, minimum=2)
    if rotary_dim > head_dim or rotary_dim % 2:
        raise ValueError(
            f"rotary_dim must be even and <= head_dim {head_dim}, got {rotary_dim}."
        )
    return rotary_dim


def check_rotary_dim(
    head_dim: int,
    rotary_dim: int | None,
    scaling: RopeScaling | Mapping[str, Any] | None,
) -> int:
    """The rotary dimension `apply_rope` will use on ``head_dim`` features,
    checked before any call (a rotary module's fields)."""
    partial = None
    if isinstance(scaling, Mapping) and not _is_nested(scaling):
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "proportional" and scaling.get("partial_rotary_factor") is not None:
            partial = validation.check_real(
                "partial_rotary_factor", scaling["partial_rotary_factor"]
            )
    return _rotary_dim(head_dim, rotary_dim, partial)


def apply_rope(
    x: ArrayLike,
    positions: ArrayLike,
    *,
    base: float | None = None,
    layout: str = "halves",
    rotary_dim: int | None = None,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    max_position_embeddings: int | None = None,
    frequencies: tuple[ArrayLike, float] | None = None,
    mrope_section: Sequence[int] | None = None,
    mrope_interleaved: bool | None = None,
) -> jax.Array:
    r"""Rotates feature pairs of ``x`` by angles proportional to their positions.

    For pair ``i`` with frequency $\omega_i$ (`rope_frequencies`) at
    position ``p``, with $\theta = p\,\omega_i$ and attention factor ``a``:

    $$(y_a, y_b) = a\,(x_a \cos\theta - x_b \sin\theta,\;
                      x_b \cos\theta + x_a \sin\theta)$$

    - ``layout="halves"`` pairs features ``(i, i + r/2)`` (GPT-NeoX, Hugging
      Face Llama: ``x * cos + rotate_half(x) * sin``).
    - ``layout="interleaved"`` pairs ``(2i, 2i + 1)`` (GPT-J, Meta's Llama
      reference: complex multiplication).

    The two layouts give the same result up to a fixed permutation of the
    features. Only the first ``r = rotary_dim`` features rotate; the rest pass
    through bit-identical (GPT-NeoX's ``rotary_pct``). Because rotations
    compose, $\langle \mathrm{rope}(q, m), \mathrm{rope}(k, n)\rangle$
    depends only on ``m - n``. Angles are reduced exactly (within 1e-6 for
    positions below 2**20); the rotation is done in float32 and cast back to
    ``x.dtype``.

    **Multi-axis (M-RoPE, Qwen2-VL / Qwen3-VL).** With ``mrope_section`` (or a
    dict carrying it), ``positions`` is ``[..., seq, A]`` (e.g. time, height,
    width; transformers' ``position_ids`` ``[A, batch, seq]`` moved to the last
    axis) and frequency ``j`` reads one axis: contiguous bands of the sizes in
    ``mrope_section``, or, with ``mrope_interleaved``, axis ``a >= 1`` where
    ``j % A == a`` and ``j < A * mrope_section[a]`` (axis 0 elsewhere). A
    trailing axis of size 1 (text only: all axes equal) gives plain RoPE.

    **LongRoPE under jit.** With a static ``seq_len`` the factor set is chosen
    at trace time (``long_factor`` when ``seq_len > L``). With ``seq_len=None``
    it is chosen as transformers does, from the traced largest position:
    ``max(positions) + 1 > L``, over the whole ``positions`` array (per example
    under ``vmap``).

    Args:
      x: ``[..., seq, heads, head_dim]`` queries or keys.
      positions: integer ``[..., seq]``, broadcastable against ``x.shape[:-2]``:
        per-row offsets when decoding, restarting positions in packed rows;
        ``[..., seq, A]`` with ``mrope_section``. Any integer dtype; positions
        are computed in int32, so values must lie in ``[-2**31, 2**31)``.
        Concrete values outside it raise ``ValueError``; traced ones of a wider
        dtype (int64, uint32) cannot be checked and wrap modulo 2**32.
      base: frequency base (``rope_theta``); None reads the dict's, else 10000.
      layout: ``"halves"`` or ``"interleaved"``.
      rotary_dim: number of leading features to rotate (even); default all, or
        ``int(head_dim * partial_rotary_factor)`` when the dict carries that
        factor (a different explicit value is an error).
      scaling: see `rope_frequencies`; a transformers-5 ``rope_parameters``
        dict is read whole (``rope_theta``, ``partial_rotary_factor``,
        ``mrope_section``, ``mrope_interleaved``).
      seq_len: static sequence length for ``"dynamic"`` and ``"longrope"``.
        None: for ``"dynamic"``, ``max(positions) + 1`` of concrete positions
        (traced positions need it); for ``"longrope"``, see above.
      max_position_embeddings: see `rope_frequencies`.
      frequencies: ``(inv_freq, attention_factor)`` computed elsewhere (a new
        scheme needs only its frequency function): a static ``[rotary_dim / 2]``
        array. Excludes ``base``, ``scaling``, ``seq_len`` and
        ``max_position_embeddings``.
      mrope_section: the number of frequencies read by each position axis.
      mrope_interleaved: assign them interleaved (Qwen3-VL), not contiguous.

    Returns:
      Array of ``x``'s shape and dtype.

    Raises:
      ValueError: ``x`` of rank < 3, odd or too large ``rotary_dim``, one that
        disagrees with ``partial_rotary_factor``, unknown ``layout``, positions
        that do not broadcast, ``frequencies`` of the wrong length or with
        other frequency arguments, an ``mrope_section`` that does not sum to
        ``rotary_dim / 2`` or disagrees with the dict's, and as
        `rope_frequencies`; concrete positions outside the int32 range.
      TypeError: ``x`` not floating, ``positions`` not integer.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> q = jnp.ones((1, 3, 2, 4))  # [batch, seq, heads, head_dim]
      >>> fp.apply_rope(q, jnp.arange(3)[None]).shape
      (1, 3, 2, 4)
      >>> params = {"rope_type": "default", "rope_theta": 1e6,
      ...           "partial_rotary_factor": 0.5}  # transformers 5
      >>> out = fp.apply_rope(q, jnp.arange(3)[None], scaling=params)
      >>> bool((out[..., 2:] == q[..., 2:]).all())  # 2 of 4 features rotate
      True

    References:
      Su et al., "RoFormer: Enhanced Transformer with Rotary Position
      Embedding", 2021. https://arxiv.org/abs/2104.09864

      Wang et al., "Qwen2-VL: Enhancing Vision-Language Model's Perception of
      the World at Any Resolution", 2024. https://arxiv.org/abs/2409.12191
    """
    x = _check_x(x)
    positions = validation.position_array("positions", positions)
    validation.check_choice("layout", layout, LAYOUTS)
    head_dim = x.shape[-1]
    if frequencies is not None:
        if (
            scaling is not None
            or base is not None
            or seq_len is not None
            or (max_position_embeddings is not None)
        ):
            raise ValueError(
                "frequencies= gives the frequencies whole: pass it without base, "
                "scaling, seq_len or max_position_embeddings."
            )
        parsed = _Parsed(base=1.0, scaling=None)
    else:
        parsed = _parse(scaling, base, max_position_embeddings)
        if seq_len is not None:
            seq_len = validation.check_int("seq_len", seq_len, minimum=1)
        elif isinstance(parsed.scaling, DynamicNTKScaling):
            seq_len = _length_from_positions(positions)
    rotary_dim = _rotary_dim(head_dim, rotary_dim, parsed.partial_rotary_factor)
    section, interleaved = _multi_axis(parsed, mrope_section, mrope_interleaved)
    pair_axes = (
        None if section is None else _pair_axes(rotary_dim // 2, section, interleaved)
    )
    _check_positions_fit(positions, x, None if section is None else len(section))
    if pair_axes is not None and positions.shape[-1] == 1:
        positions, pair_axes = positions[..., 0], None  # all axes equal
    if frequencies is not None:
        inv_freq = np.asarray(frequencies[0])
        if not np.issubdtype(inv_freq.dtype, np.number) or np.iscomplexobj(inv_freq):
            raise TypeError(
                f"frequencies[0] must be real numbers, got dtype {inv_freq.dtype}."
            )
        inv_freq = inv_freq.astype(np.float64)
        if not np.isfinite(inv_freq).all():
            raise ValueError(f"frequencies[0] must be finite, got {inv_freq}.")
        if inv_freq.shape != (rotary_dim // 2,):
            raise ValueError(
                f"frequencies[0] must have shape ({rotary_dim // 2},) (rotary_dim / "
                f"2), got {inv_freq.shape}."
            )
        sin, cos = _scaled_sin_cos(
            positions,
            inv_freq,
            validation.check_real("frequencies[1]", frequencies[1]),
            pair_axes,
        )
    elif isinstance(parsed.scaling, LongRopeScaling) and seq_len is None:
        sin, cos = _longrope_sin_cos(positions, rotary_dim, parsed, pair_axes)
    else:
        inv_freq, attention = _frequencies(
            rotary_dim, parsed.base, parsed.scaling, seq_len
        )
        if not isinstance(attention, jax.core.Tracer):
            return _rope(
                x,
                positions,
                inv_freq=tuple(np.asarray(inv_freq, np.float64).tolist()),
                attention=float(attention),
                pair_axes=None if pair_axes is None else tuple(pair_axes.tolist()),
                layout=layout,
                rotary_dim=rotary_dim,
            )
        sin, cos = _scaled_sin_cos(positions, inv_freq, attention, pair_axes)
    return _rotate(x, sin, cos, layout, rotary_dim)


@functools.partial(
    jax.jit,
    static_argnames=("inv_freq", "attention", "pair_axes", "layout", "rotary_dim"),
)
def _rope(x, positions, *, inv_freq, attention, pair_axes, layout, rotary_dim):
    """The rotation as one compiled program per call signature (called op by
    op, eagerly, each of its operations would compile on its own). The
    frequencies are static: the angles read them in float64 at trace time."""
    pair_axes = None if pair_axes is None else np.asarray(pair_axes)
    inv_freq = np.asarray(inv_freq, np.float64)
    sin, cos = _scaled_sin_cos(positions, inv_freq, attention, pair_axes)
    return _rotate(x, sin, cos, layout, rotary_dim)


def _length_from_positions(positions: jax.Array) -> int | None:
    """Dynamic NTK's static length: ``max(positions) + 1``, as transformers."""
    if isinstance(positions, jax.core.Tracer):
        raise ValueError(
            "dynamic NTK scaling grows the base with the sequence length, "
            "max(positions) + 1, which traced positions (under jit) cannot give "
            "statically: pass seq_len= (the largest position so far + 1)."
        )
    return max(int(jnp.max(positions)) + 1, 1) if positions.size else None


def _section(name: str, value: object) -> tuple[int, ...]:
    """An M-RoPE section: a list of counts >= 0."""
    return validation.check_sequence(
        name, value, functools.partial(validation.check_int, minimum=0)
    )


def _multi_axis(parsed: _Parsed, section, interleaved):
    """The M-RoPE section and assignment from the arguments and the dict."""
    if section is not None:
        section = _section("mrope_section", section)
        if parsed.mrope_section is not None and parsed.mrope_section != section:
            raise ValueError(
                f"mrope_section={list(section)} disagrees with the rope dict's "
                f"{list(parsed.mrope_section)}."
            )
    section = section if section is not None else parsed.mrope_section
    if interleaved is None:
        interleaved = parsed.mrope_interleaved
    return section, validation.check_bool("mrope_interleaved", interleaved)


def _scaled_sin_cos(positions, inv_freq, attention, pair_axes):
    sin, cos = _sin_cos(positions, inv_freq, pair_axes)  # [..., seq, r/2]
    if attention != 1.0:
        sin, cos = sin * attention, cos * attention
    return sin, cos


def _longrope_sin_cos(positions, rotary_dim, parsed: _Parsed, pair_axes):
    """LongRoPE's factor set chosen from the traced largest position."""
    original = parsed.scaling.original_max_position_embeddings
    short = _frequencies(rotary_dim, parsed.base, parsed.scaling, None)
    long = _frequencies(rotary_dim, parsed.base, parsed.scaling, original + 1)
    use_long = jnp.max(positions) + 1 > original
    sin_s, cos_s = _scaled_sin_cos(positions, *short, pair_axes)
    sin_l, cos_l = _scaled_sin_cos(positions, *long, pair_axes)
    return jnp.where(use_long, sin_l, sin_s), jnp.where(use_long, cos_l, cos_s)


def grid_positions(height: int, width: int) -> jax.Array:
    """The ``(row, column)`` of each patch of an ``height x width`` grid.

    Row-major, as a vision transformer flattens its patches: patch ``n`` is at
    row ``n // width``, column ``n % width``. Pass the result to
    `apply_axial_rope`.

    Args:
      height: rows of patches (static, >= 1).
      width: columns of patches (static, >= 1).

    Returns:
      int32 ``[height * width, 2]``.

    Raises:
      ValueError: sizes below 1.
      TypeError: sizes not ints.

    Examples:
      >>> import flax_posenc as fp
      >>> fp.grid_positions(2, 3).tolist()
      [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    """
    height = validation.check_int("height", height, minimum=1)
    width = validation.check_int("width", width, minimum=1)
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.int32),
        jnp.arange(width, dtype=jnp.int32),
        indexing="ij",
    )
    return jnp.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1)


def apply_axial_rope(
    x: ArrayLike,
    positions: ArrayLike,
    *,
    base: float = 10_000.0,
    layout: str = "halves",
    rotary_dim: int | None = None,
) -> jax.Array:
    r"""Axial RoPE for images: each position axis rotates its own share of pairs.

    With ``A`` axes (2 for the row and column of a patch) and ``r`` rotated
    features, pairs ``[a r / (2A), (a + 1) r / (2A))`` read axis ``a`` and
    have the frequencies of 1-D RoPE of dimension ``r / A``:
    $\omega_i = \mathrm{base}^{-2i A / r}$, so every axis sees the whole
    spectrum (Heo et al. 2024, "axial"). Relative in each axis separately:
    scores depend only on the row and column offsets.

    Args:
      x: ``[..., seq, heads, head_dim]`` queries or keys.
      positions: integer ``[..., seq, A]``, e.g. `grid_positions`.
      base: frequency base.
      layout: ``"halves"`` or ``"interleaved"``.
      rotary_dim: leading features to rotate, a multiple of ``2 A``; default
        all.

    Returns:
      Array of ``x``'s shape and dtype.

    Raises:
      ValueError: ``rotary_dim`` not a multiple of ``2 A``, positions that do
        not broadcast, and as `apply_rope`.
      TypeError: ``x`` not floating, ``positions`` not integer.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flax_posenc as fp
      >>> patches = jnp.ones((1, 6, 2, 8))  # [batch, 2 x 3 patches, heads, dim]
      >>> fp.apply_axial_rope(patches, fp.grid_positions(2, 3)).shape
      (1, 6, 2, 8)

    References:
      Heo et al., "Rotary Position Embedding for Vision Transformer", 2024.
      https://arxiv.org/abs/2403.13298
    """
    x = _check_x(x)
    positions = validation.position_array("positions", positions)
    if positions.ndim < 2:
        raise ValueError(
            f"positions must be [..., seq, axes], got shape {positions.shape}."
        )
    axes = positions.shape[-1]
    rotary_dim = _rotary_dim(x.shape[-1], rotary_dim, None)
    if rotary_dim % (2 * axes):
        raise ValueError(
            f"rotary_dim {rotary_dim} must be a multiple of 2 * axes = {2 * axes}."
        )
    per_axis = rope_frequencies(rotary_dim // axes, base=base)[0]
    return apply_rope(
        x,
        positions,
        layout=layout,
        rotary_dim=rotary_dim,
        frequencies=(np.tile(per_axis, axes), 1.0),
        mrope_section=(rotary_dim // (2 * axes),) * axes,
    )
