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

import jax.numpy as jnp
import numpy as np
from flax import nnx

from examples import models

# Tensors a checkpoint may carry that are not weights (buffers transformers
# saved in some versions).
IGNORED = re.compile(r".*rotary_emb\.inv_freq$")


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


def _rules(family: models.Family) -> list[tuple[str, str, Callable]]:
    """(our parameter path pattern, transformers' name, conversion)."""
    if family.norm_position == "reordered":  # OLMo 2: the sublayers' outputs
        attn_norm, mlp_norm = "post_attention_layernorm", "post_feedforward_layernorm"
    else:
        attn_norm, mlp_norm = "input_layernorm", "post_attention_layernorm"
    layer = r"layers\.(\d+)\."
    attn = layer + r"attention\.sublayer\."
    hf = "model.layers.{0}."
    return [
        (r"embed\.embedding", "model.embed_tokens.weight", _reshaped),
        (r"norm\.scale", "model.norm.weight", _reshaped),
        (r"lm_head\.kernel", "lm_head.weight", _transposed),
        (layer + r"attention\.norm\.scale", hf + attn_norm + ".weight", _reshaped),
        (layer + r"mlp\.norm\.scale", hf + mlp_norm + ".weight", _reshaped),
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
        (
            layer + r"mlp\.sublayer\.gate\.kernel",
            hf + "mlp.gate_proj.weight",
            _transposed,
        ),
        (layer + r"mlp\.sublayer\.up\.kernel", hf + "mlp.up_proj.weight", _transposed),
        (
            layer + r"mlp\.sublayer\.down\.kernel",
            hf + "mlp.down_proj.weight",
            _transposed,
        ),
    ]


def _source(path: str, rules) -> tuple[str, Callable] | None:
    for pattern, name, convert in rules:
        match = re.fullmatch(pattern, path)
        if match:
            return name.format(*match.groups()), convert
    return None


def load_weights(model: models.Decoder, tensors: Mapping[str, np.ndarray]) -> None:
    """Puts transformers' ``tensors`` into ``model``'s parameters, in place.

    Raises:
      ValueError: naming every missing, unexpected or misshapen tensor.
    """
    rules = _rules(models.family_of(model.config))
    params = nnx.to_flat_state(nnx.state(model, nnx.Param))
    used, missing, misshapen, unmapped = set(), [], [], []
    updates = []
    for path, variable in params:
        key = ".".join(str(p) for p in path)
        found = _source(key, rules)
        if found is None:
            unmapped.append(key)
            continue
        name, convert = found
        shape = tuple(variable.get_value().shape)
        if name not in tensors:
            missing.append(name)
            continue
        used.add(name)
        array = np.asarray(tensors[name])
        if array.size != int(np.prod(shape)):
            misshapen.append(f"{name} {tuple(array.shape)} for {key} {shape}")
            continue
        updates.append((variable, convert(array, shape)))
    unexpected = sorted(
        name for name in tensors if name not in used and not IGNORED.fullmatch(name)
    )
    problems = []
    if missing:
        problems.append(f"missing tensors: {sorted(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {unexpected}")
    if misshapen:
        problems.append(f"shape mismatches: {misshapen}")
    if unmapped:
        problems.append(f"parameters no transformers name maps to: {unmapped}")
    if problems:
        raise ValueError(
            "the checkpoint does not fit the model: " + "; ".join(problems)
        )
    for variable, value in updates:
        dtype = variable.get_value().dtype
        variable.set_value(jnp.asarray(value, dtype))


def from_pretrained(
    path: str | pathlib.Path, *, dtype=None, mesh=None
) -> models.Decoder:
    """The model of a checkpoint folder (``config.json`` + safetensors).

    ``dtype``: the computation dtype (the parameters stay float32); ``mesh``:
    a `jax.sharding.Mesh` to place the parameters on by their logical axis
    names (not yet: a ValueError).
    """
    if mesh is not None:
        raise ValueError("from_pretrained(mesh=...) is not built yet.")
    config = read_config(path)
    model = models.build(config, dtype=dtype)
    load_weights(model, read_tensors(path))
    return model
