"""A model's attention, layer by layer, from its ``config.json``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from flax_posenc._src import validation
from flax_posenc._src.attention import temperature
from flax_posenc._src.rope import config as rope_config
from flax_posenc._src.rope import scalings
from flax_posenc._src.schedule import families

LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")


@dataclasses.dataclass(frozen=True)
class AlibiForm:
    """How a layer's ALiBi biases are computed (`flax_posenc.alibi_bias`).

    ``ALiBiBias(num_heads, **alibi.module_fields)`` makes them.

    Attributes:
      form: ``"distance"`` (the paper's ``-m |q - k|``) or
        ``"key_position"`` (``m k``: Falcon-RW's code).
      slope_dtype: the name of the dtype the slopes and their products with
        the positions are rounded to (Falcon-RW: ``"bfloat16"``), or None.
      scale: a factor on the biases (Falcon-RW: ``head_dim ** -0.5``).
    """

    form: str = "distance"
    slope_dtype: str | None = None
    scale: float = 1.0

    @property
    def module_fields(self) -> dict[str, Any]:
        """The fields of an ``ALiBiBias`` module (beside ``num_heads``)."""
        dtype = None if self.slope_dtype is None else jnp.dtype(self.slope_dtype)
        return {"form": self.form, "slope_dtype": dtype, "scale": self.scale}


@dataclasses.dataclass(frozen=True)
class LatentDims:
    """The sizes of multi-head latent attention (DeepSeek-V2/V3's config keys).

    Attributes:
      q_lora_rank: the queries' low-rank width, or None for a full query
        projection.
      kv_lora_rank: the compressed latent's width (what the cache keeps).
      qk_nope_head_dim: the features per head of queries and keys without
        positions.
      qk_rope_head_dim: the rotated features per head, of one key shared by
        every head.
      v_head_dim: the values' features per head.
    """

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclasses.dataclass(frozen=True)
class LayerAttention:
    """One layer's attention, as its checkpoint was trained (built by
    `attention_schedule`; the fields of ``MultiHeadAttention`` by name).

    Attributes:
      layer: the layer's index.
      layer_type: ``"full_attention"``, ``"sliding_attention"`` or
        ``"chunked_attention"``.
      hidden_size: the model's width (the attention's input features).
      num_heads: query heads.
      num_kv_heads: key/value heads.
      head_dim: features per head.
      rope: the layer's `RopeConfig`, or None for a layer without positions
        (NoPE).
      causal: whether later positions are masked.
      sliding_window: the window ``w`` of `attention_mask` (``q - k < w``, or
        ``|q - k| < w`` when not causal), or None.
      chunk_size: the chunk of chunked attention, or None.
      sinks: learned attention sinks, one logit per head.
      scale: the logits' scale, or None for ``head_dim ** -0.5``.
      softcap: the logits' soft cap, or None.
      query_scale: a position-dependent query temperature
        (`temperature_tuning_scale` or `llama_4_scaling` with the config's
        parameters), or None.
      qk_norm: the norm of queries and keys: ``"rms"`` (per head, a weight),
        ``"rms_unit_offset"`` (per head, ``1 + weight``: Gemma 3),
        ``"rms_all_heads"`` (over all heads' features, a weight: OLMo 2/3),
        ``"rms_unscaled"`` (per head, no weight: Llama 4's L2 norm),
        ``"layer"`` (a LayerNorm per head, a weight and a bias: Phi,
        Persimmon), ``"layer_each_head"`` (a LayerNorm per head, a weight
        for each head, no bias: StableLM 2, Command R+), or None.
      qk_norm_position: ``"before_rope"`` or ``"after_rope"``.
      v_norm: the values' norm (``"rms_unscaled"``: Gemma 4), or None.
      norm_eps: the QK and V norms' epsilon.
      clip_qkv: q, k and v clipped to ``[-clip_qkv, clip_qkv]`` after the
        projections and the QK norm before RoPE (OLMo 1, OLMoE), or None.
      qkv_bias: biases on the query, key and value projections.
      out_bias: a bias on the output projection.
      dropout_rate: dropout on the attention weights (``attention_dropout``).
      k_eq_v: the values are the keys' projection (Gemma 4's full layers
        with ``attention_k_eq_v``; their ``num_kv_heads`` is then
        ``num_global_key_value_heads`` when given).
      kv_shared_from: the earlier layer whose keys and values this one
        attends over (Gemma 4's last ``num_kv_shared_layers`` layers: the
        last layer of the same type before them), or None.
      latent: multi-head latent attention's sizes (DeepSeek-V2/V3), or None.
        ``head_dim`` is then ``qk_nope_head_dim + qk_rope_head_dim``, the
        rope's head the rotated part, ``qkv_bias`` the biases of the query
        and key/value down-projections and ``norm_eps`` the latents' norms'.
      alibi: how the layer's ALiBi biases are computed (Falcon-RW, whose
        layers then have no RoPE), or None.
    """

    layer: int
    layer_type: str
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope: rope_config.RopeConfig | None
    causal: bool = True
    sliding_window: int | None = None
    chunk_size: int | None = None
    sinks: bool = False
    scale: float | None = None
    softcap: float | None = None
    query_scale: Callable[..., Any] | None = None
    qk_norm: str | None = None
    qk_norm_position: str = "before_rope"
    v_norm: str | None = None
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    out_bias: bool = False
    dropout_rate: float = 0.0
    k_eq_v: bool = False
    kv_shared_from: int | None = None
    clip_qkv: float | None = None
    latent: LatentDims | None = None
    alibi: AlibiForm | None = None


def attention_schedule(config: Mapping[str, Any]) -> tuple[LayerAttention, ...]:
    """Every layer's attention from a Hugging Face ``config.json`` (as a dict).

    Reads what transformers reads for the config's ``model_type`` (its text
    model's, through ``text_config``), in the transformers-4 and -5 forms:
    the layer types (``layer_types``, else the family's rule: Gemma 2/3/4,
    Cohere2, EXAONE 4 ``sliding_window_pattern``, gpt-oss and OLMo 3 alternating,
    ModernBERT ``global_attn_every_n_layers``, Qwen2/3
    ``use_sliding_window`` from ``max_window_layers``, Mistral and Phi-3
    sliding everywhere when ``sliding_window`` is set, Llama 4 chunked on its
    rotating layers), the layers without RoPE (Llama 4 and SmolLM3
    ``no_rope_layers``, default every ``no_rope_layer_interval``-th layer;
    Cohere2's full layers, EXAONE 4's when it has a window), each layer's rotation (as
    `rope_config_from_hf` with its layer type), windows and chunks, sinks
    (gpt-oss), the query temperature (Llama 4's NoPE layers, Ministral 3's
    ``llama_4_scaling_beta``), the QK and V norms, the logit scale and soft
    cap (Gemma), and the projections' biases. The families and what each
    reads are tables (``flax_posenc/_src/schedule/families.py``).

    **Nothing is guessed.** A key that shapes attention (``sliding_window``,
    ``layer_types``, ``no_rope_layers``, ...) present (not null or false) in
    a config whose family does not read it, or in a config of a family the
    table does not know, is an error naming it; so are ``layer_types`` that
    disagree with the keys they derive from, a sliding layer without a
    window, a chunked layer without a chunk size, unknown layer type names,
    and what is not built yet (multi-head latent attention: DeepSeek-V2/V3;
    DeepSeek-V4's compressed layers). A family without any of these keys
    (Llama, Granite, ...) is causal full attention with its RoPE on every
    layer.

    Args:
      config: the parsed ``config.json``, or an object with ``to_dict()``.

    Returns:
      One `LayerAttention` per layer (``num_hidden_layers``).

    Raises:
      ValueError: as described above, and as `rope_config_from_hf`.
      TypeError: values of the wrong type.

    Examples:
      >>> import flax_posenc as fp
      >>> gemma2 = {"model_type": "gemma2", "hidden_size": 2304,
      ...     "num_attention_heads": 8, "num_key_value_heads": 4,
      ...     "head_dim": 256, "num_hidden_layers": 4}
      >>> [a.sliding_window for a in fp.attention_schedule(gemma2)]
      [4096, None, 4096, None]
    """
    raw = dict(rope_config.text_config(config))
    model_type = raw.get("model_type")
    for standard, own in families.KEY_NAMES.get(model_type, {}).items():
        if raw.get(standard) is None and own in raw:
            raw[standard] = raw[own]
    family = families.FAMILIES.get(model_type)
    present = sorted(k for k in families.SCHEDULE_KEYS if _given(raw.get(k)))
    if family is None:
        if present:
            raise ValueError(
                f"model_type {model_type!r} is not a family flax_posenc's attention "
                f"schedule knows, and its config has keys that shape attention: "
                f"{present}. Reading them as absent would be wrong; add the family "
                "to flax_posenc/_src/schedule/families.py."
            )
        family = families.FAMILIES["llama"]
    rope_config.check_typos(
        raw, sorted(families.SCHEDULE_KEYS), "the attention schedule"
    )
    if family.not_built is not None:
        raise ValueError(f"model_type {model_type!r}: {family.not_built}.")
    for key, reason in family.unsupported.items():
        # (0 layers shared, clip_qkv null: nothing unsupported.)
        if raw.get(key, family.defaults.get(key)):
            raise ValueError(f"config key {key!r}: {reason}.")
    unread = [k for k in present if k not in family.reads]
    if unread:
        raise ValueError(
            f"this {model_type} config has keys that shape attention but that "
            f"{model_type}'s transformers code does not read: {unread}. Remove them "
            "or check the model_type."
        )
    text = dict(raw)
    for key, value in family.defaults.items():
        text.setdefault(key, value)  # an explicit null stays null, as in transformers
    if family.window_off_full and text.get(family.window_key) is None:
        family = dataclasses.replace(family, layers="full", nope=None)
    n = _int(text, "num_hidden_layers", required=True)
    rotates = _rotating_layers(text, family, n)
    types = _layer_types(text, raw, family, rotates, n)
    sources = _kv_sources(text, family, types)
    return tuple(
        dataclasses.replace(
            _layer(text, family, i, types[i], rotates[i]), kv_shared_from=sources[i]
        )
        for i in range(n)
    )


def _kv_sources(text: dict, family: families.Family, types) -> list[int | None]:
    """Each layer's source of keys and values (transformers'
    ``kv_sharing_modes``): the last ``num_kv_shared_layers`` layers reuse
    the last earlier layer of their type."""
    n = len(types)
    shared = _int(text, family.kv_shared_key, minimum=0) if family.kv_shared_key else 0
    if not shared:
        return [None] * n
    first = n - shared
    if first <= 0:
        raise ValueError(
            f"num_kv_shared_layers={shared} of {n} layers leaves no layer to make "
            "the keys and values the others reuse (an assistant model's form)."
        )
    last = {t: i for i, t in enumerate(types[:first])}
    missing = sorted(set(types[first:]) - set(last))
    if missing:
        raise ValueError(
            f"layers of type {missing} reuse keys and values, but no layer before "
            f"layer {first} has that type."
        )
    return [None] * first + [last[t] for t in types[first:]]


def _given(value: Any) -> bool:
    """A key counts as present unless it is null, false or an empty list."""
    if value is None or value is False:
        return False
    return not (isinstance(value, (list, tuple)) and not value)


def _int(config: Mapping[str, Any], key: str, *, required: bool = False, minimum=1):
    """`rope_config.config_int`, or a ValueError naming a ``required`` key."""
    if required and config.get(key) is None:
        raise ValueError(f"the config needs {key!r}.")
    return rope_config.config_int(config, key, minimum=minimum)


def _flag(config: Mapping[str, Any], key: str | None, default: bool = True) -> bool:
    if key is None:
        return default
    value = config.get(key)
    if value is None:
        return default
    return validation.check_bool(f"config key {key!r}", value)


def _rotating_layers(text: dict, family: families.Family, n: int) -> list[bool]:
    """Whether each layer has RoPE."""
    if family.nope != "flags":
        return [True] * n  # a NoPE layer type is read with the types
    flags = text.get("no_rope_layers")
    if not flags:  # transformers: missing or empty is every interval-th layer
        interval = _int(text, "no_rope_layer_interval") or 4
        return [(i + 1) % interval != 0 for i in range(n)]
    if isinstance(flags, (str, bytes)) or not isinstance(flags, Sequence):
        raise TypeError(f"config key 'no_rope_layers' must be a list, got {flags!r}.")
    if len(flags) != n:
        raise ValueError(
            f"config key 'no_rope_layers' has {len(flags)} entries for "
            f"num_hidden_layers={n}."
        )
    bad = [f for f in flags if f not in (0, 1) or isinstance(f, float)]
    if bad:
        raise ValueError(
            f"config key 'no_rope_layers' holds 1 (RoPE) or 0 (none) per layer, "
            f"got {bad}."
        )
    return [bool(f) for f in flags]


def _window(text: dict, family: families.Family) -> int | None:
    if family.layers == "from_layer" and not _flag(text, family.switch_key, False):
        return None  # Qwen2/3: no window unless use_sliding_window
    window = _int(text, family.window_key)
    if window is not None and (family.window_half or _bidirectional(text, family)):
        window = window // 2 + 1  # |q - k| <= key // 2
    return window


def _bidirectional(text: dict, family: families.Family) -> bool:
    """Whether the config turns the family's layers bidirectional."""
    key, on = family.bidirectional_key, family.bidirectional_value
    if key is None:
        return False
    if on is True:
        return _flag(text, key, False)
    value = text.get(key)
    known = (on, *family.bidirectional_others)
    if value is not None and value not in known:
        raise ValueError(
            f"config key {key!r} is one of {list(known)} or null, got {value!r}."
        )
    return value == on


