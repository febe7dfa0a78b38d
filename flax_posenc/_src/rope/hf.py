"""The Hugging Face rope dict vocabulary, and its parsing into a `Plan`.

A ``rope_scaling`` (transformers 4) or ``rope_parameters`` (transformers 5)
dict names its scaling by ``rope_type`` (or its older alias ``type``) and
carries that scaling's keys (its dataclass fields, `scalings.SCALINGS`) and
keys every type may carry (`COMMON_KEYS`). `parse` reads one, once.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Mapping
from typing import Any

from flax_posenc._src import validation
from flax_posenc._src.rope.scalings import SCALINGS, RopeScaling

# Keys of a rope_scaling / rope_parameters dict that every type may carry;
# each type also reads its own (its fields). transformers 5's validation lists
# the same ones. Any other key is warned about: the library does not know what
# it would change.
COMMON_KEYS = frozenset(
    {
        "rope_type",
        "type",
        "rope_theta",
        "partial_rotary_factor",
        "mrope_section",
        "mrope_interleaved",
    }
)
# Keys a rope dict may carry that change the attention, not the rotation:
# Ministral 3's query temperature, read by the attention schedule.
QUERY_SCALE_KEYS = frozenset({"llama_4_scaling_beta"})
# Older spellings of a type in published configs: Phi-3's first releases wrote
# "su" for LongRoPE; Qwen2-VL writes "mrope" for default RoPE with sections.
_TYPE_ALIASES = {"su": "longrope", "mrope": "default"}
# Every rope_type a dict may name (after its alias is resolved).
TYPES = ("default", *SCALINGS)

# How a rope dict's values are read: JSON numbers (no strings, no bools),
# whole numbers for lengths, bools for switches, lists of numbers.
_INT_KEYS = frozenset({"original_max_position_embeddings"})
_BOOL_KEYS = frozenset({"truncate", "mrope_interleaved"})
_LIST_KEYS = frozenset({"short_factor", "long_factor"})


def _type_keys(kind: str) -> frozenset[str]:
    """The keys a rope dict of type ``kind`` reads besides `COMMON_KEYS`."""
    if kind == "default":
        return frozenset()
    return frozenset(field.name for field in dataclasses.fields(SCALINGS[kind]))


_SCALING_KEYS = frozenset().union(*(_type_keys(kind) for kind in SCALINGS))


@dataclasses.dataclass(frozen=True)
class Plan:
    """A ``scaling`` argument resolved: what the rotation needs besides ``dim``."""

    base: float
    scaling: RopeScaling | None
    partial_rotary_factor: float | None = None
    mrope_section: tuple[int, ...] | None = None
    mrope_interleaved: bool = False


def rope_type(config: Mapping[str, Any]) -> object:
    """The dict's ``rope_type``, else its older key ``type`` (None if neither)."""
    kind = config.get("rope_type")
    return config.get("type") if kind is None else kind


def canonical_type(kind: object) -> object:
    """``kind`` with an older alias ("su", "mrope") resolved."""
    return _TYPE_ALIASES.get(kind, kind) if isinstance(kind, str) else kind


def renamed(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (changed in place) with a ``type`` key renamed ``rope_type``."""
    if config.get("rope_type") is None and config.get("type") is not None:
        config["rope_type"] = config.pop("type")
    return config


def is_nested(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` maps layer types to dicts (Gemma 3/4 rope_parameters)."""
    return bool(config) and all(
        isinstance(value, Mapping) or value is None for value in config.values()
    )


def section(name: str, value: object) -> tuple[int, ...]:
    """An M-RoPE section: a list of counts >= 0."""
    return validation.check_sequence(
        name, value, functools.partial(validation.check_int, minimum=0)
    )


def parse(
    scaling: RopeScaling | Mapping[str, Any] | None,
    base: float | None,
    max_position_embeddings: int | None,
    *,
    stacklevel: int = 3,
) -> Plan:
    """Reads a ``scaling`` argument in any accepted form, and checks the base.

    Unknown keys are warned about at ``stacklevel`` (3: the caller of the
    public function that calls this).
    """
    if scaling is None or isinstance(scaling, RopeScaling):
        resolved = 10_000.0 if base is None else base
        return Plan(validation.check_positive("base", resolved), scaling)
    if not isinstance(scaling, Mapping):
        raise TypeError(
            "scaling must be None, a rope_scaling / rope_parameters dict or one of "
            f"{', '.join(t.__name__ for t in SCALINGS.values())}; "
            f"got {type(scaling).__name__}."
        )
    if is_nested(scaling):
        raise ValueError(
            "this rope_parameters dict holds one entry per layer type "
            f"({', '.join(repr(k) for k in scaling)}): pass one of them, e.g. "
            "config['rope_parameters']['full_attention'], or build with "
            "rope_config_from_hf(config, layer_type=...)."
        )
    config = {key: value for key, value in scaling.items() if value is not None}
    kind = rope_type(config)
    if kind is None:
        extra = sorted(set(config) - COMMON_KEYS)
        if extra:
            raise ValueError(
                f"the rope dict has keys {extra} but no 'rope_type' (or 'type') "
                f"saying how to read them; one of "
                f"{', '.join(repr(k) for k in TYPES)}."
            )
        kind = "default"
    kind = canonical_type(kind)
    validation.check_choice("the rope dict's 'rope_type'", kind, TYPES)
    known = COMMON_KEYS | _type_keys(kind)
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
            stacklevel=stacklevel,
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
    return Plan(
        base=validation.check_positive("base", resolved),
        scaling=typed,
        partial_rotary_factor=partial,
        mrope_section=values.get("mrope_section"),
        mrope_interleaved=values.get("mrope_interleaved", False),
    )


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
            values[key] = section(name, value)
        elif key in _LIST_KEYS:
            values[key] = validation.check_sequence(name, value, validation.check_real)
        elif key in COMMON_KEYS or key in _SCALING_KEYS:
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
    cls = SCALINGS[kind]
    given = dict(config)
    cls.complete_hf_values(
        given, given.get("original_max_position_embeddings"), max_position_embeddings
    )
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
