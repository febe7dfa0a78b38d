"""From a published model's ``config.json`` to the arguments of `apply_rope`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flax_posenc import rope

# Model types whose transformers implementation pairs features (2i, 2i + 1).
# DeepSeek-V2/V3 rotate interleaved pairs but return them de-interleaved (see
# rope_config_from_hf); every other family pairs (i, i + r/2).
_INTERLEAVED = frozenset(
    {
        "gptj",
        "llama4_text",
        "deepseek_v2",
        "deepseek_v3",
        "kimi_k2",
        "cohere",
        "cohere2",
        "glm",
        "glm4",
    }
)

# Values transformers' config classes fill in when a config.json leaves them
# out, for what the rotation reads (transformers 5.24). Gemma 3's published
# config.json files name few keys: gemma-3-4b-it gives no head_dim, rope_theta
# or rope_local_base_freq.
_QWEN2_VL = {"rope_theta": 1_000_000.0, "mrope_section": (16, 24, 24)}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma2": {"head_dim": 256},
    "gemma3_text": {
        "head_dim": 256,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "max_position_embeddings": 131_072,
    },
    "gemma4_text": {
        "head_dim": 256,
        "global_head_dim": 512,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {
                "rope_type": "proportional",
                "partial_rotary_factor": 0.25,
                "rope_theta": 1_000_000.0,
            },
        },
    },
    "llama4_text": {"head_dim": 128, "rope_theta": 500_000.0},
    "cohere": {"rope_theta": 500_000.0},
    "qwen3": {"head_dim": 128},
    "qwen2_vl": _QWEN2_VL,
    "qwen2_vl_text": _QWEN2_VL,
    "qwen2_5_vl": _QWEN2_VL,
    "qwen2_5_vl_text": _QWEN2_VL,
    "qwen3_vl_text": {
        "head_dim": 128,
        "rope_theta": 500_000.0,
        "mrope_section": (24, 20, 20),
    },
    "gpt_neox": {"rotary_pct": 0.25},
    "phi": {"partial_rotary_factor": 0.5},
    "stablelm": {"partial_rotary_factor": 0.25},
    "glm": {"head_dim": 128, "partial_rotary_factor": 0.5},
    "glm4": {"head_dim": 128, "partial_rotary_factor": 0.5},
    "glm4_moe": {"partial_rotary_factor": 0.5},
    "gptj": {"rotary_dim": 64},
}
# The text model's type when a multimodal config.json's text_config omits it.
_TEXT_MODEL_TYPES = {
    "gemma3": "gemma3_text",
    "gemma4": "gemma4_text",
    "llama4": "llama4_text",
    "qwen3_vl": "qwen3_vl_text",
}
# Families whose RoPE differs per layer type even when the config does not nest
# it (Gemma 3 in transformers 4: rope_local_base_freq for sliding layers).
_PER_LAYER_FAMILIES = frozenset({"gemma3_text", "gemma4_text"})
# Layer type names transformers uses, for configs that list none.
_LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")
# Qwen3-VL assigns M-RoPE bands interleaved whatever its config says.
_MROPE_INTERLEAVED = frozenset({"qwen3_vl_text"})


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
    scaling: rope.RopeScaling | None = None
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


def _text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The text model's config, with transformers' defaults for what it omits."""
    if not isinstance(config, Mapping):
        raise TypeError(
            "config must be a dict (a parsed config.json), got "
            f"{type(config).__name__}."
        )
    text = config.get("text_config")
    if isinstance(text, Mapping):
        outer_type = config.get("model_type")
        text = dict(text)
        text.setdefault("model_type", _TEXT_MODEL_TYPES.get(outer_type, outer_type))
    else:
        text = dict(config)
        kind = text.get("model_type")
        text["model_type"] = _TEXT_MODEL_TYPES.get(kind, kind)
    for key, value in _DEFAULTS.get(text.get("model_type"), {}).items():
        if key != "mrope_section" and text.get(key) is None:
            text[key] = value
    return text


