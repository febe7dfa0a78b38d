"""From a checkpoint folder (``config.json`` + safetensors) to a `Decoder`.

The weights are read with the ``safetensors`` package's NumPy loader (no
torch), one ``model.safetensors`` or the shards a
``model.safetensors.index.json`` names, and each of transformers' tensors
goes to the parameter it is, transposed and split into heads where the
layouts differ (a ``[out, in]`` Linear weight is a ``[in, ..., out]``
kernel here). Missing, unexpected and misshapen tensors are one error that
names them all.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import flax_posenc as fp
from examples import models, moe

# Tensors a checkpoint may carry that are not weights (buffers transformers
# saved in some versions).
IGNORED = re.compile(
    r".*rotary_emb\.inv_freq$"
    # T5's tied copies of shared.weight, when a checkpoint keeps them.
    r"|(encoder|decoder)\.embed_tokens\.weight$"
    # BERT's pooler (not the last hidden states) and its position-id buffer.
    r"|pooler\..*|embeddings\.position_ids$"
)


def read_config(folder: str | pathlib.Path) -> dict[str, Any]:
    """The folder's ``config.json``."""
    path = pathlib.Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}.")
    return json.loads(path.read_text())


def read_tensors(folder: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Every tensor of the folder's safetensors file(s), by name, as NumPy."""
    from safetensors.numpy import load_file

    folder = pathlib.Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise FileNotFoundError(
            f"no model.safetensors or model.safetensors.index.json in {folder}."
        )
    tensors: dict[str, np.ndarray] = {}
    for shard in shards:
        tensors.update(load_file(str(folder / shard)))
    return tensors


def _transposed(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A transformers Linear weight ``[out, in]`` as a kernel ``[in, ...]``
    (``[in, heads, dim]``; the out projection's ``[heads, dim, out]``)."""
    return w.T.reshape(shape)


def _reshaped(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return w.reshape(shape)


def _rows(start: int, stop: int) -> Callable:
    """Rows ``[start, stop)`` of a fused Linear weight, transposed."""

    def convert(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return _transposed(w[start:stop], shape)

    return convert


def _fused(
    config: Mapping[str, Any], *, attention: bool = True
) -> list[tuple[str, str, Callable]]:
    """Phi-3's ``qkv_proj`` (q, then k, then v rows) and ``gate_up_proj``
    (gate rows, then up rows); GLM's ``gate_up_proj`` alone
    (``attention=False``)."""
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    dim = config.get("head_dim") or config["hidden_size"] // heads
    q, k = heads * dim, kv * dim
    inter = config["intermediate_size"]
    attn, mlp = (
        r"layers\.(\d+)\.attention\.sublayer\.",
        r"layers\.(\d+)\.mlp\.sublayer\.",
    )
    qkv, gate_up = (
        "model.layers.{0}.self_attn.qkv_proj.weight",
        "model.layers.{0}.mlp.gate_up_proj.weight",
    )
    mlp_rules = [
        (mlp + r"gate\.kernel", gate_up, _rows(0, inter)),
        (mlp + r"up\.kernel", gate_up, _rows(inter, 2 * inter)),
    ]
    if not attention:
        return mlp_rules
    return [
        (attn + r"query\.kernel", qkv, _rows(0, q)),
        (attn + r"key\.kernel", qkv, _rows(q, q + k)),
        (attn + r"value\.kernel", qkv, _rows(q + k, q + 2 * k)),
        *mlp_rules,
    ]


def _fused_per_head(config: Mapping[str, Any]) -> list[tuple[str, str, Callable]]:
    """``query_key_value`` by key/value group: rows ``[kv_heads, heads /
    kv_heads + 2, head_dim]``, each group's queries, then its key and its
    value (GPT-NeoX and Falcon without multi_query: ``[heads, 3, head_dim]``;
    Falcon-7B's one group: ``[heads + 2, head_dim]``), its bias alike."""
    layer = fp.attention_schedule(config)[0]
    heads, groups, dim = layer.num_heads, layer.num_kv_heads, layer.head_dim
    per = heads // groups
    parts = (slice(0, per), slice(per, per + 1), slice(per + 1, per + 2))

    def part(i):
        def convert(w, shape):
            w = w.reshape(groups, per + 2, dim, *w.shape[1:])[:, parts[i]]
            w = w.reshape(-1, dim, *w.shape[3:])  # [heads or kv_heads, dim, ...]
            return w.transpose(2, 0, 1) if w.ndim == 3 else w

        return convert

    attn = r"layers\.(\d+)\.(?:attention\.sublayer)\."
    fused = "model.layers.{0}.self_attn.query_key_value."
    return [
        (attn + name + r"\." + kind, fused + hf_kind, part(i))
        for i, name in enumerate(("query", "key", "value"))
        for kind, hf_kind in (("kernel", "weight"), ("bias", "bias"))
    ]


def _rules(
    family: models.Family, config: Mapping[str, Any]
) -> list[tuple[str, str, Callable]]:
    """(our parameter path pattern, transformers' name, conversion)."""
    layer = r"layers\.(\d+)\."
    # (inner.: Granite's sublayers inside models.Scaled.)
    attn = layer + r"attention\.sublayer\.(?:inner\.)?"
    hf = "model.layers.{0}."
    norms = {  # our Residual's norm (and post_norm): transformers' names
        "pre": ("input_layernorm", None, "post_attention_layernorm", None),
        "reordered": (
            "post_attention_layernorm",
            None,
            "post_feedforward_layernorm",
            None,
        ),
        "sandwich": (
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ),
        # One shared norm (Cohere, StableLM, Phi); GPT-NeoX's MLP has its own,
        # its parallel_norm.
        "parallel": ("input_layernorm", None, None, None),
    }[family.norm_position]
    if config.get("enable_moe_block"):  # Gemma 4: its MLP residual is reordered
        norms = (*norms[:2], "post_feedforward_layernorm", None)
    norms = family.norm_names or norms
    rules = []
    if family.fused in ("qkv_and_mlp", "mlp"):
        rules = _fused(config, attention=family.fused == "qkv_and_mlp")
    if family.fused == "qkv_per_head":
        rules = _fused_per_head(config)
    if family.norm_position == "parallel" and family.parallel_norms:
        for kind, hf_kind in (("scale", "weight"), ("bias", "bias")):
            rules.append(
                (
                    layer + r"attention\.parallel_norm\." + kind,
                    hf + f"post_attention_layernorm.{hf_kind}",
                    _reshaped,
                )
            )
    for sub, norm, post in (("attention", *norms[:2]), ("mlp", *norms[2:])):
        if norm is None:
            continue
        rules.append((layer + sub + r"\.norm\.scale", hf + norm + ".weight", _reshaped))
        rules.append((layer + sub + r"\.norm\.bias", hf + norm + ".bias", _reshaped))
        if post is not None:
            rules.append(
                (layer + sub + r"\.post_norm\.scale", hf + post + ".weight", _reshaped)
            )
    if config.get("model_type") == "stablelm":  # one LayerNorm per head
        heads = config["num_attention_heads"]
        for ours, theirs, count in (
            ("query_norm", "q_layernorm", heads),
            ("key_norm", "k_layernorm", config.get("num_key_value_heads") or heads),
        ):
            each = tuple(
                hf + f"self_attn.{theirs}.norms.{h}.weight" for h in range(count)
            )
            rules.append((attn + ours + r"\.scale", each, _heads_stacked))
    rules += [
        (r"embed\.embedding", "model.embed_tokens.weight", _reshaped),
        (r"norm\.scale", "model.norm.weight", _reshaped),
        (r"norm\.bias", "model.norm.bias", _reshaped),
        (r"lm_head\.kernel", "lm_head.weight", _transposed),
        (r"lm_head\.bias", "lm_head.bias", _reshaped),  # Phi
        (attn + r"query\.kernel", hf + "self_attn.q_proj.weight", _transposed),
        (attn + r"key\.kernel", hf + "self_attn.k_proj.weight", _transposed),
        (attn + r"value\.kernel", hf + "self_attn.v_proj.weight", _transposed),
        (attn + r"out\.kernel", hf + "self_attn.o_proj.weight", _transposed),
        (attn + r"query\.bias", hf + "self_attn.q_proj.bias", _reshaped),
        (attn + r"key\.bias", hf + "self_attn.k_proj.bias", _reshaped),
        (attn + r"value\.bias", hf + "self_attn.v_proj.bias", _reshaped),
        (attn + r"out\.bias", hf + "self_attn.o_proj.bias", _reshaped),
        (attn + r"query_norm\.scale", hf + "self_attn.q_norm.weight", _reshaped),
        (attn + r"key_norm\.scale", hf + "self_attn.k_norm.weight", _reshaped),
        (attn + r"query_norm\.bias", hf + "self_attn.q_norm.bias", _reshaped),
        (attn + r"key_norm\.bias", hf + "self_attn.k_norm.bias", _reshaped),
        (attn + r"sinks", hf + "self_attn.sinks", _reshaped),  # gpt-oss
    ]
    # Multi-head latent attention (DeepSeek-V3): transformers' names.
    latent = {
        "q_a_proj": "q_a_proj",
        "q_b_proj": "q_b_proj",
        "kv_a_proj": "kv_a_proj_with_mqa",
        "kv_b_proj": "kv_b_proj",
    }
    for ours, theirs in latent.items():
        rules.append(
            (attn + ours + r"\.kernel", hf + f"self_attn.{theirs}.weight", _transposed)
        )
        rules.append(
            (attn + ours + r"\.bias", hf + f"self_attn.{theirs}.bias", _reshaped)
        )
    for ours, theirs in (
        ("q_a_norm", "q_a_layernorm"),
        ("kv_a_norm", "kv_a_layernorm"),
    ):
        rules.append(
            (attn + ours + r"\.scale", hf + f"self_attn.{theirs}.weight", _reshaped)
        )
    rules.append(
        (attn + r"q_proj\.kernel", hf + "self_attn.q_proj.weight", _transposed)
    )
    # The MLP: its Residual's sublayer, or the parallel one of the attention's.
    mlp = layer + r"(?:mlp\.sublayer|attention\.parallel)\.(?:inner\.)?"
    theirs = "feed_forward" if family.mlp_size_key == "intermediate_size_mlp" else "mlp"
    for name in ("gate", "up", "down"):
        rules.append(
            (mlp + name + r"\.kernel", hf + f"{theirs}.{name}_proj.weight", _transposed)
        )
        rules.append(
            (mlp + name + r"\.bias", hf + f"{theirs}.{name}_proj.bias", _reshaped)
        )
    for name in ("alpha_p", "alpha_n", "beta", "eps"):  # Apertus's xIELU
        rules.append(
            (mlp + rf"activation\.{name}", hf + f"{theirs}.act_fn.{name}", _reshaped)
        )
    if config.get("model_type") == "gemma4_text":
        rules += _gemma4_rules(config)
    elif config.get("model_type") in moe.STYLES:
        rules += _moe_rules(config, theirs)
    return [(ours, _renamed(name, family.renames), f) for ours, name, f in rules]


def _renamed(name, renames: Mapping[str, str]):
    """A transformers name (or a tuple of them) with a family's renames."""
    if isinstance(name, tuple):
        return tuple(_renamed(n, renames) for n in name)
    for old, new in renames.items():
        name = name.replace(old, new)
    return name


def _expert_rows(part: slice) -> Callable:
    """Rows ``part`` of ``[experts, out, in]`` tensors as ``[experts, in, out]``."""

    def convert(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return w[:, part].transpose(0, 2, 1)

    return convert


def _gemma4_rules(config: Mapping[str, Any]) -> list[tuple[str, Any, Callable]]:
    """Gemma 4's names beyond the sandwich layer's: ``layer_scalar``, the
    per-layer inputs (``embed_tokens_per_layer``, ``per_layer_*``) and the
    experts block (``router.*``, ``experts.gate_up_proj`` ``[experts, 2 *
    width, hidden]``, its gate rows then its up rows, the ``_1``/``_2``
    norms)."""
    ours, theirs = r"layers\.(\d+)\.", "model.layers.{0}."
    rules = [
        (ours + r"(?:mlp|per_layer)\.layer_scalar", theirs + "layer_scalar", _reshaped),
        (
            ours + r"per_layer\.norm\.scale",
            theirs + "post_per_layer_input_norm.weight",
            _reshaped,
        ),
        (
            ours + r"per_layer\.sublayer\.gate\.kernel",
            theirs + "per_layer_input_gate.weight",
            _transposed,
        ),
        (
            ours + r"per_layer\.sublayer\.projection\.kernel",
            theirs + "per_layer_projection.weight",
            _transposed,
        ),
        (
            r"per_layer_inputs\.table\.embedding",
            "model.embed_tokens_per_layer.weight",
            _reshaped,
        ),
        (
            r"per_layer_inputs\.projection\.kernel",
            "model.per_layer_model_projection.weight",
            _transposed,
        ),
        (
            r"per_layer_inputs\.norm\.scale",
            "model.per_layer_projection_norm.weight",
            _reshaped,
        ),
    ]
    block = ours + r"mlp\.sublayer\."
    norms = {
        "pre_norm": "pre_feedforward_layernorm",
        "dense_norm": "post_feedforward_layernorm_1",
        "experts_pre_norm": "pre_feedforward_layernorm_2",
        "experts_norm": "post_feedforward_layernorm_2",
    }
    for mine, hf in norms.items():
        rules.append((block + mine + r"\.scale", theirs + hf + ".weight", _reshaped))
    for name in ("gate", "up", "down"):
        rules.append(
            (
                block + rf"dense\.{name}\.kernel",
                theirs + f"mlp.{name}_proj.weight",
                _transposed,
            )
        )
    width = config.get("moe_intermediate_size") or 0
    experts = block + r"moe\."
    return [
        *rules,
        (experts + r"router\.kernel", theirs + "router.proj.weight", _transposed),
        (experts + "router_scale", theirs + "router.scale", _reshaped),
        (experts + "expert_scale", theirs + "router.per_expert_scale", _reshaped),
        (
            experts + r"experts\.gate",
            theirs + "experts.gate_up_proj",
            _expert_rows(slice(0, width)),
        ),
        (
            experts + r"experts\.up",
            theirs + "experts.gate_up_proj",
            _expert_rows(slice(width, None)),
        ),
        (
            experts + r"experts\.down",
            theirs + "experts.down_proj",
            _expert_rows(slice(None)),
        ),
    ]


def _heads_stacked(w: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """One norm weight ``[head_dim]`` per head as ``[heads, head_dim]``."""
    return np.stack(w)


def _stack(w: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """One Linear weight ``[out, in]`` per expert as ``[experts, in, out]``."""
    return np.stack([x.T for x in w])


def _columns(part: slice) -> Callable:
    """Columns ``part`` of a fused ``[experts, ..., 2 * width]`` tensor."""

    def convert(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return w[..., part]

    return convert


def _moe_rules(
    config: Mapping[str, Any], theirs: str
) -> list[tuple[str, Any, Callable]]:
    """A mixture of experts' names. The router is ``gate`` (``router``:
    Llama 4, gpt-oss); the experts one Linear each (``experts.{e}.*_proj``;
    Mixtral's ``w1``/``w3``/``w2``, in ``block_sparse_moe``) or fused
    ``[experts, in, out]`` tensors (``experts.gate_up_proj``, its gate
    columns then its up columns; gpt-oss's interleaved, with biases)."""
    model_type = config["model_type"]
    ours = r"layers\.(\d+)\.mlp\.sublayer\."
    block = "model.layers.{0}." + (
        "block_sparse_moe" if model_type == "mixtral" else theirs
    )
    router = "router" if model_type in ("llama4_text", "gpt_oss") else "gate"
    rules = [
        (ours + r"router\.kernel", f"{block}.{router}.weight", _transposed),
        (ours + r"router\.bias", f"{block}.{router}.bias", _reshaped),
        (ours + r"correction", f"{block}.gate.e_score_correction_bias", _reshaped),
    ]
    shared = {
        "deepseek_v2": "shared_experts",
        "deepseek_v3": "shared_experts",
        "llama4_text": "shared_expert",
    }
    for name in ("gate", "up", "down"):
        rules.append(
            (
                ours + rf"shared\.{name}\.kernel",
                f"{block}.{shared.get(model_type)}.{name}_proj.weight",
                _transposed,
            )
        )
    experts = ours + r"experts\."
    fused = f"{block}.experts.gate_up_proj"
    if model_type == "gpt_oss":
        return [
            *rules,
            (experts + "gate", fused, _columns(slice(0, None, 2))),
            (experts + "up", fused, _columns(slice(1, None, 2))),
            (experts + "gate_bias", fused + "_bias", _columns(slice(0, None, 2))),
            (experts + "up_bias", fused + "_bias", _columns(slice(1, None, 2))),
            (experts + "down", f"{block}.experts.down_proj", _reshaped),
            (experts + "down_bias", f"{block}.experts.down_proj_bias", _reshaped),
        ]
    if model_type == "llama4_text":
        width = config["intermediate_size"]
        return [
            *rules,
            (experts + "gate", fused, _columns(slice(0, width))),
            (experts + "up", fused, _columns(slice(width, None))),
            (experts + "down", f"{block}.experts.down_proj", _reshaped),
        ]
    names = (
        {"gate": "w1", "up": "w3", "down": "w2"}
        if model_type == "mixtral"
        else {n: f"{n}_proj" for n in ("gate", "up", "down")}
    )
    count = moe.num_experts(config)
    for name, hf in names.items():
        each = tuple(f"{block}.experts.{e}.{hf}.weight" for e in range(count))
        rules.append((experts + name, each, _stack))
    return rules


def _t5_rules() -> list[tuple[str, str, Callable]]:
    """T5's names: ``{encoder,decoder}.block.{i}.layer.{j}`` with
    SelfAttention / EncDecAttention / DenseReluDense, each with its
    layer_norm; the relative bias table ``[buckets, heads]`` in block 0."""
    rules = [
        (r"shared\.embedding", "shared.weight", _reshaped),
        (r"encoder_norm\.scale", "encoder.final_layer_norm.weight", _reshaped),
        (r"decoder_norm\.scale", "decoder.final_layer_norm.weight", _reshaped),
        (r"lm_head\.kernel", "lm_head.weight", _transposed),
    ]
    stacks = {
        "encoder": ["SelfAttention", "DenseReluDense"],
        "decoder": ["SelfAttention", "EncDecAttention", "DenseReluDense"],
    }
    projections = {"query": "q", "key": "k", "value": "v", "out": "o"}
    for stack, sublayers in stacks.items():
        for j, sub in enumerate(sublayers):
            ours = rf"{stack}\.(\d+)\.{j}\."
            theirs = f"{stack}.block.{{0}}.layer.{j}."
            rules.append(
                (ours + r"norm\.scale", theirs + "layer_norm.weight", _reshaped)
            )
            if sub == "DenseReluDense":
                for name in ("wi", "wi_0", "wi_1", "wo"):
                    rules.append(
                        (
                            ours + rf"sublayer\.{name}\.kernel",
                            theirs + f"{sub}.{name}.weight",
                            _transposed,
                        )
                    )
                continue
            for name, hf in projections.items():
                rules.append(
                    (
                        ours + rf"sublayer\.{name}\.kernel",
                        theirs + f"{sub}.{hf}.weight",
                        _transposed,
                    )
                )
            rules.append(
                (
                    ours + r"sublayer\.position_bias\.rel_embedding",
                    theirs + f"{sub}.relative_attention_bias.weight",
                    _transposed,
                )
            )
    return rules


def _bert_rules() -> list[tuple[str, str, Callable]]:
    """BERT's names: ``embeddings.*`` and ``encoder.layer.{i}.*``."""
    ours, theirs = r"layers\.(\d+)\.", "encoder.layer.{0}."
    rules = [
        (
            r"embeddings\.token\.embedding",
            "embeddings.word_embeddings.weight",
            _reshaped,
        ),
        (
            r"embeddings\.position\.embedding",
            "embeddings.position_embeddings.weight",
            _reshaped,
        ),
        (
            r"embeddings\.token_type\.embedding",
            "embeddings.token_type_embeddings.weight",
            _reshaped,
        ),
    ]
    layers = {  # ours -> theirs, for kernels (transposed) and biases
        r"embeddings\.norm\.": "embeddings.LayerNorm.",
        ours + r"0\.sublayer\.query\.": theirs + "attention.self.query.",
        ours + r"0\.sublayer\.key\.": theirs + "attention.self.key.",
        ours + r"0\.sublayer\.value\.": theirs + "attention.self.value.",
        ours + r"0\.sublayer\.out\.": theirs + "attention.output.dense.",
        ours + r"0\.norm\.": theirs + "attention.output.LayerNorm.",
        ours + r"1\.sublayer\.intermediate\.": theirs + "intermediate.dense.",
        ours + r"1\.sublayer\.output\.": theirs + "output.dense.",
        ours + r"1\.norm\.": theirs + "output.LayerNorm.",
    }
    for mine, hf in layers.items():
        rules += [
            (mine + "kernel", hf + "weight", _transposed),
            (mine + "scale", hf + "weight", _reshaped),
            (mine + "bias", hf + "bias", _reshaped),
        ]
    return rules


def _modernbert_rules(config: Mapping[str, Any]) -> list[tuple[str, str, Callable]]:
    """ModernBERT's names: ``embeddings.*``, ``layers.{i}.*`` (``attn.Wqkv``
    q, k, v rows; ``mlp.Wi`` input then gate), ``final_norm``."""
    h = config["hidden_size"]
    ours, theirs = r"layers\.(\d+)\.", "layers.{0}."
    attn = ours + r"0\.sublayer\."
    rules = [
        (r"embeddings\.embedding", "embeddings.tok_embeddings.weight", _reshaped),
        (r"embeddings_norm\.scale", "embeddings.norm.weight", _reshaped),
        (r"final_norm\.scale", "final_norm.weight", _reshaped),
        (ours + r"0\.norm\.scale", theirs + "attn_norm.weight", _reshaped),
        (ours + r"1\.norm\.scale", theirs + "mlp_norm.weight", _reshaped),
        (attn + r"query\.kernel", theirs + "attn.Wqkv.weight", _rows(0, h)),
        (attn + r"key\.kernel", theirs + "attn.Wqkv.weight", _rows(h, 2 * h)),
        (attn + r"value\.kernel", theirs + "attn.Wqkv.weight", _rows(2 * h, 3 * h)),
        (attn + r"out\.kernel", theirs + "attn.Wo.weight", _transposed),
        (ours + r"1\.sublayer\.wi\.kernel", theirs + "mlp.Wi.weight", _transposed),
        (ours + r"1\.sublayer\.wo\.kernel", theirs + "mlp.Wo.weight", _transposed),
    ]
    return rules


def _source(path: str, rules) -> tuple[tuple[str, ...], Callable] | None:
    """The transformers name(s) and conversion of one of our parameters. A
    rule names one tensor, or a tuple of them (one per expert, stacked)."""
    for pattern, name, convert in rules:
        match = re.fullmatch(pattern, path)
        if match:
            names = name if isinstance(name, tuple) else (name,)
            return tuple(n.format(*match.groups()) for n in names), convert
    return None


# Logical axis names -> mesh axes: heads, MLP width (each expert's too) and
# vocabulary over "model" (tensor parallel), everything else replicated; the
# batch goes over "data" (the caller's inputs). Expert parallelism instead:
# ("expert", "model") and ("mlp", None).
RULES = (
    ("vocab", "model"),
    ("embed", None),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("kv", None),
    ("mlp", "model"),
    ("expert", None),
)


def _sharding(variable, mesh, rules):
    """The `NamedSharding` of a parameter from its logical names."""
    names = variable.get_metadata().get("out_sharding")
    if names is None:  # no names (a norm's default is named): replicated
        names = (None,) * len(variable.get_value().shape)
    spec = nn.logical_to_mesh_axes(tuple(names), rules)
    return jax.sharding.NamedSharding(mesh, spec)


def load_weights(
    model: models.Decoder,
    tensors: Mapping[str, np.ndarray],
    *,
    mesh: jax.sharding.Mesh | None = None,
    rules=RULES,
) -> None:
    """Puts transformers' ``tensors`` into ``model``'s parameters, in place.

    With a ``mesh``, each parameter goes straight from its NumPy array to
    its shards (`jax.device_put` with the `NamedSharding` its logical axis
    names give under ``rules``); ``model`` may then be abstract
    (`nnx.eval_shape`), and no device holds a whole parameter it does not
    keep.

    Raises:
      ValueError: naming every missing, unexpected or misshapen tensor.
    """
    if model.config.get("model_type") == "t5":
        mapping = _t5_rules()
    elif model.config.get("model_type") == "bert":
        mapping = _bert_rules()
    elif model.config.get("model_type") == "modernbert":
        mapping = _modernbert_rules(model.config)
    else:
        family = models.family_of(model.config)
        mapping = _rules(family, model.config)
        tensors = _text_tensors(family, tensors)
        if model.encoder:  # transformers' base model (Gemma3TextModel): no model.
            tensors = {
                n if n.startswith("model.") else "model." + n: t
                for n, t in tensors.items()
            }
    _put(model, tensors, mapping, mesh, rules)


def _text_tensors(family: models.Family, tensors: Mapping[str, np.ndarray]):
    """A vision-language checkpoint's text decoder: without the vision
    tower's tensors, ``model.language_model.`` read as ``model.``."""
    if not family.vision_prefixes:
        return tensors
    prefix = family.language_prefix
    kept = {}
    for name, tensor in tensors.items():
        if name.startswith(family.vision_prefixes):
            continue
        if prefix is not None and name.startswith(prefix):
            name = "model." + name[len(prefix) :]
        kept[name] = tensor
    return kept


def _put(model, tensors, mapping, mesh, rules) -> None:
    """Each parameter of ``model`` from its tensor (``mapping``), or one
    ValueError naming what does not fit."""
    params = nnx.to_flat_state(nnx.state(model, nnx.Param))
    used, missing, misshapen, unmapped = set(), [], [], []
    updates = []
    for path, variable in params:
        key = ".".join(str(p) for p in path)
        found = _source(key, mapping)
        if found is None:
            unmapped.append(key)
            continue
        names, convert = found
        shape = tuple(variable.get_value().shape)
        absent = [name for name in names if name not in tensors]
        if absent:
            missing += absent
            continue
        used.update(names)
        arrays = [np.asarray(tensors[name]) for name in names]
        try:
            value = convert(arrays if len(names) > 1 else arrays[0], shape)
        except ValueError:  # a reshape or a stack that cannot be
            value = None
        if value is None or value.shape != shape:
            given = " ".join(
                f"{n} {tuple(a.shape)}" for n, a in zip(names, arrays, strict=True)
            )
            misshapen.append(f"{given} for {key} {shape}")
            continue
        updates.append((variable, value))
    unexpected = sorted(
        name for name in tensors if name not in used and not IGNORED.fullmatch(name)
    )
    problems = []
    if missing:
        problems.append(f"missing tensors: {sorted(set(missing))}")
    if unexpected:
        problems.append(f"unexpected tensors: {unexpected}")
    if any(name.endswith(("_blocks", "_scales")) for name in unexpected):
        problems.append(
            "the experts are quantized (MXFP4 blocks and scales): the examples "
            "read a dequantized copy (bfloat16 or float32 tensors)"
        )
    if misshapen:
        problems.append(f"shape mismatches: {misshapen}")
    if unmapped:
        problems.append(f"parameters no transformers name maps to: {unmapped}")
    if problems:
        raise ValueError(
            "the checkpoint does not fit the model: " + "; ".join(problems)
        )
    for variable, value in updates:
        value = value.astype(variable.get_value().dtype)
        if mesh is None:
            variable.set_value(jnp.asarray(value))
        else:
            variable.set_value(jax.device_put(value, _sharding(variable, mesh, rules)))


def from_pretrained(
    path: str | pathlib.Path, *, dtype=None, mesh=None, rules=RULES
) -> models.Decoder:
    """The model of a checkpoint folder (``config.json`` + safetensors).

    ``dtype``: the computation dtype (the parameters stay float32). ``mesh``:
    a `jax.sharding.Mesh` (of ``AxisType.Auto`` axes, XLA choosing the
    shardings in between) with a ``"model"`` axis and any others: each
    parameter is placed on it by its logical axis names under ``rules``
    (`RULES`: heads, MLP width and vocabulary split over ``"model"``), as it
    is read. The model is built abstractly (`nnx.eval_shape`): no random
    weights are made and then thrown away.
    """
    config = read_config(path)
    model = nnx.eval_shape(lambda: models.build(config, dtype=dtype))
    load_weights(model, read_tensors(path), mesh=mesh, rules=rules)
    return model
