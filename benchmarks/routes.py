"""The routes two values take through the package, counted call by call.

1. ``positions``, from a ``MultiHeadAttention.__call__`` (linen and NNX, with
   a rotary embedding) to the angle computation (``sin_cos`` in the angles
   module): the chain of the package's own calls on the stack when the
   angles are first computed, the files it crosses, and how many times the
   positions are checked (``position_array`` / ``integer_array``) per call.
2. ``config``, from ``RotaryEmbedding.from_hf_config`` (a Llama 3.1 config)
   to the frequencies: the files the chain crosses, and how many times the
   frequency table is computed while the module is built and when it is
   called once.

Only frames in the package's files count (jax's own are left out). Run it
on any commit (it finds the package's functions by name):

    python -m benchmarks.routes
"""

from __future__ import annotations

import collections
import itertools
import pathlib
import sys

import jax
import jax.numpy as jnp
from flax import nnx

import flax_posenc as fp
from flax_posenc import linen as fpl
from flax_posenc import nnx as fpn

PACKAGE = pathlib.Path(fp.__file__).parent
CHECKS = {"position_array", "integer_array"}
FREQUENCY_TABLES = {"_frequencies", "default_frequencies"}

LLAMA31 = {
    "model_type": "llama",
    "hidden_size": 256,
    "num_attention_heads": 4,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
}


def _name(frame) -> str:
    path = pathlib.Path(frame.f_code.co_filename).resolve()
    code = frame.f_code
    return f"{path.relative_to(PACKAGE)}:{getattr(code, 'co_qualname', code.co_name)}"


def _ours(frame) -> bool:
    return PACKAGE in pathlib.Path(frame.f_code.co_filename).resolve().parents


class Recorder:
    """Counts calls by name, and keeps the stack at the first call of ``target``."""

    def __init__(self, target: str | None = None):
        self.target, self.chain, self.calls = target, None, collections.Counter()
        self.edges = collections.Counter()  # (caller's file, callee's file)

    def __call__(self, frame, event, arg):
        if event != "call" or not _ours(frame):
            return
        self.calls[frame.f_code.co_name] += 1
        caller = frame.f_back
        while caller is not None and not _ours(caller):
            caller = caller.f_back
        if caller is not None:
            edge = (_name(caller).split(":")[0], _name(frame).split(":")[0])
            if edge[0] != edge[1]:
                self.edges[edge] += 1
        if self.chain is None and frame.f_code.co_name == self.target:
            if pathlib.Path(frame.f_code.co_filename).stem.lstrip("_") == "angles":
                stack, f = [], frame
                while f is not None:
                    if _ours(f):
                        stack.append(_name(f))
                    f = f.f_back
                self.chain = stack[::-1]

    def run(self, fn):
        sys.setprofile(self)
        try:
            return fn()
        finally:
            sys.setprofile(None)


def _report(what: str, chain: list[str], start: str) -> None:
    index = next(i for i, step in enumerate(chain) if step.endswith(start))
    chain = chain[index:]
    files = [step.split(":")[0] for step in chain]
    crossings = sum(a != b for a, b in itertools.pairwise(files))
    print(f"{what}: {len(chain) - 1} calls, {len(set(files))} files, ", end="")
    print(f"{crossings} crossings between files")
    for step in chain:
        print(f"    {step}")


def positions_route() -> None:
    x = jnp.ones((1, 5, 16))
    positions = jnp.arange(5)[None] + 3  # given: the path users take when packing
    linen = fpl.MultiHeadAttention(
        num_heads=2, head_dim=8, rotary=fpl.RotaryEmbedding(base=7777.0)
    )
    params = linen.init(jax.random.key(0), x, positions=positions)
    nnx_module = fpn.MultiHeadAttention(
        2,
        8,
        16,
        rotary=fpn.RotaryEmbedding(base=8888.0),
        rngs=nnx.Rngs(0),
    )
    for twin, call in (
        ("linen", lambda: linen.apply(params, x, positions=positions)),
        ("nnx", lambda: nnx_module(x, positions=positions)),
    ):
        recorder = Recorder("sin_cos")
        with jax.disable_jit():
            recorder.run(call)
        _report(f"positions ({twin})", recorder.chain, "MultiHeadAttention.__call__")
        checks = sum(recorder.calls[name] for name in CHECKS)
        print(f"    positions checks per call: {checks}")
        print(f"    calls into the package per call: {sum(recorder.calls.values())}")


def config_route() -> None:
    build = Recorder()
    module = build.run(lambda: fpl.RotaryEmbedding.from_hf_config(LLAMA31))
    q = jnp.ones((1, 5, 4, 64))
    call = Recorder("sin_cos")
    with jax.disable_jit():
        call.run(lambda: module.apply({}, q, q))
    tables = sum(build.calls[name] for name in FREQUENCY_TABLES)
    print(f"config: frequency tables computed building the module: {tables}")
    tables = sum(call.calls[name] for name in FREQUENCY_TABLES)
    print(f"config: frequency tables computed in one call: {tables}")
    rope = [e for e in build.edges if all("rope" in f for f in e)]
    print(
        f"config: calls between RoPE files building the module: "
        f"{sum(build.edges[e] for e in rope)}"
    )
    for edge in sorted(rope):
        print(f"    {edge[0]} -> {edge[1]}: {build.edges[edge]}")
    _report("config (the call, to the angles)", call.chain, "RotaryEmbedding.__call__")


if __name__ == "__main__":
    positions_route()
    config_route()
