"""Draws the figures of the concept pages from flax_posenc's own functions.

    python docs/figures.py [--out docs/figures]

Every figure is computed with the public API (``import flax_posenc as fp``)
and fixed seeds, so running the script twice gives the same pictures. It runs
on CPU in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import matplotlib
import matplotlib.patches

matplotlib.use("Agg")

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

import flax_posenc as fp
from flax_posenc.linen import (
    InputEmbedding,
    LayerNorm,
    MultiHeadAttention,
    Residual,
    SinusoidalPositionEmbedding,
)

DPI = 110
HERE = os.path.dirname(os.path.abspath(__file__))
# Run as a script, docs/ is on sys.path but not the repository root, where
# the benchmarks package is.
sys.path.insert(0, os.path.dirname(HERE))
from benchmarks import precision as _precision  # noqa: E402

FIGURES = {}


def figure(name):
    """Registers a function that draws ``name`` and returns its matplotlib figure."""

    def register(fn):
        FIGURES[name] = fn
        return fn

    return register


def attention(x, wq, wk, wv):
    """One softmax self-attention head, no mask: ``softmax(q k^T / sqrt(d)) v``."""
    q, k, v = x @ wq, x @ wk, x @ wv
    logits = q @ k.T / jnp.sqrt(q.shape[-1])
    return jax.nn.softmax(logits, axis=-1) @ v


@figure("permutation.png")
def permutation():
    words = ["dog", "bites", "man"]
    dim = 16
    keys = jax.random.split(jax.random.key(0), 4)
    vocab = jax.random.normal(keys[0], (len(words), dim))
    wq, wk, wv = (jax.random.normal(k, (dim, dim)) / np.sqrt(dim) for k in keys[1:])
    first = jnp.array([0, 1, 2])  # dog bites man
    second = jnp.array([2, 1, 0])  # man bites dog
    pe = fp.sinusoidal_table(3, dim)

    fig, axes = plt.subplots(2, 3, figsize=(11, 5.6), constrained_layout=True)
    for row, (title, add) in enumerate(
        [("no positions", 0.0), ("sinusoidal positions added", pe)]
    ):
        out_a = attention(vocab[first] + add, wq, wk, wv)
        out_b = attention(vocab[second] + add, wq, wk, wv)
        # Rows by word: the output at "dog", "bites", "man" in each sentence.
        by_word_a = np.asarray(out_a)  # word w sits at position w
        by_word_b = np.asarray(out_b)[[2, 1, 0]]
        diff = np.abs(by_word_a - by_word_b)
        panels = [
            (by_word_a, '"dog bites man"'),
            (by_word_b, '"man bites dog"'),
            (diff, "|difference|"),
        ]
        vmax = max(np.abs(by_word_a).max(), np.abs(by_word_b).max())
        for col, (values, label) in enumerate(panels):
            ax = axes[row, col]
            if col < 2:
                im = ax.imshow(values, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            else:
                im = ax.imshow(values, cmap="magma", vmin=0, vmax=vmax)
            ax.set_yticks(range(3), words)
            ax.set_xticks([])
            ax.set_xlabel("output feature")
            extra = f" (max {diff.max():.1e})" if col == 2 else ""
            ax.set_title(f"{title}\n{label}{extra}", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(
        "Self-attention output for each word: without positions, the same "
        "outputs permuted; with positions, different"
    )
    return fig


@figure("naive.png")
def naive():
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    positions = jnp.arange(512)
    index = fp.index_encoding(positions, 4)[:, 0]
    token = jax.random.normal(jax.random.key(1), (512,))
    left.plot(positions, index, label="index encoding $PE(p) = p$")
    left.plot(positions, token, lw=0.6, alpha=0.7, label="a token embedding feature")
    left.set_yscale("symlog", linthresh=1)
    left.set_xlabel("position p")
    left.set_ylabel("value (symlog)")
    left.set_title("Index: unbounded, swamps the token embedding")
    left.legend()

    for length, marker in [(5, "o"), (10, "s"), (50, "^")]:
        values = fp.fraction_encoding(jnp.arange(length), 1)[:, 0]
        right.plot(
            np.arange(length),
            values,
            marker=marker,
            ms=4,
            lw=0.8,
            label=f"L = {length}",
        )
    for length in (5, 10, 50):
        value = float(fp.fraction_encoding(jnp.arange(length), 1)[4, 0])
        right.annotate(
            f"p=4: {value:.3f}",
            (4, value),
            xytext=(12, value),
            fontsize=8,
            arrowprops={"arrowstyle": "-", "lw": 0.5},
        )
    right.axvline(4, color="gray", lw=0.5, ls=":")
    right.set_xlabel("position p")
    right.set_ylabel("$PE(p) = p/(L-1)$")
    right.set_title("Fraction: position 4 means something else at each length")
    right.legend(loc="lower right")
    return fig


@figure("sinusoidal_heatmap.png")
def sinusoidal_heatmap():
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    for ax, layout in zip(axes, ("interleaved", "halves"), strict=True):
        table = fp.sinusoidal_table(128, 64, layout=layout)
        im = ax.imshow(table, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(f'sinusoidal_table(128, 64, layout="{layout}")')
        ax.set_xlabel("feature")
        ax.set_ylabel("position")
    fig.colorbar(im, ax=axes, shrink=0.8)
    return fig


@figure("sinusoidal_dot.png")
def sinusoidal_dot():
    dim, start = 128, 512
    offsets = np.arange(-start, 1024)
    fig, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
    for spacing in ("paper", "tensor2tensor"):
        table = fp.sinusoidal_table(start + 1024, dim, layout="halves", spacing=spacing)
        dots = table[start + offsets] @ table[start]
        ax.plot(offsets, dots, lw=1, label=f'spacing="{spacing}"')
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("offset k")
    ax.set_ylabel(r"$PE(p) \cdot PE(p+k)$")
    ax.set_title(
        f"Dot product of positions p = {start} and p + k, dim {dim} "
        "(the same curve for every p)"
    )
    ax.legend()
    return fig


@figure("sinusoidal_rotation.png")
def sinusoidal_rotation():
    dim, pair = 16, 1
    omega = fp.sinusoidal_frequencies(dim)[pair]
    table = np.asarray(fp.sinusoidal_table(13, dim, layout="interleaved"))
    sin, cos = table[:, 2 * pair], table[:, 2 * pair + 1]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    circle = np.linspace(0, 2 * np.pi, 200)
    left.plot(np.cos(circle), np.sin(circle), color="lightgray")
    left.scatter(cos, sin, c=np.arange(len(cos)), cmap="viridis", zorder=3)
    for p in range(len(cos)):
        left.annotate(
            f"p={p}",
            (cos[p], sin[p]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
        )
    for p in range(len(cos) - 1):
        left.annotate(
            "",
            (cos[p + 1], sin[p + 1]),
            (cos[p], sin[p]),
            arrowprops={"arrowstyle": "->", "color": "gray", "lw": 0.6},
        )
    left.set_aspect("equal")
    left.set_xlabel(r"$PE(p, 2i+1) = \cos(p\,\omega_i)$")
    left.set_ylabel(r"$PE(p, 2i) = \sin(p\,\omega_i)$")
    left.set_title(
        f"pair i = {pair} of dim {dim}: each step rotates by "
        rf"$\omega_i$ = {omega:.3f} rad"
    )

    # M(k) PE(p) against PE(p + k), for every p < 4096 and several k.
    length, dim = 4096, 64
    freqs = fp.sinusoidal_frequencies(dim)
    big = np.asarray(fp.sinusoidal_table(length + 1024, dim), np.float64)
    offsets = [1, 7, 50, 300, 1024]
    errors = []
    for k in offsets:
        c, s = np.cos(k * freqs), np.sin(k * freqs)
        sin_p, cos_p = big[:length, 0::2], big[:length, 1::2]
        rotated_sin = sin_p * c + cos_p * s  # sin(a + b)
        rotated_cos = cos_p * c - sin_p * s  # cos(a + b)
        target = big[k : k + length]
        errors.append(
            max(
                np.abs(rotated_sin - target[:, 0::2]).max(),
                np.abs(rotated_cos - target[:, 1::2]).max(),
            )
        )
    right.bar([str(k) for k in offsets], errors, color="tab:blue")
    right.set_yscale("log")
    right.set_ylim(1e-8, 1e-4)
    right.set_xlabel("offset k")
    right.set_ylabel("max |M(k) PE(p) - PE(p+k)|")
    right.set_title(f"over all p < {length}, dim {dim}: float32 rounding only")
    return fig


@figure("precision.png")
def precision():
    # The numbers of benchmarks/precision.py, drawn.
    dim = 256
    rows = _precision.decade_errors(dim, samples=1024)
    labels = [f"[{low}, {high if high != 2**20 else '2^20'})" for low, high, *_ in rows]
    ours = [row[2] for row in rows]
    naive_errors = [row[3] for row in rows]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
    ax.bar(x - 0.2, ours, 0.4, label="fp.sinusoidal_encoding (float32)")
    ax.bar(x + 0.2, naive_errors, 0.4, label="naive float32 sin(p * w)")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("positions")
    ax.set_ylabel("max |error| vs float64")
    ax.set_title(f"Sinusoidal table, dim {dim}: float32 error by position decade")
    ax.legend()
    return fig


LONG_CONTEXT = os.path.join(
    os.path.dirname(HERE), "benchmarks", "results", "long_context.json"
)


@figure("long_context.png")
def long_context():
    # benchmarks/long_context.py's results, read when drawn: causal attention,
    # one line per implementation and pass, plus the blockwise sliding window.
    with open(LONG_CONTEXT) as f:
        results = json.load(f)
    runs = results["runs"]
    window = results["window"]
    colors = {"blockwise": "tab:blue", "dense": "tab:orange", "jax": "tab:green"}
    names = {"blockwise": "blockwise", "dense": "dense (xla)", "jax": "jax.nn"}
    markers = {"fwd": "o", "fwd+bwd": "s"}
    lines = [
        (implementation, "causal", passes)
        for implementation in colors
        for passes in markers
    ] + [("blockwise", "window", passes) for passes in markers]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    predicted_shown = False
    for implementation, mask, passes in lines:
        rows = sorted(
            (
                row
                for row in runs
                if (row["implementation"], row["mask"], row["passes"])
                == (implementation, mask, passes)
            ),
            key=lambda row: row["T"],
        )
        measured = [row for row in rows if "seconds" in row]
        skipped = [row for row in rows if "skipped" in row]
        color = "tab:purple" if mask == "window" else colors[implementation]
        label = f"{names[implementation]} {passes}"
        if mask == "window":
            label += f", window {window}"
        style = {
            "color": color,
            "marker": markers[passes],
            "ls": {"fwd": "-", "fwd+bwd": "--"}[passes],
            "ms": 4,
        }
        if mask == "window":
            # Beneath the causal blockwise line, wider: the memory is the same.
            style.update(lw=3, alpha=0.5, zorder=1.5)
        lengths = [row["T"] for row in measured]
        left.plot(lengths, [row["rss_bytes"] / 1e9 for row in measured], **style)
        right.plot(lengths, [row["seconds"] for row in measured], label=label, **style)
        if skipped:
            predicted_shown = True
            left.plot(
                [row["T"] for row in skipped],
                [row["predicted_bytes"] / 1e9 for row in skipped],
                ls="none",
                marker=markers[passes],
                mfc="none",
                color=color,
                ms=5,
            )
    left.axhline(results["max_gb"], color="gray", lw=0.5, ls=":")
    left.text(
        min(row["T"] for row in runs),
        results["max_gb"] * 1.25,
        f"skip threshold {results['max_gb']:g} GB",
        fontsize=8,
        color="gray",
    )
    lengths = sorted({row["T"] for row in runs})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(lengths, [f"{length // 1024}k" for length in lengths])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_xlabel("sequence length T")
        ax.grid(True, which="major", color="lightgray", lw=0.5)
    left.set_ylabel("peak RSS (GB)")
    left.set_title(
        "peak RSS of a fresh process"
        + (" (hollow: predicted, run skipped)" if predicted_shown else "")
    )
    right.set_ylabel("time (s, median)")
    right.set_title("time of the compiled call")
    right.legend(fontsize=8, ncol=2)
    fig.suptitle(
        f"Self-attention, batch 1, {results['heads']} query / {results['kv_heads']} "
        f"key-value heads, head dim {results['head_dim']}, float32, causal\n"
        f"{results['machine']}, {results['date']}",
        fontsize=10,
    )
    return fig


@figure("rope_frequencies.png")
def rope_frequencies():
    dim, base, original = 128, 500_000.0, 8192
    cases = [
        ("no scaling", None, {}),
        ("linear, factor 8", {"rope_type": "linear", "factor": 8.0}, {}),
        (
            "dynamic, factor 8, seq_len 32768",
            {
                "rope_type": "dynamic",
                "factor": 8.0,
                "original_max_position_embeddings": original,
            },
            {"seq_len": 32768},
        ),
        (
            "yarn, factor 8",
            {
                "rope_type": "yarn",
                "factor": 8.0,
                "original_max_position_embeddings": original,
            },
            {},
        ),
        (
            "llama3 (Llama 3.1)",
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": original,
            },
            {},
        ),
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True)
    unscaled, _ = fp.rope_frequencies(dim, base=base)
    pairs = np.arange(dim // 2)
    for label, scaling, extra in cases:
        inv_freq, attention_factor = fp.rope_frequencies(
            dim, base=base, scaling=scaling, **extra
        )
        if attention_factor != 1.0:
            label += f" (attention factor {attention_factor:.3f})"
        style = "--" if scaling is None else "-"
        left.plot(pairs, inv_freq, style, label=label)
        right.plot(pairs, inv_freq / unscaled, style, label=label)
    # The frequency whose wavelength equals the training context L.
    left.axhline(2 * np.pi / original, color="gray", lw=0.5, ls=":")
    left.text(0, 2 * np.pi / original * 1.5, "wavelength = 8192", fontsize=8)
    left.set_yscale("log")
    left.set_xlabel("pair index i")
    left.set_ylabel(r"$\omega_i$ (radians per position)")
    left.set_title(f"rope_frequencies({dim}, base={base:g}, scaling=...)")
    left.legend(fontsize=8)
    right.set_yscale("log")
    right.set_xlabel("pair index i")
    right.set_ylabel("scaled / unscaled")
    right.set_title("ratio to the unscaled frequencies")
    return fig


@figure("rope_relative.png")
def rope_relative():
    dim, length = 32, 64
    kq, kk = jax.random.split(jax.random.key(2))
    q = jax.random.normal(kq, (dim,))
    k = jax.random.normal(kk, (dim,))
    positions = jnp.arange(length)
    # The same q (and k) at every position: [seq, heads=1, head_dim].
    q_rot = fp.apply_rope(jnp.broadcast_to(q, (length, 1, dim)), positions)[:, 0]
    k_rot = fp.apply_rope(jnp.broadcast_to(k, (length, 1, dim)), positions)[:, 0]
    scores = np.asarray(q_rot @ k_rot.T)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    im = left.imshow(scores, cmap="RdBu_r")
    left.set_xlabel("key position n")
    left.set_ylabel("query position m")
    left.set_title(r"$\langle \mathrm{rope}(q, m), \mathrm{rope}(k, n) \rangle$")
    fig.colorbar(im, ax=left, shrink=0.8)
    for m in (10, 30, 50):
        right.plot(m - np.arange(length), scores[m], lw=1, label=f"row m = {m}")
    right.set_xlabel("m - n")
    right.set_ylabel("score")
    right.set_title("every row is the same function of m - n")
    right.legend()
    return fig


@figure("alibi.png")
def alibi():
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    for heads, marker, shift in [(8, "o", -0.12), (12, "s", 0.12)]:
        slopes = fp.alibi_slopes(heads)
        left.plot(
            np.arange(heads) + shift,
            slopes,
            marker=marker,
            ls="",
            label=f"{heads} heads",
        )
    left.set_yscale("log", base=2)
    left.set_xlabel("head h")
    left.set_ylabel("slope $m_h$")
    left.set_title("alibi_slopes: a geometric sequence (12 = 8 + 4 interleaved)")
    left.legend()

    length = 16
    positions = jnp.arange(length)
    bias = np.asarray(fp.alibi_bias(positions, positions, 8)[0])
    causal = np.tril(np.ones((length, length), bool))
    shown = np.where(causal, bias, np.nan)
    im = right.imshow(shown, cmap="viridis")
    right.set_xlabel("key position j")
    right.set_ylabel("query position i")
    right.set_title(
        f"alibi_bias, head 0 (slope {fp.alibi_slopes(8)[0]:g}), causal (blank: masked)"
    )
    fig.colorbar(im, ax=right, shrink=0.8)
    return fig


@figure("t5_buckets.png")
def t5_buckets():
    relative = jnp.arange(-200, 201)
    fig, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
    for bidirectional in (True, False):
        buckets = fp.relative_position_bucket(relative, bidirectional=bidirectional)
        name = "bidirectional (encoder)" if bidirectional else "causal (decoder)"
        ax.step(relative, buckets, where="mid", label=name)
    for edge in (-128, 128):
        ax.axvline(edge, color="gray", lw=0.5, ls=":")
    ax.set_xlabel("relative position (key - query)")
    ax.set_ylabel("bucket")
    ax.set_title(
        "relative_position_bucket: num_buckets=32, max_distance=128 "
        "(exact near 0, logarithmic further out)"
    )
    ax.legend()
    return fig


@figure("randomized.png")
def randomized():
    length, max_position, draws = 8, 64, 5
    fig, ax = plt.subplots(figsize=(9, 3.4), constrained_layout=True)
    ax.scatter(np.arange(length), np.zeros(length), color="black", s=18)
    for row in range(1, draws + 1):
        positions = fp.randomized_positions(jax.random.key(row), length, max_position)
        ax.scatter(positions, np.full(length, row), s=18)
        ax.hlines(row, 0, max_position - 1, color="lightgray", lw=0.5, zorder=0)
    ax.hlines(0, 0, max_position - 1, color="lightgray", lw=0.5, zorder=0)
    ax.set_yticks(range(draws + 1), ["arange(8)"] + [f"draw {r}" for r in range(1, 6)])
    ax.set_xlim(-1, max_position)
    ax.invert_yaxis()
    ax.set_xlabel("position")
    ax.set_title(
        f"randomized_positions(key, {length}, {max_position}): sorted, distinct, "
        "spread over the whole range"
    )
    return fig


@figure("layernorm_offset.png")
def layernorm_offset():
    def fast_layer_norm(x, eps=1e-6):
        # E[x^2] - E[x]^2 in float32: one pass, cancels when |mean| >> std.
        mean = jnp.mean(x, axis=-1, keepdims=True)
        mean_sq = jnp.mean(x * x, axis=-1, keepdims=True)
        variance = jnp.maximum(mean_sq - mean * mean, 0.0)
        return (x - mean) * jax.lax.rsqrt(variance + eps)

    def reference(x, eps=1e-6):
        x = np.asarray(x, np.float64)
        mean = x.mean(-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + eps)

    offsets = [1.0, 1e2, 1e3, 1e4]
    noise = jax.random.normal(jax.random.key(3), (64, 1024), jnp.float32)
    ours, fast = [], []
    for offset in offsets:
        x = jnp.float32(offset) + noise
        expected = reference(x)
        ours.append(np.abs(np.asarray(fp.layer_norm(x), np.float64) - expected).max())
        fast.append(np.abs(np.asarray(fast_layer_norm(x), np.float64) - expected).max())
    labels = [f"{o:g} + N(0, 1)" for o in offsets]
    xs = np.arange(len(offsets))
    fig, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
    ax.bar(xs - 0.2, ours, 0.4, label="fp.layer_norm (two-pass)")
    ax.bar(xs + 0.2, fast, 0.4, label=r"fast formula $E[x^2] - E[x]^2$")
    for x, value in zip(xs + 0.2, fast, strict=True):
        ax.text(x, value * 1.3, f"{value:.1e}", ha="center", fontsize=8)
    ax.set_xticks(xs, labels)
    ax.set_yscale("log")
    ax.set_ylabel("max |error| vs float64")
    ax.set_xlabel("input (float32, 64 rows of 1024)")
    ax.set_title("LayerNorm output error on inputs far from zero mean")
    ax.legend(loc="upper left")
    return fig


XAVIER = nn.initializers.xavier_uniform()  # Xiong et al.'s initialization


class FeedForward(nn.Module):
    """The position-wise MLP ``W2 relu(W1 x)`` (flax_posenc has no MLP module)."""

    hidden: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(self.hidden, kernel_init=XAVIER, name="w1")(x))
        return nn.Dense(x.shape[-1], kernel_init=XAVIER, name="w2")(h)


class EncoderLayer(nn.Module):
    """Attention then MLP, each in a `Residual`; the identity where not ``active``."""

    features: int
    heads: int
    norm_position: str

    @nn.compact
    def __call__(self, x, active):
        attention = MultiHeadAttention(
            self.heads, self.features // self.heads, kernel_init=XAVIER
        )
        mlp = FeedForward(4 * self.features)
        y = Residual(attention, norm_position=self.norm_position)(x)
        y = Residual(mlp, norm_position=self.norm_position)(y)
        # Inactive layers pass x through: no gradient reaches their parameters.
        return jnp.where(active, y, x), None


class Encoder(nn.Module):
    """An encoder whose first ``depth`` of ``max_depth`` layers are active.

    Token plus sinusoidal embeddings, the layers (scanned: their parameters
    stacked on a leading axis), a final norm for pre-LN, a linear read-out.
    """

    vocab: int
    features: int
    heads: int
    max_depth: int
    norm_position: str

    @nn.compact
    def __call__(self, tokens, depth):
        embed = InputEmbedding(
            self.vocab,
            self.features,
            position=SinusoidalPositionEmbedding(),
            scale_by_sqrt_features=True,
        )
        layers = nn.scan(
            EncoderLayer,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            length=self.max_depth,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(self.features, self.heads, self.norm_position, name="layers")
        x, _ = layers(embed(tokens), jnp.arange(self.max_depth) < depth)
        if self.norm_position == "pre":
            x = LayerNorm(name="final_norm")(x)
        return nn.Dense(self.vocab, kernel_init=XAVIER, name="head")(x)


def prenorm_gradient_norms(
    norm_position,
    depths,
    *,
    seeds=8,
    features=64,
    heads=4,
    batch=16,
    seq=32,
    vocab=32,
):
    """Frobenius norm of the gradient of each layer's MLP kernel ``W2`` at init.

    For each seed, one encoder of ``max(depths)`` layers is initialized and a
    batch of random tokens drawn; for each ``L`` in ``depths`` its first ``L``
    layers form the model, and the loss is the cross-entropy of predicting the
    sorted tokens. Returns ``[seeds, len(depths), max(depths)]`` (zeros for
    layers beyond ``L``). The measurement of Figure 3 of Xiong et al. 2020, On
    Layer Normalization in the Transformer Architecture,
    https://arxiv.org/abs/2002.04745.
    """
    max_depth = max(depths)
    model = Encoder(vocab, features, heads, max_depth, norm_position)

    def one_seed(key):
        init_key, data_key = jax.random.split(key)
        tokens = jax.random.randint(data_key, (batch, seq), 0, vocab)
        targets = jnp.sort(tokens, axis=-1)
        params = model.init(init_key, tokens, max_depth)["params"]

        def loss(params, depth):
            logits = model.apply({"params": params}, tokens, depth)
            log_p = jax.nn.log_softmax(logits)
            return -jnp.take_along_axis(log_p, targets[..., None], -1).mean()

        def w2_norms(depth):
            grads = nn.meta.unbox(jax.grad(loss)(params, depth))
            w2 = grads["layers"]["FeedForward_0"]["w2"]["kernel"]
            return jnp.sqrt(jnp.sum(w2**2, axis=(1, 2)))

        return jax.vmap(w2_norms)(jnp.asarray(depths))

    keys = jax.random.split(jax.random.key(0), seeds)
    return np.asarray(jax.jit(jax.vmap(one_seed))(keys))


@figure("prenorm_gradients.png")
def prenorm_gradients():
    depths = [1, 2, 3, 4, 6, 8, 12]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for position in ("post", "pre"):
        norms = prenorm_gradient_norms(position, depths)  # [seed, depth, layer]
        deepest = norms[:, -1]  # every layer of the 12-layer encoder
        last = norms[:, np.arange(len(depths)), np.asarray(depths) - 1]
        for ax, x, values in [
            (left, np.arange(1, depths[-1] + 1), deepest),
            (right, depths, last),
        ]:
            line = ax.plot(x, values.mean(0), marker="o", label=f"{position}-LN")
            ax.fill_between(
                x,
                values.min(0),
                values.max(0),
                color=line[0].get_color(),
                alpha=0.2,
            )
    left.set_xlabel("layer l (1 = next to the embeddings)")
    left.set_ylabel(r"$\|\partial \mathcal{L} / \partial W_2\|_F$ of layer l")
    left.set_title("12-layer encoder: each layer's MLP $W_2$")
    right.set_xlabel("number of layers L")
    right.set_ylabel(r"$\|\partial \mathcal{L} / \partial W_2\|_F$ of layer L")
    right.set_title("L-layer encoder: the last layer's MLP $W_2$")
    for ax in (left, right):
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.suptitle(
        "Gradient norms at initialization (width 64, 4 heads; mean and range "
        "over 8 seeds)"
    )
    return fig


@figure("schedules.png")
def schedules():
    """Three published schedules: each layer's mask kind and RoPE base."""
    from matplotlib.colors import ListedColormap, LogNorm

    from tests import published_rope_configs as pub

    models = [
        ("Llama-4-Scout-17B-16E", pub.LLAMA_4_SCOUT_17B_16E),
        ("gemma-3-1b-it", pub.GEMMA_3_1B_IT),
        ("ModernBERT-base", pub.MODERNBERT_BASE),
    ]
    kinds = ["full_attention", "sliding_attention", "chunked_attention"]
    colors = ListedColormap(["#3b6fb6", "#e8a33d", "#5aa469"])
    fig, axes = plt.subplots(
        len(models), 1, figsize=(11, 1.25 * len(models) + 1.0), constrained_layout=True
    )
    bases = LogNorm(vmin=1e4, vmax=1e6)
    for ax, (name, config) in zip(axes, models, strict=True):
        layers = fp.attention_schedule(config)
        n = len(layers)
        kind = np.array([[kinds.index(a.layer_type) for a in layers]])
        base = np.array(
            [[np.nan if a.rope is None else a.rope.base for a in layers]], float
        )
        ax.imshow(kind, cmap=colors, vmin=0, vmax=2, extent=(-0.5, n - 0.5, 1, 0))
        shown = ax.imshow(
            base, cmap="viridis", norm=bases, extent=(-0.5, n - 0.5, 2, 1)
        )
        ax.set_ylim(2, 0)
        ax.set_yticks([0.5, 1.5], ["mask", "RoPE base"])
        ax.set_xlim(-0.5, n - 0.5)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_xlabel("layer")
        facts = ["causal" if layers[0].causal else "bidirectional"]
        reach = "q - k" if layers[0].causal else "|q - k|"
        windows = {a.sliding_window for a in layers if a.sliding_window}
        facts += [f"window {reach} < {w}" for w in sorted(windows)]
        facts += sorted({f"chunk {a.chunk_size}" for a in layers if a.chunk_size})
        nope = sum(a.rope is None for a in layers)
        if nope:
            facts.append(f"{nope} layers without RoPE")
        ax.set_title(f"{name}: {n} layers, " + ", ".join(facts), fontsize=10)
    handles = [
        matplotlib.patches.Patch(color=colors(i), label=k.replace("_attention", ""))
        for i, k in enumerate(kinds)
    ]
    fig.legend(handles=handles, loc="upper left", ncol=3, fontsize=8)
    fig.colorbar(shown, ax=axes, shrink=0.7, label="RoPE base (blank: none)")
    fig.suptitle("fp.attention_schedule(config): each layer's mask and RoPE base")
    return fig


