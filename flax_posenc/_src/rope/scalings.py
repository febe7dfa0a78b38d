"""The RoPE scalings: one class each, owning its frequency function.

A scaling is a frozen dataclass that subclasses `RopeScaling`, and an entry in
`SCALINGS` (its Hugging Face ``rope_type``). Its fields are the keys it reads
from a rope dict; `RopeScaling.frequencies` is its math.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from flax_posenc._src import validation


def default_frequencies(dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """``(exponents, inv_freq)`` of unscaled RoPE: ``base ** (-2i / dim)``."""
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    return exponents, base**-exponents


def _check_factor(factor: float) -> float:
    factor = validation.check_real("scaling factor", factor)
    if not factor >= 1.0:
        raise ValueError(f"scaling factor must be >= 1, got {factor!r}.")
    return factor


def _check_original(original: int) -> int:
    return validation.check_int("original_max_position_embeddings", original, minimum=1)


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's ``0.1 mscale ln(factor) + 1`` (1 for factor <= 1); also MLA's
    softmax-scale fold (`attention_schedule`)."""
    return 1.0 if factor <= 1.0 else 0.1 * mscale * math.log(factor) + 1.0


class RopeScaling:
    """The base of the typed RoPE scalings (`LinearScaling`, `YarnScaling`, ...).

    Each scaling is a frozen dataclass subclassing it, named in the registry
    by its Hugging Face ``rope_type``. Its fields are the keys it reads from a
    ``rope_scaling`` / ``rope_parameters`` dict; its ``frequencies`` method
    changes the unscaled frequencies as the checkpoints were trained with, and
    its ``check`` method raises for bad values without computing them. Any
    of them is accepted wherever a ``scaling`` is.

    Attributes:
      (fields): each scaling's own, documented on its class: `LinearScaling`,
        `DynamicNTKScaling`, `YarnScaling`, `Llama3Scaling`,
        `LongRopeScaling`, `ProportionalScaling`.
    """

    def check(self, dim: int, base: float) -> Any:
        """The fields checked for a rotary dimension ``dim`` and ``base``.

        Raises what `frequencies` raises for bad values, without computing.
        """
        raise NotImplementedError

    def frequencies(
        self, dim: int, base: float, seq_len: int | None
    ) -> tuple[np.ndarray, float]:
        """``(inv_freq, attention_factor)``: float64 ``[dim // 2]`` and a float."""
        raise NotImplementedError

    @classmethod
    def complete_hf_values(
        cls,
        given: dict[str, Any],
        original: int | None,
        max_position_embeddings: int | None,
    ) -> None:
        """Fills in ``given`` (a rope dict's values) what transformers infers.

        By default a missing ``original_max_position_embeddings`` is the
        model's ``max_position_embeddings``.
        """
        if original is None and max_position_embeddings is not None:
            given["original_max_position_embeddings"] = max_position_embeddings


@dataclasses.dataclass(frozen=True)
class LinearScaling(RopeScaling):
    """Position interpolation (Chen et al. 2023): every frequency divided by ``factor``.

    Equivalent to dividing positions by ``factor``.
    ``https://arxiv.org/abs/2306.15595``

    Attributes:
      factor: the scale ``s >= 1``.
    """

    factor: float

    def check(self, dim, base):
        return _check_factor(self.factor)

    def frequencies(self, dim, base, seq_len):
        factor = self.check(dim, base)
        return default_frequencies(dim, base)[1] / factor, 1.0


@dataclasses.dataclass(frozen=True)
class DynamicNTKScaling(RopeScaling):
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

    def check(self, dim, base):
        factor = _check_factor(self.factor)
        original = _check_original(self.original_max_position_embeddings)
        if dim == 2:
            raise ValueError("dynamic NTK scaling needs a rotary dimension > 2.")
        return factor, original

    def frequencies(self, dim, base, seq_len):
        factor, original = self.check(dim, base)
        exponents = default_frequencies(dim, base)[0]
        length = original if seq_len is None else max(seq_len, original)
        grown = base * (factor * length / original - (factor - 1)) ** (dim / (dim - 2))
        return grown**-exponents, 1.0

    @classmethod
    def complete_hf_values(cls, given, original, max_position_embeddings):
        if max_position_embeddings is not None:
            # transformers grows the base against the model's max_position_embeddings.
            given["original_max_position_embeddings"] = max_position_embeddings


