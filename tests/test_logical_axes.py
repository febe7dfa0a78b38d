"""The logical axis names of every module's parameters, as docs/sharding.md lists them.

Each public module of both twins is built (abstractly: ``jax.eval_shape`` of
linen's ``init``, ``nnx.eval_shape`` of the NNX constructor), and the path,
shape and logical axis names of every parameter it makes are compared with the
table on the page: the table is the one place that lists them, and cannot
drift from the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx, traverse_util

import flax_posenc.linen as plinen
import flax_posenc.nnx as pnnx

PAGE = Path(__file__).resolve().parent.parent / "docs" / "sharding.md"
HEADER = "| module | parameter | shape | logical axis names |"
CODE = re.compile(r"`([^`]*)`")

# The sizes the table's shapes name, each a different number, so that a shape
# with two sizes swapped does not match.
SIZES = {
    "vocab_size": 11,
    "features": 8,
    "max_length": 13,
    "num_token_types": 3,
    "num_heads": 4,
    "num_kv_heads": 2,
    "head_dim": 6,
    "num_buckets": 10,
    "q_lora_rank": 7,
    "kv_lora_rank": 9,
    "qk_rope_head_dim": 2,
    "v_head_dim": 5,
    "qk_nope_head_dim + qk_rope_head_dim": 3 + 2,
    "kv_lora_rank + qk_rope_head_dim": 9 + 2,
    "qk_nope_head_dim + v_head_dim": 3 + 5,
}
_LATENT = {
    "kv_lora_rank": 9,
    "qk_nope_head_dim": 3,
    "qk_rope_head_dim": 2,
    "v_head_dim": 5,
    "q_lora_rank": 7,
    "qkv_bias": True,
    "out_bias": True,
}
S = SIZES
SEQ = 5
IDS = jnp.zeros((1, SEQ), jnp.int32)
X = jnp.zeros((1, SEQ, S["features"]))
HEADS_X = jnp.zeros((1, SEQ, S["num_heads"], S["head_dim"]))
POSITIONS = jnp.arange(SEQ)

# Every module built with every parameter it can have: (module, init inputs).
LINEN = {
    "TokenEmbedding": lambda: (
        plinen.TokenEmbedding(S["vocab_size"], S["features"]),
        (IDS,),
    ),
    "InputEmbedding": lambda: (
        plinen.InputEmbedding(
            S["vocab_size"], S["features"], num_token_types=S["num_token_types"]
        ),
        (IDS,),
    ),
    "LearnedPositionEmbedding": lambda: (
        plinen.LearnedPositionEmbedding(S["max_length"], S["features"]),
        (X,),
    ),
    "SinusoidalPositionEmbedding": lambda: (plinen.SinusoidalPositionEmbedding(), (X,)),
    "RotaryEmbedding": lambda: (plinen.RotaryEmbedding(), (HEADS_X, HEADS_X)),
    "ALiBiBias": lambda: (plinen.ALiBiBias(S["num_heads"]), (POSITIONS,)),
    "RelativePositionBias": lambda: (
        plinen.RelativePositionBias(S["num_heads"], num_buckets=S["num_buckets"]),
        (POSITIONS,),
    ),
    "LayerNorm": lambda: (plinen.LayerNorm(), (X,)),
    "RMSNorm": lambda: (plinen.RMSNorm(), (X,)),
    "DynamicTanh": lambda: (plinen.DynamicTanh(), (X,)),
    # Its sublayer and norm have no parameters: what is left is its own.
    "Residual": lambda: (
        plinen.Residual(
            plinen.SinusoidalPositionEmbedding(),
            norm=plinen.RMSNorm(use_scale=False),
            output_scale="layer_scale",
        ),
        (X,),
    ),
    "MultiHeadLatentAttention": lambda: (
        plinen.MultiHeadLatentAttention(S["num_heads"], **_LATENT),
        (X,),
    ),
    "MultiHeadAttention": lambda: (
        plinen.MultiHeadAttention(
            S["num_heads"],
            S["head_dim"],
            num_kv_heads=S["num_kv_heads"],
            qkv_bias=True,
            out_bias=True,
            sinks=True,
        ),
        (X,),
    ),
}

NNX = {
    "TokenEmbedding": lambda r: pnnx.TokenEmbedding(
        S["vocab_size"], S["features"], rngs=r
    ),
    "InputEmbedding": lambda r: pnnx.InputEmbedding(
        S["vocab_size"], S["features"], num_token_types=S["num_token_types"], rngs=r
    ),
    "LearnedPositionEmbedding": lambda r: pnnx.LearnedPositionEmbedding(
        S["max_length"], S["features"], rngs=r
    ),
    "SinusoidalPositionEmbedding": lambda r: pnnx.SinusoidalPositionEmbedding(),
    "RotaryEmbedding": lambda r: pnnx.RotaryEmbedding(),
    "ALiBiBias": lambda r: pnnx.ALiBiBias(S["num_heads"]),
    "RelativePositionBias": lambda r: pnnx.RelativePositionBias(
        S["num_heads"], num_buckets=S["num_buckets"], rngs=r
    ),
    "LayerNorm": lambda r: pnnx.LayerNorm(S["features"], rngs=r),
    "RMSNorm": lambda r: pnnx.RMSNorm(S["features"], rngs=r),
    "DynamicTanh": lambda r: pnnx.DynamicTanh(S["features"], rngs=r),
    "Residual": lambda r: pnnx.Residual(
        pnnx.SinusoidalPositionEmbedding(),
        pnnx.RMSNorm(S["features"], use_scale=False, rngs=r),
        output_scale="layer_scale",
        num_features=S["features"],
    ),
    "MultiHeadLatentAttention": lambda r: pnnx.MultiHeadLatentAttention(
        S["num_heads"], S["features"], rngs=r, **_LATENT
    ),
    "MultiHeadAttention": lambda r: pnnx.MultiHeadAttention(
        S["num_heads"],
        S["head_dim"],
        S["features"],
        num_kv_heads=S["num_kv_heads"],
        qkv_bias=True,
        out_bias=True,
        sinks=True,
        rngs=r,
    ),
}


def _module_names(package, base) -> set[str]:
    return {
        name
        for name in package.__all__
        if isinstance(getattr(package, name), type)
        and issubclass(getattr(package, name), base)
    }


def documented() -> dict[str, dict[str, tuple[tuple[int, ...], tuple]]]:
    """``{module: {parameter path: (shape, names)}}`` from the page's table.

    Shapes are written with the size names of SIZES; an empty module cell
    continues the module above; a parameter cell without code ("none")
    names no parameter.
    """
    lines = PAGE.read_text().splitlines()
    start = lines.index(HEADER) + 2  # after the header and its rule
    table: dict[str, dict] = {}
    module = None
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a row of 4 cells in {PAGE.name}: {line!r}"
        module_cell, parameter, shape, names = cells
        if module_cell:
            module = CODE.search(module_cell)[1]
            assert module not in table, f"{module} has two groups of rows"
            table[module] = {}
        path = CODE.search(parameter)
        if path is None:
            assert not shape and not names, line
            continue
        sizes = CODE.search(shape)[1].strip("[]")  # `[]`: a scalar
        table[module][path[1]] = (
            tuple(SIZES[size] for size in sizes.split(", ") if size),
            ast.literal_eval(CODE.search(names)[1]),
        )
    return table


def linen_params(name: str) -> dict[str, tuple[tuple[int, ...], tuple | None]]:
    module, inputs = LINEN[name]()
    variables = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    assert set(variables) <= {"params"}, sorted(variables)
    flat = traverse_util.flatten_dict(variables.get("params", {}), sep="/")
    return {
        path: (
            jnp.shape(nn.meta.unbox(leaf)),
            leaf.names if isinstance(leaf, nn.LogicallyPartitioned) else None,
        )
        for path, leaf in flat.items()
    }


def nnx_params(name: str) -> dict[str, tuple[tuple[int, ...], tuple | None]]:
    module = nnx.eval_shape(lambda: NNX[name](nnx.Rngs(0)))
    params = {}
    for path, variable in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        names = variable.get_metadata().get("out_sharding")
        params["/".join(map(str, path))] = (
            variable.get_value().shape,
            None if names is None else tuple(names),
        )
    return params


def test_every_module_is_built_and_documented():
    assert set(LINEN) == _module_names(plinen, nn.Module)
    assert set(NNX) == _module_names(pnnx, nnx.Module)
    assert set(documented()) == set(LINEN)


def test_table_reads_shapes_and_names():
    table = documented()
    assert table["TokenEmbedding"] == {"embedding": ((11, 8), ("vocab", "embed"))}
    assert table["RotaryEmbedding"] == {}
    assert table["InputEmbedding"]["token_type/embedding"] == ((3, 8), (None, "embed"))


@pytest.mark.parametrize("name", sorted(LINEN))
def test_linen_params_carry_the_documented_names(name):
    assert linen_params(name) == documented()[name]


@pytest.mark.parametrize("name", sorted(NNX))
def test_nnx_params_carry_the_documented_names(name):
    assert nnx_params(name) == documented()[name]


DOCSTRING_NAMES = re.compile(r"Logical axis names:(?P<text>.*?)(?:\n\s*\n|\Z)", re.S)
DOCSTRING_PAIR = re.compile(r"``(?P<path>[\w/]+)``:\s+``(?P<names>\([^`]*\))``")


def docstring_names(cls) -> dict[str, tuple]:
    """``{parameter path: names}`` from the "Logical axis names:" paragraph."""
    match = DOCSTRING_NAMES.search(cls.__doc__ or "")
    assert match, f"{cls.__module__}.{cls.__name__}'s docstring names no axes"
    return {
        pair["path"]: ast.literal_eval(pair["names"])
        for pair in DOCSTRING_PAIR.finditer(match["text"])
    }


def test_docstring_names_are_read():
    class Documented:
        """Summary.

        Logical axis names: ``a/kernel``: ``("embed", None)``, ``b``:
        ``("heads",)``.

        Examples:
          ``c``: ``("not", "these")``
        """

    assert docstring_names(Documented) == {
        "a/kernel": ("embed", None),
        "b": ("heads",),
    }


@pytest.mark.parametrize("package", [plinen, pnnx], ids=["linen", "nnx"])
@pytest.mark.parametrize("name", sorted(LINEN))
def test_docstrings_name_the_documented_axes(package, name):
    expected = {path: names for path, (_, names) in documented()[name].items()}
    assert docstring_names(getattr(package, name)) == expected