def _derived_types(
    text: dict, family: families.Family, rotates: list[bool], n: int
) -> list[str]:
    """The layer types the family's rule gives (transformers' default)."""
    full, sliding = "full_attention", "sliding_attention"
    window = _window(text, family) is not None
    rule = family.layers
    if rule == "full":
        types = [full] * n
    elif rule == "all_sliding":
        types = [sliding if window else full] * n
    elif rule == "period":
        pattern = text.get(family.period_key) if family.period_key else None
        if isinstance(pattern, str) and family.period_letters:
            types = _letter_types(family.period_key, pattern, n)
        else:
            period = family.period
            if family.period_key is not None:
                period = _int(text, family.period_key) or period
            types = [
                full if (i + family.offset) % period == 0 else sliding for i in range(n)
            ]
    elif rule == "from_layer":
        on = _flag(text, family.switch_key, default=False) and window
        first = _int(text, family.from_key, minimum=0)
        types = [sliding if on and i >= first else full for i in range(n)]
    elif rule == "nope_sliding":
        on = _flag(text, family.switch_key, default=False) and window
        types = [sliding if on and not r else full for r in rotates]
    elif rule == "rope_chunked":
        chunked = _int(text, family.chunk_key) is not None
        types = ["chunked_attention" if chunked and r else full for r in rotates]
    else:  # a table entry naming a rule that does not exist
        raise AssertionError(f"unknown layer rule {rule!r}")
    if family.last_full and types:
        types[-1] = full
    return types