@dataclasses.dataclass(frozen=True)
class YarnScaling(RopeScaling):
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

    def check(self, dim, base):
        factor = _check_factor(self.factor)
        original = _check_original(self.original_max_position_embeddings)
        if not base > 1.0:
            raise ValueError(
                f"yarn scaling needs base > 1 (it divides by ln base), got {base!r}."
            )
        beta_fast = validation.check_positive("yarn beta_fast", self.beta_fast)
        beta_slow = validation.check_positive("yarn beta_slow", self.beta_slow)
        attention = None
        if self.attention_factor is not None:
            attention = validation.check_real("attention_factor", self.attention_factor)
        return factor, original, beta_fast, beta_slow, attention

    def frequencies(self, dim, base, seq_len):
        factor, original, beta_fast, beta_slow, attention = self.check(dim, base)
        inv_freq = default_frequencies(dim, base)[1]

        def correction_dim(rotations):
            return (
                dim
                * math.log(original / (rotations * 2 * math.pi))
                / (2 * math.log(base))
            )

        low = correction_dim(beta_fast)
        high = correction_dim(beta_slow)
        if self.truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001  # as the reference: avoids a division by zero
        ramp = np.clip((np.arange(dim // 2) - low) / (high - low), 0.0, 1.0)
        blended = (inv_freq / factor) * ramp + inv_freq * (1.0 - ramp)
        if attention is None and self.mscale and self.mscale_all_dim:
            attention = yarn_mscale(factor, self.mscale) / yarn_mscale(
                factor, self.mscale_all_dim
            )
        elif attention is None:
            attention = yarn_mscale(factor)
        return blended, attention

    @classmethod
    def complete_hf_values(cls, given, original, max_position_embeddings):
        super().complete_hf_values(given, original, max_position_embeddings)
        if "factor" not in given:
            # transformers 5 infers YaRN's factor from the two context lengths.
            if max_position_embeddings is None or original is None:
                raise ValueError(
                    "a yarn rope dict without 'factor' needs "
                    "'original_max_position_embeddings' in the dict and "
                    "max_position_embeddings= from the model config (factor = "
                    "max_position_embeddings / original_max_position_embeddings)."
                )
            given["factor"] = max_position_embeddings / original
        # transformers reads `beta_fast or 32`: a 0 means the default.
        for key, default in (("beta_fast", 32.0), ("beta_slow", 1.0)):
            if key in given and not given[key]:
                given[key] = default


@dataclasses.dataclass(frozen=True)
class Llama3Scaling(RopeScaling):
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

    def check(self, dim, base):
        factor = _check_factor(self.factor)
        original = _check_original(self.original_max_position_embeddings)
        low = validation.check_positive("llama3 low_freq_factor", self.low_freq_factor)
        high = validation.check_positive(
            "llama3 high_freq_factor", self.high_freq_factor
        )
        if high < low:
            raise ValueError(
                f"llama3 scaling needs high_freq_factor >= low_freq_factor; got "
                f"{high} and {low}."
            )
        return factor, original, low, high

    def frequencies(self, dim, base, seq_len):
        factor, original, low, high = self.check(dim, base)
        inv_freq = default_frequencies(dim, base)[1]
        wavelength = 2 * math.pi / inv_freq
        if high == low:  # Llama 4 Scout: no smooth band between the two regimes
            medium = inv_freq
        else:
            smooth = (original / wavelength - low) / (high - low)
            medium = (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
        scaled = np.where(
            wavelength < original / high,
            inv_freq,
            np.where(wavelength > original / low, inv_freq / factor, medium),
        )
        return scaled, 1.0


@dataclasses.dataclass(frozen=True)
class LongRopeScaling(RopeScaling):
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

    def check(self, dim, base):
        original = _check_original(self.original_max_position_embeddings)
        for name in ("short_factor", "long_factor"):
            values = getattr(self, name)
            if len(values) != dim // 2:
                raise ValueError(
                    f"longrope {name} must have dim // 2 = {dim // 2} values (one "
                    f"per frequency), got {len(values)}."
                )
            if not all(0 < v < math.inf for v in values):
                raise ValueError(
                    f"longrope {name} must be > 0 and finite, got {values}."
                )
        attention = None
        if self.attention_factor is not None:
            attention = validation.check_real("attention_factor", self.attention_factor)
        return original, attention

    def frequencies(self, dim, base, seq_len):
        original, attention = self.check(dim, base)
        inv_freq = default_frequencies(dim, base)[1]
        long = seq_len is not None and seq_len > original
        factors = np.asarray(self.long_factor if long else self.short_factor)
        if attention is None:
            factor = float(self.factor) if self.factor is not None else 1.0
            attention = (
                1.0
                if factor <= 1.0
                else math.sqrt(1.0 + math.log(factor) / math.log(original))
            )
        return inv_freq / factors, attention

    @classmethod
    def complete_hf_values(cls, given, original, max_position_embeddings):
        super().complete_hf_values(given, original, max_position_embeddings)
        if "factor" not in given and "attention_factor" not in given:
            if max_position_embeddings is None:
                raise ValueError(
                    "a longrope rope dict without 'factor' or 'attention_factor' "
                    "needs max_position_embeddings= from the model config (factor "
                    "= max_position_embeddings / original_max_position_embeddings)."
                )
            given["factor"] = max_position_embeddings / given.get(
                "original_max_position_embeddings", max_position_embeddings
            )


@dataclasses.dataclass(frozen=True)
class ProportionalScaling(RopeScaling):
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

    def check(self, dim, base):
        fraction = float(self.partial_rotary_factor)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(
                "proportional RoPE needs partial_rotary_factor in [0, 1], got "
                f"{fraction}."
            )
        return fraction, validation.check_positive("proportional factor", self.factor)

    def frequencies(self, dim, base, seq_len):
        fraction, factor = self.check(dim, base)
        inv_freq = default_frequencies(dim, base)[1]
        rotated = int(fraction * dim // 2)
        return np.where(np.arange(dim // 2) < rotated, inv_freq, 0.0) / factor, 1.0


# The one registry of scalings: a rope dict's ``rope_type`` -> its class.
SCALINGS: dict[str, type[RopeScaling]] = {
    "linear": LinearScaling,
    "dynamic": DynamicNTKScaling,
    "yarn": YarnScaling,
    "llama3": Llama3Scaling,
    "longrope": LongRopeScaling,
    "proportional": ProportionalScaling,
}