@figure("whole_model_sharding.png")
def whole_model_sharding():
    """Which axis of each parameter of one decoder layer goes on the mesh's
    "model" axis under examples.checkpoint.RULES (the rest replicated)."""
    import pathlib

    from flax import nnx

    from examples import checkpoint, models

    folder = pathlib.Path(checkpoint.__file__).parent / "fixtures" / "qwen2"
    config = checkpoint.read_config(folder)
    model = nnx.eval_shape(lambda: models.build(config))
    rules = dict(checkpoint.RULES)
    rows = []
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        key = ".".join(str(p) for p in path)
        if key.startswith("layers.") and not key.startswith("layers.0."):
            continue
        names = variable.get_metadata().get("out_sharding") or ()
        rows.append((key.replace("sublayer.", ""), names))
    fig, ax = plt.subplots(
        figsize=(10, 0.34 * len(rows) + 1.2), constrained_layout=True
    )
    for i, (_, names) in enumerate(rows):
        for j, name in enumerate(names):
            split = rules.get(name) == "model"
            ax.add_patch(
                matplotlib.patches.Rectangle(
                    (j, i + 0.1), 0.95, 0.8, color="#e8a33d" if split else "#cfd8e3"
                )
            )
            ax.text(j + 0.47, i + 0.5, str(name), ha="center", va="center", fontsize=8)
    ax.set_xlim(0, 3)
    ax.set_ylim(len(rows), 0)
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [k for k, _ in rows], fontsize=8)
    ax.set_xticks([0.47, 1.47, 2.47], ["axis 0", "axis 1", "axis 2"])
    ax.set_title(
        'from_pretrained(mesh=): orange axes split over the mesh\'s "model" '
        "axis, grey ones replicated\n(examples.checkpoint.RULES; the embedding, "
        "layer 0, the head and the final norm of Qwen2)",
        fontsize=9,
    )
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "figures"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    for name, draw in FIGURES.items():
        fig = draw()
        fig.savefig(os.path.join(args.out, name), dpi=DPI)
        plt.close(fig)
        print(f"wrote {os.path.join(args.out, name)}")
    print(f"{len(FIGURES)} figures in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
