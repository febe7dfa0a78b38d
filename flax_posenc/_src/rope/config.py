"""From a published model's ``config.json`` to the arguments of `apply_rope`."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from flax_posenc._src import angles, validation
from flax_posenc._src.rope import apply, families, hf
from flax_posenc._src.rope.scalings import RopeScaling


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Everything `apply_rope` needs for one model (and one layer type).

    Built by `rope_config_from_hf`; ``fp.apply_rope(q, positions,
    **config.kwargs)`` rotates as the checkpoint was trained.

    Attributes:
      head_dim: the size of the last axis of ``q`` and ``k`` that RoPE sees
        (DeepSeek: ``qk_rope_head_dim``).
      rotary_dim: the leading features that rotate.
      base: the frequency base (``rope_theta``).
      layout: ``"halves"`` or ``"interleaved"``.
      scaling: the typed scaling, or None.
      max_position_embeddings: the model's context length (read by dynamic NTK).
      mrope_section: frequencies per position axis for M-RoPE, or None.
      mrope_interleaved: Qwen3-VL's interleaved band assignment.
    """

    head_dim: int
    rotary_dim: int
    base: float
    layout: str
    scaling: RopeScaling | None = None
    max_position_embeddings: int | None = None
    mrope_section: tuple[int, ...] | None = None
    mrope_interleaved: bool = False

    @property
    def module_fields(self) -> dict[str, Any]:
        """Fields of the rotary modules (linen and NNX): `kwargs` and ``head_dim``."""
        return {**self.kwargs, "head_dim": self.head_dim}

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `apply_rope`."""
        return {
            "base": self.base,
            "layout": self.layout,
            "rotary_dim": self.rotary_dim,
            "scaling": self.scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "mrope_section": self.mrope_section,
            "mrope_interleaved": self.mrope_interleaved,
        }


def text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The text model's config, with transformers' defaults for what it omits."""
    if not isinstance(config, Mapping) and callable(getattr(config, "to_dict", None)):
        config = config.to_dict()  # a transformers PretrainedConfig
    if not isinstance(config, Mapping):
        raise TypeError(
            "config must be a dict (a parsed config.json) or have to_dict() (a "
            f"transformers PretrainedConfig), got {type(config).__name__}."
        )
    text = config.get("text_config")
    if isinstance(text, Mapping):
        outer_type = config.get("model_type")
        text = dict(text)
        inner_type = families.TEXT_MODEL_TYPES.get(outer_type, outer_type)
        text.setdefault("model_type", inner_type)
    else:
        text = dict(config)
        kind = text.get("model_type")
        text["model_type"] = families.TEXT_MODEL_TYPES.get(kind, kind)
    check_typos(text)
    _fold_per_layer_config(text)
    for key, value in families.DEFAULTS.get(text.get("model_type"), {}).items():
        if key != "mrope_section" and text.get(key) is None:
            text[key] = value
    return text


def _fold_per_layer_config(text: dict[str, Any]) -> None:
    """Gemma 4 as transformers 5 saves it: ``per_layer_config`` maps each
    full-attention layer to ``{"head_dim", "num_key_value_heads"}``, the
    ``global_head_dim`` and ``num_global_key_value_heads`` it was made of;
    folded back into those keys (in place). Overrides that differ between
    layers, or on other layers or keys, are not read: a ValueError."""
    overrides = text.pop("per_layer_config", None)
    if overrides is None:
        return
    model_type = text.get("model_type")
    if model_type != "gemma4_text":
        raise ValueError(
            f"config key 'per_layer_config' of a {model_type} config is not read "
            "(flax_posenc reads Gemma 4's)."
        )
    if not isinstance(overrides, Mapping):
        raise TypeError(
            f"config key 'per_layer_config' must map layers to overrides, got "
            f"{type(overrides).__name__}."
        )
    entries = [dict(entry) for entry in overrides.values()]
    layers = sorted(int(layer) for layer in overrides)
    types = text.get("layer_types")
    full = (
        None
        if types is None
        else [i for i, t in enumerate(types) if t == "full_attention"]
    )
    unknown = sorted(
        {key for entry in entries for key in entry}
        - {"head_dim", "num_key_value_heads"}
    )
    if (
        unknown
        or any(entry != entries[0] for entry in entries)
        or (full is not None and layers != full)
    ):
        raise ValueError(
            "config key 'per_layer_config' is read when it gives every "
            "full_attention layer the same 'head_dim' and 'num_key_value_heads' "
            f"(Gemma 4's global_head_dim and num_global_key_value_heads); got "
            f"{dict(overrides)} for full_attention layers {full}."
        )
    entry = entries[0] if entries else {}
    default = families.DEFAULTS[model_type]["head_dim"]
    text["global_head_dim"] = entry.get("head_dim", text.get("head_dim") or default)
    if "num_key_value_heads" in entry:
        text["num_global_key_value_heads"] = entry["num_key_value_heads"]