def _letter_types(key: str, pattern: str, n: int) -> list[str]:
    """EXAONE 4's pattern string: "L" (local: sliding) or "G" (global: full)
    per layer, repeated from layer 0 ("LLLG" is the period 4)."""
    if not pattern or set(pattern) - {"L", "G"}:
        raise ValueError(
            f"config key {key!r} as a string holds 'L' (sliding) and 'G' (full) "
            f"per layer, got {pattern!r}."
        )
    types = {"L": "sliding_attention", "G": "full_attention"}
    return [types[pattern[i % len(pattern)]] for i in range(n)]


# The keys a family's rule derives the layer types from: when the config gives
# one of them and layer_types too, the two must agree. (A period rule's types
# do not depend on the window: a transformers-5 config keeps layer_types and
# the window but drops the pattern it came from.)
def _rule_keys(family: families.Family) -> tuple[str, ...]:
    rule = family.layers
    keys = {
        "full": [],
        "period": [family.period_key],
        "all_sliding": [family.window_key],
        "from_layer": [family.from_key, family.switch_key, family.window_key],
        "nope_sliding": [family.switch_key, family.window_key],
        "rope_chunked": [family.chunk_key],
    }[rule]
    if family.nope == "flags":
        keys += ["no_rope_layers", "no_rope_layer_interval"]
    return tuple(k for k in keys if k is not None)


