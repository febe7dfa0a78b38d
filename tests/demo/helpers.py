"""Shared pieces of the train_demo tests: tiny configs and a compile counter."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re

import jax

from train_demo import train

# The nine encodings the README and the demo page name, written out
# independently of the code.
DOCUMENTED_ENCODINGS = (
    "none",
    "sinusoidal",
    "learned",
    "rope",
    "alibi",
    "relative",
    "randomized_sinusoidal",
    "randomized_rope",
    "randomized_learned",
)

# The keys of a results.json row, as the demo page lists them.
RESULT_ROW_KEYS = {
    "encoding",
    "seed",
    "iid_accuracy",
    "ood_accuracy",
    "accuracy_by_length",
    "train_seconds",
}


def tiny(**overrides) -> train.TrainConfig:
    """A config small enough that one jit compilation takes a few seconds."""
    config = train.TrainConfig(
        task="bucket_sort",
        encoding="sinusoidal",
        steps=4,
        seeds=1,
        batch_size=8,
        train_length=4,
        test_length=6,
        eval_batch=4,
        num_layers=1,
        features=16,
        num_heads=2,
        steps_per_call=2,
        # Tests take a few steps: no warm-up, no decay.
        schedule="constant",
        warmup_steps=0,
    )
    return dataclasses.replace(config, **overrides)


class _Collect(logging.Handler):
    def __init__(self, pattern):
        super().__init__(logging.DEBUG)
        self.pattern = re.compile(pattern)
        self.count = 0

    def emit(self, record):
        if self.pattern.search(record.getMessage()):
            self.count += 1


@contextlib.contextmanager
def count_compiles(name: str):
    """Counts XLA compilations of ``jit(name)`` inside the block."""
    handler = _Collect(rf"Compiling jit\({re.escape(name)}\)")
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles():
            yield handler
    finally:
        logger.removeHandler(handler)


def sha256sum_lines(folder):
    """What ``sha256sum`` prints for every file under ``folder/state``."""
    files = sorted(p for p in (folder / "state").rglob("*") if p.is_file())
    assert files
    return "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder)}\n"
        for p in files
    )