def check_typos(
    config: Mapping[str, Any],
    known: Sequence[str] = families.READ_KEYS,
    reader: str = "the rotation",
) -> None:
    """A config key one edit from one of ``known`` (when that one is absent)
    is a typo: a ValueError naming both (``reader``: who reads them)."""
    for key in config:
        meant = validation.one_edit_away(key, known)
        if meant is not None and meant not in config:
            raise ValueError(
                f"config key {key!r} is not one {reader} reads; did you mean "
                f"{meant!r}? (Without it, {meant!r} would take its default.)"
            )


def config_int(
    config: Mapping[str, Any], key: str | None, minimum: int = 1
) -> int | None:
    """A whole-number config value (not a string, bool or 64.5), or None."""
    value = None if key is None else config.get(key)
    if value is None:
        return None
    return validation.check_int(f"config key {key!r}", value, minimum=minimum)


def config_real(config: Mapping[str, Any], key: str | None) -> float | None:
    """A real-number config value (not a string or bool), or None."""
    value = None if key is None else config.get(key)
    if value is None:
        return None
    return validation.check_real(f"config key {key!r}", value)


def _check_layer_type(config: dict[str, Any], layer_type: str | None) -> None:
    """``layer_type`` is one this config has, given where RoPE differs per
    layer type, and one whose layers rotate."""
    params = scaling_dict(config)
    model_type = config.get("model_type")
    layer_types = list(dict.fromkeys(config.get("layer_types") or ()))
    nested = hf.is_nested(params)
    if nested:
        available = list(params)
    elif model_type in families.LAYER_THETA_KEYS:
        available = list(families.LAYER_THETA_KEYS[model_type])
    else:
        available = layer_types or list(families.LAYER_TYPES)
    if model_type == "llama4_text" and not nested:
        available = ["chunked_attention", "full_attention"]
    per_layer = nested or model_type in families.PER_LAYER_FAMILIES
    if model_type in families.UNSCALED_LAYER_TYPES and not nested:
        per_layer = per_layer or hf.rope_type(params) not in (None, "default")
    if per_layer and layer_type is None:
        raise ValueError(
            f"this {model_type or 'model'} config gives RoPE per layer type: pass "
            f"layer_type= one of {available}."
        )
    if layer_type is not None and layer_type not in available:
        raise ValueError(
            f"layer_type {layer_type!r} is not in this config; it has "
            f"{available or 'no layer types'}."
        )
    nope = families.NOPE_LAYER_TYPES.get(model_type)
    if nope is not None and layer_type == nope[0]:
        raise ValueError(nope[1])
    _check_no_rope_layers(config)