def _layer_types(
    text: dict, raw: dict, family: families.Family, rotates: list[bool], n: int
) -> list[str]:
    derived = _derived_types(text, family, rotates, n)
    given = raw.get("layer_types")
    if given is None:
        return derived
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise TypeError(f"config key 'layer_types' must be a list, got {given!r}.")
    given = list(given)
    if len(given) != n:
        raise ValueError(
            f"config key 'layer_types' has {len(given)} entries for "
            f"num_hidden_layers={n}."
        )
    unknown = sorted({t for t in given if t not in LAYER_TYPES}, key=str)
    if unknown:
        raise ValueError(
            f"config key 'layer_types' has layer types {unknown} the attention "
            f"schedule does not know; it knows {list(LAYER_TYPES)}."
        )
    explicit = [k for k in _rule_keys(family) if _given(raw.get(k))]
    if family.last_full and given[-1] != "full_attention":
        raise ValueError(
            f"this {raw.get('model_type')} config's last layer must be "
            f"full_attention (transformers forces it), but layer_types gives "
            f"{given[-1]!r}."
        )
    if explicit and given != derived:
        differ = [i for i in range(n) if given[i] != derived[i]]
        raise ValueError(
            f"config key 'layer_types' disagrees with {explicit} at layers "
            f"{differ}: layer_types gives {[given[i] for i in differ]}, the keys "
            f"give {[derived[i] for i in differ]}."
        )
    return given


