"""Fingerprints of the demo's numbers, to show that a change leaves them bit-identical.

For eight small demo configurations (every encoding family, both the linen
modules and their NNX twins, pre- and post-norm, LayerNorm and RMSNorm, add
and concatenate), trains two chunks of steps and prints, per configuration,
the SHA-256 of the exact bytes of the initial parameters, of each chunk's
per-step losses, of the trained parameters and of the evaluation's
per-length accuracies. Two runs of one commit on one machine print the same
lines; a refactor that changes no number prints them too.

    python -m benchmarks.demo_fingerprint > before.txt   # on the old commit
    python -m benchmarks.demo_fingerprint > after.txt    # on the new one
    diff before.txt after.txt
"""

from __future__ import annotations

import hashlib

import jax
import numpy as np

from train_demo import train

SMALL = dict(
    steps=20,
    steps_per_call=10,
    batch_size=16,
    train_length=12,
    test_length=24,
    eval_batch=8,
    num_layers=2,
    features=32,
    num_heads=4,
)

# (encoding, api, norm, norm_position, combine)
CONFIGS = (
    ("none", "linen", "layer", "post", "add"),
    ("sinusoidal", "linen", "layer", "post", "add"),
    ("learned", "nnx", "rms", "pre", "add"),
    ("rope", "linen", "rms", "pre", "add"),
    ("alibi", "nnx", "layer", "post", "add"),
    ("relative", "linen", "layer", "pre", "add"),
    ("randomized_rope", "nnx", "layer", "post", "add"),
    ("randomized_sinusoidal", "linen", "layer", "post", "concat"),
)


def digest(tree) -> str:
    """SHA-256 of the exact bytes (and shapes, dtypes) of a pytree's leaves."""
    sha = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        array = np.asarray(leaf)
        sha.update(f"{array.shape}{array.dtype}".encode())
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()[:16]


def fingerprint(encoding, api, norm, norm_position, combine) -> str:
    config = train.TrainConfig(
        encoding=encoding,
        api=api,
        norm=norm,
        norm_position=norm_position,
        combine=combine,
        **SMALL,
    )
    trainer = train.Trainer(config)
    state = trainer.init_seeds([0])
    parts = [f"init {digest(state.params)}"]
    for chunk in range(2):
        state, (loss, _) = trainer.train(state, config.steps_per_call)
        parts.append(f"loss{chunk} {digest(loss)}")
    parts.append(f"trained {digest(state.params)}")
    parts.append(f"eval {digest(trainer.evaluate(state))}")
    name = f"{encoding}/{api}/{norm}/{norm_position}/{combine}"
    return f"{name:42s} " + " ".join(parts)


def main() -> None:
    for settings in CONFIGS:
        print(fingerprint(*settings), flush=True)


if __name__ == "__main__":
    main()