def layer_rope_dict(config: dict[str, Any], layer_type: str | None) -> dict[str, Any]:
    """The rope dict (transformers-5 form) of ``layer_type``'s layers, read
    without the checks of which layer types rotate (the schedule's reader)."""
    params = scaling_dict(config)
    model_type = config.get("model_type")
    if hf.is_nested(params):
        chosen = params.get(layer_type)
        if chosen is None:
            raise ValueError(
                f"the config gives no RoPE for layer_type {layer_type!r} (a layer "
                "without positions)."
            )
        params = dict(chosen)
    elif layer_type in families.UNSCALED_LAYER_TYPES.get(model_type, ()):
        # transformers 4 form: these layers rotate unscaled (Gemma 3's and
        # OLMo 3's sliding layers).
        params = {"rope_type": "default"}
    hf.renamed(params).setdefault("rope_type", "default")
    theta_key = families.LAYER_THETA_KEYS.get(model_type, {}).get(layer_type)
    if theta_key is None:
        theta_key = _first_key(config, "rotary_emb_base", "rope_theta")
    theta = config_real(config, theta_key)
    if params.get("rope_theta") is None and theta is not None:
        params["rope_theta"] = theta
    partial = config_real(
        config, _first_key(config, "rotary_pct", "partial_rotary_factor")
    )
    if params.get("partial_rotary_factor") is None and partial is not None:
        params["partial_rotary_factor"] = partial
    kind = params["rope_type"]
    if not isinstance(kind, str):
        raise TypeError(f"the rope dict's 'rope_type' must be a string, got {kind!r}.")
    if model_type == "phi3" and params["rope_type"] in ("su", "yarn"):
        # Phi-3's config reads both of its early spellings as LongRoPE.
        params["rope_type"] = "longrope"
    kind = hf.canonical_type(params["rope_type"])
    section = families.DEFAULTS.get(model_type, {}).get("mrope_section")
    if section is not None and params.get("mrope_section") is None:
        params["mrope_section"] = list(section)
    if model_type in families.MROPE_INTERLEAVED:
        params["mrope_interleaved"] = True
    if kind in ("llama3", "yarn", "longrope"):
        # Phi-3 keeps the pretraining length outside the dict, and it wins.
        top = config_int(config, "original_max_position_embeddings")
        if top is not None:
            params["original_max_position_embeddings"] = top
    # Keys a rope dict may carry that are not the rotation's: Ministral 3's
    # query temperature (read by the attention schedule), and the model's
    # length, which must then be the config's.
    for key in hf.QUERY_SCALE_KEYS:
        params.pop(key, None)
    length = params.pop("max_position_embeddings", None)
    top = config.get("max_position_embeddings")
    if length is not None and top is not None and length != top:
        raise ValueError(
            f"the rope dict's max_position_embeddings={length!r} disagrees with "
            f"the config's {top!r}."
        )
    return params


def scaling_dict(config: Mapping[str, Any]) -> dict[str, Any]:
    """``rope_scaling`` and ``rope_parameters`` as one dict (they must agree)."""
    found = {}
    for key in ("rope_scaling", "rope_parameters"):
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise TypeError(
                f"config key {key!r} must be a dict (e.g. {{'rope_type': 'linear', "
                f"'factor': 2.0}}) or null, got {type(value).__name__} {value!r}."
            )
        found[key] = hf.renamed(dict(value))
    if len(found) < 2:
        return next(iter(found.values()), {})
    old, new = found["rope_scaling"], found["rope_parameters"]
    differ = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    if differ:
        raise ValueError(
            f"the config's rope_scaling {old} and rope_parameters {new} disagree "
            f"on {differ}; give one of them (transformers 5 reads rope_parameters, "
            "transformers 4 rope_scaling)."
        )
    return {**new, **old}


def _check_no_rope_layers(config: Mapping[str, Any]) -> None:
    """SmolLM3-style NoPE layers: one rotation for every layer would be wrong."""
    flags = config.get("no_rope_layers")
    if flags is None and config.get("model_type") == "smollm3":
        layers = config_int(config, "num_hidden_layers")
        interval = config_int(config, "no_rope_layer_interval") or 4
        if layers is not None:  # transformers' default: every interval-th layer
            flags = [int((i + 1) % interval != 0) for i in range(layers)]
    if flags is None or config.get("model_type") in families.NOPE_LAYER_TYPES:
        return
    if isinstance(flags, (str, bytes)) or not isinstance(flags, Sequence):
        raise TypeError(f"config key 'no_rope_layers' must be a list, got {flags!r}.")
    nope = [i for i, flag in enumerate(flags) if not flag]
    if nope:
        raise ValueError(
            f"this config's layers {nope} use no rotary embedding (0 in "
            "no_rope_layers) and the others rotate, but a RopeConfig is one "
            "rotation for every layer. For the layers that rotate, read the config "
            "with no_rope_layers all ones: rope_config_from_hf({**config, "
            "'no_rope_layers': [1] * len(config['no_rope_layers'])}); give the "
            "others no rotary embedding."
        )


