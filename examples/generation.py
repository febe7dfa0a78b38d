"""Greedy and sampled generation with the decode cache: a jitted prefill, then
a jitted step per token."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@nnx.jit
def _forward(model, ids, positions, segments):
    """Writes ``ids`` into the cache and returns their logits (float32)."""
    logits = model(ids, positions=positions, segments=segments, decode=True)
    return logits.astype(jnp.float32)


def _padding(ids, attention_mask):
    """``(ids, segments, positions)``: a row's positions start at its first
    real token; padding (mask 0) is segment 0, in no row's attention."""
    ids = np.asarray(ids, np.int32)
    if ids.ndim != 2:
        raise ValueError(f"ids must be [batch, seq], got shape {ids.shape}.")
    mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
    if mask.shape != ids.shape:
        raise ValueError(
            f"attention_mask {mask.shape} must have the shape of ids {ids.shape}."
        )
    segments = (mask != 0).astype(np.int32)
    positions = np.maximum(np.cumsum(segments, axis=1) - 1, 0).astype(np.int32)
    return ids, segments, positions


def prefill(model, ids, *, max_length: int, attention_mask=None) -> jax.Array:
    """A decoder's logits ``[batch, seq, vocab]`` of ``ids``, written into a
    new cache of ``max_length`` tokens (what `generate` starts with; its
    program is the one `generate` compiles for ``max_length = seq +
    max_new_tokens``)."""
    ids, segments, positions = _padding(ids, attention_mask)
    model.init_cache(ids.shape[0], max_length)
    return _forward(model, ids, positions, segments)


@nnx.jit
def _encode(model, ids, mask):
    return model.encode(ids, mask)


@nnx.jit
def _decode_step(model, token, encoded, mask):
    logits = model.decode(token, encoded, mask, decode=True)
    return logits[:, -1].astype(jnp.float32)


def _choose(logits, temperature: float, key):
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, logits / temperature).astype(jnp.int32)


def generate(
    model,
    ids,
    *,
    max_new_tokens: int,
    attention_mask=None,
    stop_tokens: Sequence[int] = (),
    pad_id: int | None = None,
    temperature: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """The continuation ``[batch, max_new_tokens]`` of int ``ids [batch, seq]``.

    Greedy (``temperature=0``) or sampled (softmax of ``logits /
    temperature``, from ``seed``). ``attention_mask [batch, seq]`` marks
    left padding with 0: those tokens are in no row's attention and the
    row's positions start at its first real token. After one of
    ``stop_tokens`` a row is filled with ``pad_id`` (default the config's
    ``pad_token_id``, else 0).
    """
    ids, segments, positions = _padding(ids, attention_mask)
    batch, length = ids.shape
    if pad_id is None:
        pad_id = model.config.get("pad_token_id") or 0
    keys = jax.random.split(jax.random.key(seed), max_new_tokens)
    if hasattr(model, "encode"):  # an encoder-decoder (T5)
        return _seq2seq(
            model, ids, segments, max_new_tokens, stop_tokens, pad_id, temperature, keys
        )
    model.init_cache(batch, length + max_new_tokens)
    logits = _forward(model, ids, positions, segments)[:, -1]
    last = positions[:, -1]
    done = np.zeros(batch, bool)
    out = np.full((batch, max_new_tokens), pad_id, np.int32)
    ones = np.ones((batch, 1), np.int32)
    for t in range(max_new_tokens):
        token = np.asarray(_choose(logits, temperature, keys[t]))
        out[:, t] = np.where(done, pad_id, token)
        done |= np.isin(token, list(stop_tokens))
        if done.all() or t == max_new_tokens - 1:
            break
        last = last + 1
        logits = _forward(model, token[:, None], last[:, None], ones)[:, -1]
    return out


def _seq2seq(model, ids, mask, max_new_tokens, stop_tokens, pad_id, temperature, keys):
    """The decoder's continuation from ``decoder_start_token_id``: the
    encoder once, then one cached decoder step per token."""
    batch = ids.shape[0]
    mask = (mask != 0).astype(np.int32)
    encoded = _encode(model, ids, mask)
    model.init_cache(batch, max_new_tokens)
    start = model.config.get("decoder_start_token_id")
    token = np.full(batch, pad_id if start is None else start, np.int32)
    done = np.zeros(batch, bool)
    out = np.full((batch, max_new_tokens), pad_id, np.int32)
    for t in range(max_new_tokens):
        logits = _decode_step(model, token[:, None], encoded, mask)
        token = np.asarray(_choose(logits, temperature, keys[t]))
        out[:, t] = np.where(done, pad_id, token)
        done |= np.isin(token, list(stop_tokens))
        if done.all():
            break
    return out