def _bias(text: dict, rule: str | bool) -> bool:
    if isinstance(rule, bool):
        return rule
    return _flag(text, rule, default=False)


def _query_scale(text: dict, family: families.Family, rotates: bool):
    if family.temperature == "tuning":
        if rotates or not _flag(text, "attn_temperature_tuning"):
            return None
        return functools.partial(
            temperature.temperature_tuning_scale,
            floor_scale=_int(text, "floor_scale"),
            attn_scale=rope_config.config_real(text, "attn_scale"),
        )
    if family.temperature == "llama_4_scaling":
        params = rope_config.scaling_dict(text)
        beta = params.get("llama_4_scaling_beta")
        if beta is None:
            return None
        original = params.get("original_max_position_embeddings")
        if original is None:
            raise ValueError(
                "the rope dict's llama_4_scaling_beta needs its "
                "original_max_position_embeddings."
            )
        return functools.partial(
            temperature.llama_4_scaling,
            beta=validation.check_real("llama_4_scaling_beta", beta),
            original_max_position_embeddings=validation.check_int(
                "original_max_position_embeddings", original, minimum=1
            ),
        )
    return None


def _layer(
    text: dict, family: families.Family, i: int, layer_type: str, rotates: bool
) -> LayerAttention:
    if family.nope is not None and family.nope != "flags":
        rotates = layer_type != family.nope
    window = chunk = None
    if layer_type == "sliding_attention":
        window = _window(text, family)
        if window is None:
            raise ValueError(
                f"layer {i} is sliding_attention but the config gives no "
                f"{family.window_key!r}."
            )
    elif layer_type == "chunked_attention":
        chunk = None if family.chunk_key is None else _int(text, family.chunk_key)
        if chunk is None:
            raise ValueError(
                f"layer {i} is chunked_attention but the config gives no "
                f"{family.chunk_key or 'attention_chunk_size'!r}."
            )
    heads = _int(text, "num_attention_heads", required=True)
    kv_heads = heads
    if family.kv_heads_key is not None:
        kv_heads = _int(text, family.kv_heads_key) or heads
    if family.multi_query is not None:
        multi, new = family.multi_query
        if not _flag(text, new, False):
            if _flag(text, multi, False):
                kv_heads = 1
            elif kv_heads != heads:
                # transformers splits the fused projection per head then
                # ([heads, 3, head_dim]) and cannot run fewer key heads.
                raise ValueError(
                    f"{family.kv_heads_key}={kv_heads} with {multi} and {new} "
                    f"false: the fused q/k/v then holds one key per head "
                    f"({heads}); set {new} for grouped heads."
                )
    k_eq_v = (
        family.k_eq_v_key is not None
        and layer_type == "full_attention"
        and _flag(text, family.k_eq_v_key, default=False)
    )
    if k_eq_v:  # transformers reads the global count only with k_eq_v
        kv_heads = _int(text, family.global_kv_heads_key) or kv_heads
    hidden = _int(text, "hidden_size", required=True)
    head_dim = rope_config.head_dim(text, layer_type)
    alibi = None
    if family.alibi_key is not None and _flag(text, family.alibi_key, False):
        # Falcon-RW: ALiBi in place of RoPE, as its code computes it (the
        # keys' positions, bfloat16 slopes and products, scaled with the
        # logits by head_dim ** -0.5).
        rotates = False
        alibi = AlibiForm("key_position", "bfloat16", head_dim**-0.5)
    rope = rope_config.layer_rope(text, layer_type) if rotates else None
    qk_norm = family.qk_norm
    if not _flag(text, family.qk_norm_switch) or (
        family.qk_norm_rope_layers_only and not rotates
    ):
        qk_norm = None
    scale = family.scale
    if family.scale_key is not None:
        scale = rope_config.config_real(text, family.scale_key) ** -0.5
    if family.scale_value_key is not None:
        scale = rope_config.config_real(text, family.scale_value_key)
    softcap = rope_config.config_real(text, family.softcap_key)
    eps = rope_config.config_real(text, family.eps_key)
    latent = None
    if family.latent:
        latent, head_dim, scale = _latent(text, layer_type)
        eps = 1e-6  # transformers builds the latents' RMSNorms without the config's
    return LayerAttention(
        layer=i,
        layer_type=layer_type,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rope=rope,
        causal=family.causal and not _bidirectional(text, family),
        sliding_window=window,
        chunk_size=chunk,
        sinks=family.sinks,
        scale=scale,
        softcap=softcap,
        query_scale=_query_scale(text, family, rotates),
        qk_norm=qk_norm,
        qk_norm_position=family.qk_norm_position,
        v_norm=family.v_norm,
        norm_eps=1e-6 if eps is None else eps,
        qkv_bias=_bias(text, family.qkv_bias),
        out_bias=_bias(text, family.out_bias),
        dropout_rate=validation.check_rate(
            "config key 'attention_dropout'", text.get("attention_dropout") or 0.0
        ),
        k_eq_v=k_eq_v,
        clip_qkv=_clip(text, family.clip_key),
        latent=latent,
        alibi=alibi,
    )