def _first_key(config: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` the config gives a value (not null) for."""
    return next((key for key in keys if config.get(key) is not None), None)


def head_dim(config: dict[str, Any], layer_type: str | None) -> int:
    model_type = config.get("model_type")
    if model_type in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
        value = config_int(config, "qk_rope_head_dim")
        if value is None:
            raise ValueError(f"a {model_type} config needs 'qk_rope_head_dim'.")
        return value
    if layer_type == "full_attention" and config.get("global_head_dim") is not None:
        return config_int(config, "global_head_dim")  # Gemma 4's full-attention layers
    if config.get("head_dim") is not None:
        return config_int(config, "head_dim")
    hidden = _first_key(config, "hidden_size", "n_embd", "d_model")
    heads = _first_key(config, "num_attention_heads", "n_head")
    if hidden is None or heads is None:
        raise ValueError(
            "the config gives no head dimension: it needs 'head_dim', or "
            "'hidden_size' and 'num_attention_heads' (GPT-J: 'n_embd' and 'n_head')."
        )
    return config_int(config, hidden) // config_int(config, heads)


def _layout(config: Mapping[str, Any]) -> str:
    """The layout transformers rotates this model type's pairs in."""
    model_type = config.get("model_type")
    interleave = config.get("rope_interleave")
    if model_type in families.ROPE_INTERLEAVE and interleave is not None:
        interleave = validation.check_bool(
            "config key 'rope_interleave'", config["rope_interleave"]
        )
        return "interleaved" if interleave else "halves"
    if model_type in families.INTERLEAVED:
        return "interleaved"
    if model_type not in families.HALVES:
        known = "no model_type" if model_type is None else f"model_type {model_type!r}"
        warnings.warn(
            f"this config has {known}, which flax_posenc does not know: reading it "
            "with layout 'halves' (pairs (i, i + rotary_dim/2), as Llama). Pass "
            "layout='interleaved' if its transformers code pairs (2i, 2i + 1).",
            stacklevel=3,
        )
    return "halves"


def rope_config_from_hf(
    config: Mapping[str, Any],
    *,
    layer_type: str | None = None,
    layout: str | None = None,
) -> RopeConfig:
    """Reads a Hugging Face ``config.json`` (as a dict) into a `RopeConfig`.

    Reads what transformers reads for the config's ``model_type``, in the
    transformers-4 and transformers-5 forms:

    - the head dimension: ``head_dim``, else ``hidden_size //
      num_attention_heads`` (GPT-J: ``n_embd // n_head``); DeepSeek-V2/V3:
      ``qk_rope_head_dim``; Gemma 4 full-attention layers: ``global_head_dim``;
    - the base: the rope dict's ``rope_theta``, else the top-level
      ``rope_theta`` (GPT-NeoX: ``rotary_emb_base``), else 10000; Gemma 3 in
      transformers 4: ``rope_local_base_freq`` for sliding layers; ModernBERT:
      ``global_rope_theta`` and ``local_rope_theta``;
    - the rotated part: ``partial_rotary_factor`` (in the dict or top level;
      GPT-NeoX: ``rotary_pct``), rotary dim ``int(head_dim * factor)``; GPT-J:
      ``rotary_dim``;
    - the scaling: ``rope_parameters`` (transformers 5) or ``rope_scaling``
      (transformers 4), with ``max_position_embeddings`` (GPT-J:
      ``n_positions``) and a top-level ``original_max_position_embeddings``
      (Phi-3), which wins over the dict's for llama3, yarn and longrope, as in
      transformers; in transformers 4 form, Gemma 3's and OLMo 3's sliding
      layers rotate unscaled;
    - M-RoPE: the dict's ``mrope_section`` and ``mrope_interleaved``.

    A multimodal config is read through its ``text_config``. Keys the config
    leaves out take transformers' defaults for that model type where the
    rotation depends on them (Gemma 3).

    **Nothing is coerced or dropped.** Numbers must be JSON numbers (a string
    such as ``"10000"`` or a bool is an error), sizes whole numbers;
    ``rope_scaling`` and ``rope_parameters`` must be dicts, and when a config
    has both they must agree on every key they share. A key one edit from
    one the rotation reads (``original_max_positon_embeddings``,
    ``rope_thetta``) is an error naming the key it resembles; other unknown
    keys of the rope dict are warned about. Layers without RoPE are an
    error, never a rotation: Llama 4's and Cohere2's ``full_attention``
    layers, and SmolLM3's ``no_rope_layers``.

    **Layout.** ``"interleaved"`` for GPT-J, Llama 4, DeepSeek-V2/V3 (V3 and
    Kimi K2: unless ``rope_interleave`` is false, then ``"halves"``), Cohere,
    GLM, GLM-4, Helium and ERNIE 4.5; ``"halves"`` for the other model types,
    with a warning naming the layout when the ``model_type`` is missing or
    not one known to pair halves. ``layout=`` overrides it.
    transformers' DeepSeek-V3 rotates interleaved pairs and returns them
    de-interleaved: its output is ours permuted by ``perm = [0, 2, ..., r - 2,
    1, 3, ..., r - 1]`` (``theirs = ours[..., perm]``), applied to both ``q`` and
    ``k``, so attention scores are equal.

    Args:
      config: the parsed ``config.json``, or an object with ``to_dict()`` (a
        transformers ``PretrainedConfig``).
      layer_type: for configs whose RoPE differs per layer type (Gemma 3 and
        4, Cohere2, Llama 4: ``"full_attention"``, ``"sliding_attention"``,
        ``"chunked_attention"``), which one; required there, and must be one
        of the config's layer types elsewhere.
      layout: overrides the model type's layout.

    Returns:
      A `RopeConfig`; ``apply_rope(x, positions, **rope_config.kwargs)``.

    Raises:
      ValueError: a missing head dimension, a missing or unknown
        ``layer_type``, a layer without RoPE, ``rope_scaling`` and
        ``rope_parameters`` that disagree, a key one edit from a known one,
        sizes that are not whole numbers >= 1, and as `apply_rope` for the
        rope dict.
      TypeError: ``config`` not a dict; a value of the wrong type (a string
        for a number, a number for a dict).

    Warns:
      UserWarning: a missing or unknown ``model_type`` (read as halves).

    Examples:
      >>> import flax_posenc as fp
      >>> llama31 = {"model_type": "llama", "hidden_size": 4096,
      ...     "num_attention_heads": 32, "max_position_embeddings": 131072,
      ...     "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3",
      ...     "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      ...     "original_max_position_embeddings": 8192}}
      >>> rc = fp.rope_config_from_hf(llama31)
      >>> rc.head_dim, rc.rotary_dim, rc.base, rc.layout
      (128, 128, 500000.0, 'halves')
    """
    text = text_config(config)
    _check_layer_type(text, layer_type)
    return layer_rope(text, layer_type, layout=layout)


def layer_rope(
    text: dict[str, Any], layer_type: str | None, *, layout: str | None = None
) -> RopeConfig:
    """The `RopeConfig` of ``layer_type``'s layers of a text config (as read
    by `text_config`), without the checks of which layer types rotate."""
    params = layer_rope_dict(text, layer_type)
    model_type = text.get("model_type")
    dim = head_dim(text, layer_type)
    max_positions = config_int(
        text, _first_key(text, "max_position_embeddings", "n_positions")
    )
    parsed = hf.parse(params, None, max_positions)
    if model_type == "gptj" and text.get("rotary_dim") is not None:
        rotary_dim = config_int(text, "rotary_dim")
    else:
        partial = parsed.partial_rotary_factor
        rotary_dim = apply.resolve_rotary_dim(dim, None, partial)
    if layout is None:
        layout = _layout(text)
    validation.check_choice("layout", layout, angles.LAYOUTS)
    scaling = parsed.scaling
    # Check the scaling now (lengths of LongRoPE lists, factors, sections).
    apply.check_plan(rotary_dim, parsed)
    return RopeConfig(
        head_dim=dim,
        rotary_dim=rotary_dim,
        base=parsed.base,
        layout=layout,
        scaling=scaling,
        max_position_embeddings=None if max_positions is None else int(max_positions),
        mrope_section=parsed.mrope_section,
        mrope_interleaved=parsed.mrope_interleaved,
    )