def _first(config: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def _rope_dict(
    config: dict[str, Any], layer_type: str | None
) -> tuple[dict[str, Any], str | None]:
    """The rope dict for ``layer_type``, in transformers-5 form, and the type used."""
    # transformers reads rope_scaling first when a config has both.
    params = config.get("rope_scaling") or config.get("rope_parameters")
    params = dict(params) if isinstance(params, Mapping) else {}
    model_type = config.get("model_type")
    layer_types = list(dict.fromkeys(config.get("layer_types") or ()))
    nested = rope._is_nested(params)
    if nested:
        available = list(params)
    elif model_type == "gemma3_text":
        available = ["full_attention", "sliding_attention"]
    else:
        available = layer_types or list(_LAYER_TYPES)
    if model_type == "llama4_text" and not nested:
        available = ["chunked_attention", "full_attention"]
    per_layer = nested or model_type in _PER_LAYER_FAMILIES
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
    if model_type == "llama4_text" and layer_type == "full_attention":
        raise ValueError(
            "Llama 4's full_attention layers (every no_rope_layer_interval-th "
            "layer, 0 in no_rope_layers) use no rotary embedding (NoPE); its "
            "chunked_attention layers rotate."
        )
    if nested:
        chosen = params.get(layer_type)
        if chosen is None:
            raise ValueError(
                f"the config gives no RoPE for layer_type {layer_type!r} (a layer "
                "without positions)."
            )
        params = dict(chosen)
    elif model_type == "gemma3_text" and layer_type == "sliding_attention":
        # transformers 4 form: sliding layers use rope_local_base_freq, unscaled.
        params = {"rope_type": "default", "rope_theta": config["rope_local_base_freq"]}
    if params.get("rope_type") is None and params.get("type") is not None:
        params["rope_type"] = params.pop("type")
    params.setdefault("rope_type", "default")
    theta = _first(config, "rotary_emb_base", "rope_theta")
    if model_type == "gemma3_text" and layer_type == "sliding_attention":
        theta = config.get("rope_local_base_freq")
    if params.get("rope_theta") is None and theta is not None:
        params["rope_theta"] = theta
    partial = _first(config, "rotary_pct", "partial_rotary_factor")
    if params.get("partial_rotary_factor") is None and partial is not None:
        params["partial_rotary_factor"] = partial
    if model_type == "phi3" and params["rope_type"] in ("su", "yarn"):
        # Phi-3's config reads both of its early spellings as LongRoPE.
        params["rope_type"] = "longrope"
    kind = rope._TYPE_ALIASES.get(params["rope_type"], params["rope_type"])
    section = _DEFAULTS.get(model_type, {}).get("mrope_section")
    if section is not None and params.get("mrope_section") is None:
        params["mrope_section"] = list(section)
    if model_type in _MROPE_INTERLEAVED:
        params["mrope_interleaved"] = True
    if kind in ("llama3", "yarn", "longrope"):
        # Phi-3 keeps the pretraining length outside the dict, and it wins.
        top = config.get("original_max_position_embeddings")
        if top is not None:
            params["original_max_position_embeddings"] = top
    return params, layer_type


def _head_dim(config: dict[str, Any], layer_type: str | None) -> int:
    model_type = config.get("model_type")
    if model_type in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
        value = config.get("qk_rope_head_dim")
        if value is None:
            raise ValueError(f"a {model_type} config needs 'qk_rope_head_dim'.")
        return int(value)
    if layer_type == "full_attention" and config.get("global_head_dim") is not None:
        return int(config["global_head_dim"])  # Gemma 4's full-attention layers
    if config.get("head_dim") is not None:
        return int(config["head_dim"])
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    heads = _first(config, "num_attention_heads", "n_head")
    if hidden is None or heads is None:
        raise ValueError(
            "the config gives no head dimension: it needs 'head_dim', or "
            "'hidden_size' and 'num_attention_heads' (GPT-J: 'n_embd' and 'n_head')."
        )
    return int(hidden) // int(heads)


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
      transformers 4: ``rope_local_base_freq`` for sliding layers;
    - the rotated part: ``partial_rotary_factor`` (in the dict or top level;
      GPT-NeoX: ``rotary_pct``), rotary dim ``int(head_dim * factor)``; GPT-J:
      ``rotary_dim``;
    - the scaling: ``rope_parameters`` (transformers 5) or ``rope_scaling``
      (transformers 4), with ``max_position_embeddings`` (GPT-J:
      ``n_positions``) and a top-level ``original_max_position_embeddings``
      (Phi-3), which wins over the dict's for llama3, yarn and longrope, as in
      transformers;
    - M-RoPE: the dict's ``mrope_section`` and ``mrope_interleaved``.

    A multimodal config is read through its ``text_config``. Keys the config
    leaves out take transformers' defaults for that model type where the
    rotation depends on them (Gemma 3).

    **Layout.** ``"interleaved"`` for GPT-J, Llama 4 and DeepSeek-V2/V3,
    ``"halves"`` for every other model type; ``layout=`` overrides it.
    transformers' DeepSeek-V3 rotates interleaved pairs and returns them
    de-interleaved: its output is ours permuted by ``perm = [0, 2, ..., r - 2,
    1, 3, ..., r - 1]`` (``theirs = ours[..., perm]``), applied to both ``q`` and
    ``k``, so attention scores are equal.

    Args:
      config: the parsed ``config.json``.
      layer_type: for configs whose RoPE differs per layer type (Gemma 3 and
        4: ``"full_attention"``, ``"sliding_attention"``), which one; required
        there, and must be one of the config's layer types elsewhere.
      layout: overrides the model type's layout.

    Returns:
      A `RopeConfig`; ``apply_rope(x, positions, **rope_config.kwargs)``.

    Raises:
      ValueError: a missing head dimension, a missing or unknown
        ``layer_type``, and as `apply_rope` for the rope dict.
      TypeError: ``config`` not a dict.

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
    text = _text_config(config)
    params, layer_type = _rope_dict(text, layer_type)
    model_type = text.get("model_type")
    head_dim = _head_dim(text, layer_type)
    max_positions = _first(text, "max_position_embeddings", "n_positions")
    parsed = rope._parse(params, None, max_positions)
    if model_type == "gptj" and text.get("rotary_dim") is not None:
        rotary_dim = int(text["rotary_dim"])
    else:
        rotary_dim = rope._rotary_dim(head_dim, None, parsed.partial_rotary_factor)
    if layout is None:
        layout = "interleaved" if model_type in _INTERLEAVED else "halves"
    rope._validation.check_choice("layout", layout, rope.LAYOUTS)
    scaling = parsed.scaling
    # Check the frequencies now (lengths of LongRoPE lists, factors, sections).
    rope._frequencies(rope._check_dim(rotary_dim), parsed.base, scaling, None)
    if parsed.mrope_section is not None:
        rope._pair_axes(rotary_dim // 2, parsed.mrope_section, parsed.mrope_interleaved)
    return RopeConfig(
        head_dim=head_dim,
        rotary_dim=rotary_dim,
        base=parsed.base,
        layout=layout,
        scaling=scaling,
        max_position_embeddings=None if max_positions is None else int(max_positions),
        mrope_section=parsed.mrope_section,
        mrope_interleaved=parsed.mrope_interleaved,
    )