def _clip(text: dict, key: str | None) -> float | None:
    clip = rope_config.config_real(text, key)
    if clip is not None and not clip > 0:
        raise ValueError(f"config key {key!r} must be positive or null, got {clip}.")
    return clip


def _latent(text: dict, layer_type: str):
    """MLA's sizes, head and scale: ``head ** -0.5`` times YaRN's
    ``mscale(factor, mscale_all_dim) ** 2`` (transformers' yarn_apply_mscale)."""
    dims = LatentDims(
        q_lora_rank=_int(text, "q_lora_rank"),
        kv_lora_rank=_int(text, "kv_lora_rank", required=True),
        qk_nope_head_dim=_int(text, "qk_nope_head_dim", required=True),
        qk_rope_head_dim=_int(text, "qk_rope_head_dim", required=True),
        v_head_dim=_int(text, "v_head_dim", required=True),
    )
    head = dims.qk_nope_head_dim + dims.qk_rope_head_dim
    scale = head**-0.5
    params = rope_config.layer_rope_dict(text, layer_type)
    all_dim = params.get("mscale_all_dim")
    if params.get("rope_type") != "default" and all_dim:
        factor = validation.check_real("the rope dict's factor", params["factor"])
        all_dim = validation.check_real("the rope dict's mscale_all_dim", all_dim)
        scale = scale * scalings.yarn_mscale(factor, all_dim) ** 2
    return dims, head, scale
